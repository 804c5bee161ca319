"""``dlmm fit -f`` with lme4's models beyond statsmodels' shape (issue 22): slopes at two
nested levels, two blocks on one factor, three levels, fitted through the term list
(``TermsMixedLM``) from the command line, and every command that reads the output
folder. Numbers are lme4 1.1-31's (``tests/reference/nested``: ``lme4_nested.json``
and the predictions of ``lme4_nested_features.json`` / ``lme4_nested_more.json``),
never dlmm's own.

The fits of a module run as concurrent subprocesses (one interpreter start each), so
that the five shapes cost about one fit's wall time on two cores."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from .helpers import TIMEOUT, _error_line, _no_output, run_dlmm, run_dlmm_here

REFERENCE = Path(__file__).resolve().parents[1] / "reference" / "nested"
CASES = json.loads((REFERENCE / "lme4_nested.json").read_text())["cases"]
PREDICTIONS = {**json.loads((REFERENCE / "lme4_nested_features.json").read_text())[
    "predictions"], **json.loads((REFERENCE / "lme4_nested_more.json").read_text())[
    "predictions"]}
#: Each shape's case: the four beyond statsmodels' shape (sim_slopes2 by ML, the others
#: by REML), and sim_diag's ``(x || g) + (1 | g:h)`` (statsmodels' shape: its own engine).
KEYS = ["egsingle_reml", "sim_slopes2_ml", "sim_blocks_reml", "sim_three_reml",
        "sim_diag_reml"]
TERMS = {"egsingle", "sim_slopes2", "sim_blocks", "sim_three"}
#: ``dlmm summary`` runs on one folder (it prints any folder's summary.txt); the others'
#: summary.txt is read as it is.
SUMMARIZED = "sim_blocks_reml"


def _frame(key: str) -> pd.DataFrame:
    """The case's data with its label columns as text (as R read them)."""
    labels = CASES[key]["label_columns"]
    return pd.read_csv(REFERENCE / "data" / CASES[key]["data"],
                       dtype={c: str for c in labels})


def _start(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dlmm.cli", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait(procs: dict) -> dict:
    out = {}
    for key, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=TIMEOUT)
        out[key] = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    return out


@pytest.fixture(scope="module")
def fits(tmp_path_factory):
    """Every case of :data:`KEYS` fitted by ``dlmm fit -f LMER -o OUT`` (REML or ``--ml``),
    then ``dlmm summary`` of one and ``dlmm predict`` of the new data lme4 predicted:
    concurrent."""
    root = tmp_path_factory.mktemp("lme4_terms")
    data = {}
    for key in KEYS:
        name = CASES[key]["data"].split(".")[0]
        if name not in data:
            data[name] = root / f"{name}.parquet"
            _frame(key).to_parquet(data[name])
    outs = {key: root / f"out_{key}" for key in KEYS}
    procs = {key: _start("fit", data[CASES[key]["data"].split(".")[0]], "-f",
                         CASES[key]["lmer"], "-o", outs[key], "--quiet",
                         *([] if CASES[key]["reml"] else ["--ml"])) for key in KEYS}
    done = _wait(procs)
    later = {(SUMMARIZED, "summary"): _start("summary", outs[SUMMARIZED])}
    for key in KEYS:
        if key in PREDICTIONS:
            ref = PREDICTIONS[key]
            response = ref["lmer"].split("~")[0].strip()
            new = pd.DataFrame(ref["newdata"]).drop(columns=[response])
            labels = [c for c in CASES[key]["label_columns"] if c in new]
            new[labels] = new[labels].astype("string")
            new.insert(0, "row", np.arange(len(new)))
            path = root / f"new_{key}.parquet"
            new.to_parquet(path)
            later[(key, "predict")] = _start("predict", outs[key], path, "-o",
                                             root / f"predict_{key}", "--keep", "row",
                                             "--quiet")
    done.update(_wait(later))
    return outs, done, root


