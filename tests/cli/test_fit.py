"""``dlmm fit`` (and ``dlmm summary``) end to end: real Dask processes, exit codes,
outputs, logs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import dlmm
from tests.cli.helpers import (
    FORMULA,
    _error_line,
    _fit_args,
    _no_output,
    run_dlmm,
    run_dlmm_here,
)
from tests.conftest import REFERENCE

# -- real cluster -------------------------------------------------------------------


def test_fit_on_scheduler_equals_python_api(scheduler, simulated, tmp_path):
    from distributed import Client

    out = tmp_path / "out"
    proc = run_dlmm(*_fit_args(simulated, "--scheduler", scheduler, "--output", out,
                               "--log-format", "json", "--fitted"))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((out / "result.json").read_text())
    assert doc["schema"] == "dlmm.result/2" and doc["status"] == "converged"
    assert doc["cluster"]["kind"] == "scheduler" and doc["cluster"]["workers"] == 2
    assert doc["nobs"] == 1800 and doc["n_groups"] == 150

    with Client(scheduler, timeout=30) as client:
        model = dlmm.mixedlm(FORMULA, str(simulated), groups="g", re_formula="~x1",
                             vc_formula={"c": "0 + C(c)"}, client=client)
        api = model.fit(client=client)
        expected = client.compute(api.random_effects_table(with_se=True)).result()
        fitted = client.compute(api.fittedvalues).result()
    est = doc["estimates"]
    rel = {"rtol": 1e-6, "atol": 0}
    np.testing.assert_allclose(list(est["fe_params"].values()), api.fe_params, **rel)
    assert list(est["fe_params"]) == list(api.fe_params.index)
    np.testing.assert_allclose(est["cov_re"]["matrix"], api.cov_re.to_numpy(), **rel)
    np.testing.assert_allclose(list(est["vcomp"].values()), api.vcomp, **rel)
    np.testing.assert_allclose(est["scale"], api.scale, **rel)
    np.testing.assert_allclose(est["llf"], api.llf, **rel)
    np.testing.assert_allclose(list(est["params"].values()), api.params, **rel)
    summary = (out / "summary.txt").read_text()
    assert "Mixed Linear Model Regression Results" in summary and "c Var" in summary
    effects = pd.read_parquet(out / "random_effects.parquet")
    pd.testing.assert_frame_equal(effects, expected, rtol=1e-6)
    # fitted.parquet: written by the workers, in the input's row order.
    written = pd.read_parquet(out / "fitted.parquet")["fitted"]
    np.testing.assert_allclose(written, np.asarray(fitted), rtol=1e-6)
    assert doc["files"] == ["summary.txt", "random_effects.parquet", "vc_effects.parquet",
                            "fitted.parquet"]
    assert dlmm.load_result(out).llf == pytest.approx(api.llf, rel=1e-6)

    # --log-format json: every stderr line is an object; the data pass and every
    # optimizer evaluation are reported.
    records = [json.loads(line) for line in proc.stderr.strip().splitlines()]
    events = [r.get("event") for r in records]
    passes = [r["stage"] for r in records if r.get("event") == "data_pass"]
    assert passes[0] == "start" and passes[-1] == "end"
    progress = [r for r in records if r.get("event") == "data_pass"
                and r["stage"] == "progress"]
    assert progress and progress[-1]["done"] == progress[-1]["total"] == 4  # 4 files
    steps = [r for r in records if r.get("event") == "evaluation"]
    assert len(steps) == doc["optimizer"]["evaluations"] > 0
    assert {"step", "llf", "grad_norm", "stage"} <= set(steps[0])
    assert events[-1] == "output"


def test_not_converged_exits_3_with_outputs_marked(scheduler, simulated, tmp_path):
    out = tmp_path / "out"
    proc = run_dlmm(*_fit_args(simulated, "--scheduler", scheduler, "--output", out,
                               "--max-iter", "1", "--method", "cg", "--no-newton"))
    assert proc.returncode == 3, proc.stderr
    doc = json.loads((out / "result.json").read_text())
    assert doc["status"] == "not_converged" and doc["converged"] is False
    assert doc["optimizer"]["converged"] is False
    assert doc["options"]["method"] == ["cg"] and doc["options"]["newton_steps"] == 0
    assert "Converged:" in (out / "summary.txt").read_text()
    assert "ConvergenceWarning" in proc.stderr and "not converged" in proc.stderr


def test_existing_output_refused_without_overwrite(scheduler, simulated, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    proc = run_dlmm_here(*_fit_args(simulated, "--scheduler", scheduler, "--output", out))
    assert proc.returncode == 2
    assert "exists; pass --overwrite" in _error_line(proc)
    assert [p.name for p in out.iterdir()] == ["old.txt"]
    # Not a result folder: --overwrite does not delete it either.
    proc = run_dlmm_here(*_fit_args(simulated, "--scheduler", scheduler, "--output", out,
                                    "--overwrite"))
    assert proc.returncode == 2
    assert "--overwrite refused" in _error_line(proc)
    assert [p.name for p in out.iterdir()] == ["old.txt"]
    (out / "old.txt").unlink()  # empty: replaced; then a result folder: replaced
    for _ in range(2):
        proc = run_dlmm(*_fit_args(simulated, "--scheduler", scheduler, "--output", out,
                                   "--overwrite", "--quiet"))
        assert proc.returncode == 0 and proc.stderr == ""
    assert sorted(p.name for p in out.iterdir()) == [
        "random_effects.parquet", "result.json", "summary.txt", "vc_effects.parquet"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


@pytest.mark.parametrize(
    ("case", "fault"),
    [
        ("unknown column", "column 'nope'"),
        ("missing file", "does not exist"),
        ("unreadable parquet", "broken.parquet"),
        ("bad option", "--missing"),
        ("bad vc", "--vc 'c'"),
        ("bad config key", "unknown option 'colour'"),
    ],
)
def test_bad_input_exits_2_with_one_line(scheduler, simulated, tmp_path, case, fault):
    out = tmp_path / "out"
    common = ["--scheduler", scheduler, "--output", out, "--quiet"]
    if case == "unknown column":
        args = ["fit", simulated, "--formula", "y ~ x1 + nope", "--groups", "g", *common]
    elif case == "missing file":
        args = _fit_args(tmp_path / "nowhere", *common)
    elif case == "unreadable parquet":
        (tmp_path / "bad").mkdir()
        (tmp_path / "bad" / "broken.parquet").write_bytes(b"PAR1 this is not parquet")
        args = _fit_args(tmp_path / "bad", *common)
    elif case == "bad option":
        args = _fit_args(simulated, "--missing", "sometimes", *common)
    elif case == "bad vc":
        args = ["fit", simulated, "--formula", FORMULA, "--vc", "c", *common]
    else:
        config = tmp_path / "fit.toml"
        config.write_text('formula = "y ~ x1"\ncolour = "blue"\n')
        args = ["fit", simulated, "--config", config, *common]
    proc = run_dlmm_here(*args)
    assert proc.returncode == 2, proc.stderr
    assert fault in _error_line(proc)
    _no_output(tmp_path)


def test_sleepstudy_on_embedded_cluster_gives_lme4_llf(tmp_path, reference_cases):
    case = reference_cases["sleepstudy_reml"]
    frame = pd.read_csv(REFERENCE / "data" / case["model"]["data"])
    data = tmp_path / "sleepstudy"
    data.mkdir()
    subjects = sorted(frame["Subject"].unique())
    for k, part in enumerate((subjects[:9], subjects[9:])):  # two files of whole subjects
        frame[frame["Subject"].isin(part)].to_parquet(data / f"part-{k}.parquet", index=False)
    out = tmp_path / "out"
    proc = run_dlmm("fit", data, "--formula", "Reaction ~ Days", "--groups", "Subject",
                    "--re-formula", "~Days", "--workers", "2", "--threads-per-worker", "1",
                    "--memory-limit", "1GiB", "--output", out)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((out / "result.json").read_text())
    expected = case["expected"]
    assert doc["estimates"]["llf"] == pytest.approx(expected["llf"], abs=1e-4)
    assert doc["estimates"]["fe_params"] == pytest.approx(expected["fe_params"], rel=1e-5)
    assert doc["nobs"] == expected["nobs"] and doc["cluster"]["kind"] == "embedded"
    assert doc["cluster"]["workers"] == 2
    assert "data pass: done" in proc.stderr and "step 1 " in proc.stderr
    assert "cluster start " in proc.stderr  # how long the embedded cluster took to start

    shown = run_dlmm("summary", out, timeout=60)
    assert shown.returncode == 0
    assert shown.stdout == (out / "summary.txt").read_text()
    assert "Reaction" in shown.stdout


def test_drop_collinear_flag_reaches_the_model(simulated, tmp_path):
    data = pd.read_parquet(simulated)
    data["x3"] = 2.0 * data["x1"]
    path = tmp_path / "collinear.parquet"
    data.to_parquet(path)
    refused = run_dlmm("fit", path, "--formula", "y ~ x1 + x2 + x3", "--groups", "g",
                       "--workers", "1", "--output", tmp_path / "no", "--quiet")
    assert refused.returncode == 2, refused.stderr
    assert "collinear" in _error_line(refused)
    _no_output(tmp_path, "no")
    done = run_dlmm("fit", path, "--formula", "y ~ x1 + x2 + x3", "--groups", "g",
                    "--workers", "1", "--drop-collinear", "--output", tmp_path / "yes")
    assert done.returncode == 0, done.stderr
    doc = json.loads((tmp_path / "yes" / "result.json").read_text())
    assert list(doc["estimates"]["fe_params"]) == ["Intercept", "x1", "x2"]
    assert "dropped 1 column(s) 'x3'" in done.stderr


def test_missing_value_error_names_the_cli_flag():
    """The Python API's missing-value error names ``missing="drop"``; ``dlmm fit`` shows
    the same error with its own flag."""
    from dlmm.cli.fit import _cli_option_names

    data = pd.DataFrame({"y": [1.0, np.nan, 3.0, 4.0, 5.0, 6.0], "x": [1.0, 2, 3, 4, 5, 7],
                         "g": [1, 1, 2, 2, 3, 3]})
    with pytest.raises(dlmm.InputError, match='pass missing="drop" to drop those rows'):
        dlmm.mixedlm("y ~ x", data, groups="g")  # in memory: refused at construction
    with pytest.raises(dlmm.InputError, match="pass --missing drop to drop those rows"), \
            _cli_option_names():
        dlmm.mixedlm("y ~ x", data, groups="g").prepare()


def test_covariate_times_1e20_and_response_times_1e_100_match_lme4(scheduler, tmp_path,
                                                                   reference_cases):
    """Issue 21, item 8, on the cluster: sleepstudy with Days * 1e20 and Reaction *
    1e-100 converges (exit 0) to lme4's fit in those units (see
    tests/reliability/test_shifts.py for the maps)."""
    c_x, c_y = 1e20, 1e-100
    exp = reference_cases["sleepstudy_reml"]["expected"]
    frame = pd.read_csv(REFERENCE / "data" / "sleepstudy.csv")
    frame.assign(Days=frame.Days * c_x, Reaction=frame.Reaction * c_y).to_parquet(
        tmp_path / "data.parquet", index=False)
    out = tmp_path / "out"
    proc = run_dlmm("fit", tmp_path / "data.parquet", "--formula", "Reaction ~ Days",
                    "--groups", "Subject", "--re-formula", "~Days", "--scheduler", scheduler,
                    "--output", out, "--quiet")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((out / "result.json").read_text())
    assert doc["converged"] is True
    est = doc["estimates"]
    n, p = exp["nobs"], 2
    assert est["llf"] == pytest.approx(
        exp["llf"] - (n - p) * np.log(c_y) - np.log(c_x), rel=1e-6)
    assert est["fe_params"]["Intercept"] == pytest.approx(
        exp["fe_params"]["Intercept"] * c_y, rel=1e-6)
    assert est["fe_params"]["Days"] == pytest.approx(exp["fe_params"]["Days"] * c_y / c_x,
                                                     rel=1e-6)
    d = np.diag([c_y, c_y / c_x])
    np.testing.assert_allclose(est["cov_re"]["matrix"], d @ np.asarray(exp["cov_re"]) @ d,
                               rtol=1e-4)
    assert est["scale"] == pytest.approx(exp["scale"] * c_y**2, rel=1e-4)
    assert est["bse"]["Days"] == pytest.approx(exp["bse_fe"]["Days"] * c_y / c_x, rel=1e-3)