@pytest.mark.parametrize("key", KEYS)
def test_fit_writes_lme4s_fit(fits, key):
    """Exit 0, and result.json holds lme4's llf, fixed effects and their SEs, VarCorr."""
    outs, done, _ = fits
    ref = CASES[key]
    proc = done[key]
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((outs[key] / "result.json").read_text())
    assert doc["status"] == "converged" and doc["model"]["reml"] == ref["reml"]
    est = doc["estimates"]
    np.testing.assert_allclose(est["llf"], ref["llf"], rtol=1e-6)
    fe = {("(Intercept)" if k == "Intercept" else k): v for k, v in est["fe_params"].items()}
    assert set(fe) == set(ref["fe_params"])
    for name, value in ref["fe_params"].items():
        np.testing.assert_allclose(fe[name], value, rtol=1e-6, atol=1e-9)
    if key.split("_r")[0].split("_m")[0] not in TERMS:  # statsmodels' shape
        assert "kind" not in doc and doc["model"]["groups"] == "g"
        return
    assert doc["kind"] == "terms" and doc["model"]["lmer"] == ref["lmer"]
    assert doc["state"]["fit"]["engine"] == "nested"
    bse = {("(Intercept)" if k == "Intercept" else k): v for k, v in est["bse_fe"].items()}
    for name, value in ref["bse_fe"].items():
        np.testing.assert_allclose(bse[name], value, rtol=1e-3)
    assert list(est["theta"]) == ref["theta_names"]
    assert len(est["varcorr"]) == len(ref["varcorr"])
    for row, theirs in zip(est["varcorr"], ref["varcorr"]):
        assert (row["grp"], row["var1"], row["var2"]) == \
            (theirs["grp"], theirs["var1"], theirs["var2"] or "")
        np.testing.assert_allclose(row["vcov"], theirs["vcov"], rtol=1e-4, atol=1e-6)
    assert doc["files"] == ["summary.txt", "random_effects.parquet"]
    assert doc["cluster"]["kind"] == "none" and doc["options"]["formula"] == ref["lmer"]
    assert doc["inputs"]["specification"]["formula"] == ref["lmer"]
    assert doc["timings"]["data_pass"] > 0 and doc["timings"]["evaluations"] > 0


@pytest.mark.parametrize("key", [k for k in KEYS if k.rsplit("_", 1)[0] in TERMS])
def test_random_effects_table_is_lme4s_ranef(fits, key):
    """random_effects.parquet: lme4's ``as.data.frame(ranef(fit, condVar = TRUE))``."""
    outs, _, _ = fits
    table = pd.read_parquet(outs[key] / "random_effects.parquet")
    assert list(table.columns) == ["grpvar", "term", "grp", "condval", "condsd"]
    ref = CASES[key]["random_effects"]
    assert set(table["grpvar"]) == set(ref)
    indexed = table.set_index(["grpvar", "term", "grp"])
    for factor, theirs in ref.items():
        assert (table["grpvar"] == factor).sum() == theirs["n_levels"] * len(theirs["condval"])
        for what in ("condval", "condsd"):
            for column, values in theirs[what].items():
                got = indexed.loc[[(factor, column, level) for level in values], what]
                np.testing.assert_allclose(got.to_numpy(), list(values.values()),
                                           rtol=1e-3, atol=1e-5)


def test_summary_prints_the_folders_summary(fits):
    outs, done, _ = fits
    proc = done[(SUMMARIZED, "summary")]
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (outs[SUMMARIZED] / "summary.txt").read_text()


@pytest.mark.parametrize("key", KEYS)
def test_summary_txt_holds_lme4s_numbers(fits, key):
    """summary.txt: lme4's logLik, number of levels per factor and fixed effects."""
    outs, _, _ = fits
    text = (outs[key] / "summary.txt").read_text()
    ref = CASES[key]
    if key.rsplit("_", 1)[0] in TERMS:  # lme4's layout
        assert f"logLik {ref['llf']:.4f}" in text
        for factor, n in ref["ngroups"].items():
            assert f"{factor}, {n}" in text
        rows = {line.split()[0]: float(line.split()[1]) for line in
                text.split("t value\n", 1)[1].split("\n\n", 1)[0].splitlines()}
    else:  # statsmodels' layout
        assert f"Log-Likelihood:     {ref['llf']:.4f}" in text
        rows = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
                if line.split()[:1] in (["Intercept"], ["x"])}
    for name, value in ref["fe_params"].items():
        assert rows["Intercept" if name == "(Intercept)" else name] == pytest.approx(
            value, rel=1e-5 if key.rsplit("_", 1)[0] in TERMS else 5e-3)


@pytest.mark.parametrize("key", [k for k in KEYS if k in PREDICTIONS])
def test_predict_is_lme4s_predict(fits, key):
    """``dlmm predict`` of lme4's new rows (known levels, new levels of each factor, a
    missing one, whose effect lme4 leaves out): ``predict(fit, newdata,
    allow.new.levels = TRUE)``."""
    _, done, root = fits
    ref = PREDICTIONS[key]
    proc = done[(key, "predict")]
    assert proc.returncode == 0, proc.stderr
    got = pd.read_parquet(root / f"predict_{key}").sort_values("row")
    assert got["row"].tolist() == list(range(len(ref["newdata"])))
    np.testing.assert_allclose(got["predicted"].to_numpy(), ref["predict_new"], rtol=1e-6,
                               atol=1e-6)


def test_cluster_and_parquet_folder_give_lme4s_fit(tmp_path):
    """Three levels from a folder of three Parquet files on the embedded cluster's two
    workers, with fitted values: lme4's fit, and ``fitted.parquet`` is lme4's
    ``predict(fit)`` in the order of the files' rows."""
    key = "sim_three_reml"
    frame = _frame(key)
    folder = tmp_path / "data"
    folder.mkdir()
    outer = sorted(frame["a"].unique())
    for k, part in enumerate(np.array_split(np.asarray(outer), 3)):
        frame[frame["a"].isin(part)].to_parquet(folder / f"part{k}.parquet")
    proc = run_dlmm("fit", folder, "-f", CASES[key]["lmer"], "-o", tmp_path / "out",
                    "--workers", "2", "--fitted", "--quiet")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "out" / "result.json").read_text())
    assert doc["cluster"]["kind"] == "embedded" and doc["cluster"]["workers"] == 2
    np.testing.assert_allclose(doc["estimates"]["llf"], CASES[key]["llf"], rtol=1e-6)
    assert doc["files"] == ["summary.txt", "random_effects.parquet", "fitted.parquet"]
    fitted = pd.read_parquet(tmp_path / "out" / "fitted.parquet")["fitted"].to_numpy()
    in_file_order = pd.concat([pd.read_parquet(p) for p in sorted(folder.iterdir())])
    first = in_file_order.index.to_numpy()  # the rows of the original data, file order
    ref = PREDICTIONS[key]
    assert len(fitted) == ref["n_fitted"]
    np.testing.assert_allclose(fitted.sum(), ref["fitted_sum"], rtol=1e-7)
    order = np.argsort(first)
    np.testing.assert_allclose(fitted[order][:20], ref["fitted_first"], rtol=1e-6, atol=1e-6)


def test_not_converged_is_exit_3_with_the_outputs(tmp_path):
    """One L-BFGS-B iteration and no Newton polish: exit 3, the folder written with
    ``not_converged`` and the optimizer's reason."""
    key = "sim_slopes2_reml"
    path = tmp_path / "d.parquet"
    _frame(key).to_parquet(path)
    proc = run_dlmm("fit", path, "-f", CASES[key]["lmer"], "-o", tmp_path / "out",
                    "--max-iter", "1", "--no-newton", "--method", "lbfgs", "--quiet")
    assert proc.returncode == 3, proc.stderr
    doc = json.loads((tmp_path / "out" / "result.json").read_text())
    assert doc["status"] == "not_converged" and doc["convergence_failures"][0]
    assert doc["estimates"]["llf"] < CASES[key]["llf"] - 1e-3


@pytest.mark.parametrize(("formula", "extra", "words"), [
    ("y ~ xx + (x | g) + (x | g:hh)", (), "'hh' is not in the data"),
    ("y ~ x + (x | g) + (x | g:h)", ("--cache", "CACHE"), "--cache"),
])
def test_bad_input_is_one_line_and_no_output(tmp_path, formula, extra, words):
    """Exit 2, one line naming the fault, before any cluster starts (``--workers 2``
    is given: the refusal comes first), nothing written."""
    path = tmp_path / "d.parquet"
    _frame("sim_slopes2_reml").to_parquet(path)
    extra = [str(tmp_path / "cache") if e == "CACHE" else e for e in extra]
    proc = run_dlmm_here("fit", path, "-f", formula, "-o", tmp_path / "out", "--workers",
                         "2", *extra)
    assert proc.returncode == 2
    assert words in _error_line(proc)
    assert "cluster" not in proc.stderr.split("error:")[0]
    _no_output(tmp_path)


def test_skip_unchanged_and_start_from_read_a_fit_of_terms(fits):
    """``--skip-unchanged`` over the fit's own folder reads nothing and exits 0;
    ``--start-from`` it starts at its θ and reaches lme4's fit again."""
    outs, _, root = fits
    key = "sim_blocks_reml"
    data, formula = root / "sim_blocks.parquet", CASES[key]["lmer"]
    again = _start("fit", data, "-f", formula, "-o", root / "again", "--start-from",
                   outs[key], "--quiet")
    # The skip reads no data and starts no cluster: in this process, beside the refit.
    same = run_dlmm_here("fit", data, "-f", formula, "-o", outs[key], "--skip-unchanged",
                         "--log-format", "json")
    done = {"same": same, **_wait({"again": again})}
    assert done["same"].returncode == 0, done["same"].stderr
    assert '"status": "unchanged"' in done["same"].stderr
    assert done["again"].returncode == 0, done["again"].stderr
    doc = json.loads((root / "again" / "result.json").read_text())
    assert doc["start"] == {"path": str(outs[key]), "used": True, "reason": None}
    np.testing.assert_allclose(doc["estimates"]["llf"], CASES[key]["llf"], rtol=1e-8)
    first = json.loads((outs[key] / "result.json").read_text())
    assert doc["optimizer"]["evaluations"] < first["optimizer"]["evaluations"]
