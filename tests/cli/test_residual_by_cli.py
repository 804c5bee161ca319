"""``dlmm fit --residual-by COLUMN --residual-ar1 TIME``: nlme's varIdent and corAR1 fits
from the command line, written to the result folder and its summary (nlme's numbers:
``tests/reference/residual/nlme_varident.R``, ``nlme_ar1.R``), and the one-line
refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from .helpers import _error_line, _no_output, run_dlmm, run_dlmm_here

HERE = Path(__file__).resolve().parents[1] / "reference" / "residual"
REF = json.loads((HERE / "nlme_varident.json").read_text())["orthodont"]["ML"]
AR1 = json.loads((HERE / "nlme_ar1.json").read_text())["orthodont_ar1"]["REML"]


def _parquet(tmp_path: Path) -> Path:
    path = tmp_path / "orthodont.parquet"
    frame = pd.read_csv(HERE / "orthodont.csv")
    frame.assign(t=frame["age"] // 2).to_parquet(path, index=False)
    return path


@pytest.fixture(scope="module")
def nights(tmp_path_factory) -> dict:
    """Two nights into one output folder, with a refused run between them: ``--residual-by
    Sex`` (REML) into ``night1``; ``--start-from night1`` without ``--residual-by`` (in
    this process: refused before any work); the model with ``--residual-ar1 t`` too,
    ``--skip-unchanged --overwrite`` into ``night1`` again, which is nlme's corAR1 fit.
    One run of each serves the tests below."""
    root = tmp_path_factory.mktemp("nights")
    data = _parquet(root)
    model = ["--formula", "distance ~ age + (1 | Subject)"]
    first = run_dlmm("fit", data, *model, "--residual-by", "Sex", "-o", root / "night1")
    assert first.returncode == 0, first.stderr
    refused = run_dlmm_here("fit", data, *model, "--start-from", root / "night1",
                            "-o", root / "out")
    again = run_dlmm("fit", data, *model, "--residual-by", "Sex", "--residual-ar1", "t",
                     "-o", root / "night1", "--skip-unchanged", "--overwrite")
    return {"root": root, "refused": refused, "again": again}


def test_fit_by_stratum_with_ar1_is_nlmes(nights):
    out = nights["root"] / "night1"
    assert nights["again"].returncode == 0, nights["again"].stderr
    saved = json.loads((out / "result.json").read_text())
    np.testing.assert_allclose(saved["state"]["estimates"]["llf"], AR1["logLik"], rtol=1e-6)
    residual = saved["state"]["fit"]["residual"]
    assert residual["time_column"] == "t" and residual["column"] == "Sex"
    np.testing.assert_allclose(residual["rho"], AR1["rho"], rtol=1e-4)
    assert "AR(1) in t:" in (out / "summary.txt").read_text()


def test_fit_by_stratum_is_nlmes(tmp_path):
    proc = run_dlmm("fit", _parquet(tmp_path), "--formula", "distance ~ age + (age | Subject)",
                    "--residual-by", "Sex", "--ml", "-o", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    saved = json.loads((tmp_path / "out" / "result.json").read_text())
    estimates = saved["state"]["estimates"]
    np.testing.assert_allclose(estimates["llf"], REF["logLik"], rtol=1e-6)
    np.testing.assert_allclose(estimates["fe_params"], list(REF["fixef"].values()), rtol=1e-6)
    strata = saved["state"]["fit"]["residual"]
    assert strata["column"] == "Sex" and strata["levels"] == ["Female", "Male"]
    np.testing.assert_allclose(strata["delta"], [1.0, REF["delta"]["Male"]], rtol=1e-4)
    summary = (tmp_path / "out" / "summary.txt").read_text()
    assert "Residual by:" in summary and "Scale Male:" in summary


def test_unknown_stratum_column(tmp_path):
    proc = run_dlmm_here("fit", _parquet(tmp_path), "--formula",
                         "distance ~ age + (age | Subject)", "--residual-by", "sex",
                         "-o", tmp_path / "out")
    assert proc.returncode == 2
    assert "residual_by column 'sex' is not in the data" in _error_line(proc)
    _no_output(tmp_path)


def test_start_from_and_skip_unchanged_know_the_residual_model(nights):
    """A previous output of another residual model is no start point, and no reason to
    skip a run (the runs of :func:`nights`)."""
    proc = nights["refused"]
    assert proc.returncode == 2
    assert "fitted another model: its --residual-by is 'Sex', this run's None" in \
        _error_line(proc)
    _no_output(nights["root"])
    again = nights["again"]
    assert again.returncode == 0, again.stderr
    saved = json.loads((nights["root"] / "night1" / "result.json").read_text())
    assert saved["state"]["fit"]["residual"]["time_column"] == "t"  # refitted, not skipped


def test_start_from_starts_the_residual_parameters_too(tmp_path):
    """A nightly refit from the previous optimum starts δ and ρ there: fewer steps than
    the cold start, the same optimum."""
    data = _parquet(tmp_path)
    model = ["--formula", "distance ~ age + (1 | Subject)", "--residual-by", "Sex",
             "--residual-ar1", "t", "--ml"]
    cold = run_dlmm("fit", data, *model, "-o", tmp_path / "night1")
    assert cold.returncode == 0, cold.stderr
    warm = run_dlmm("fit", data, *model, "-o", tmp_path / "night2", "--start-from",
                    tmp_path / "night1")
    assert warm.returncode == 0, warm.stderr
    first, second = (json.loads((tmp_path / n / "result.json").read_text())
                     for n in ("night1", "night2"))
    steps = [d["state"]["fit"]["timings"]["evaluations"] for d in (first, second)]
    assert steps[1] < steps[0] / 2, steps
    np.testing.assert_allclose(second["state"]["estimates"]["llf"],
                               first["state"]["estimates"]["llf"], rtol=1e-10)
    np.testing.assert_allclose(second["state"]["fit"]["residual"]["rho"],
                               first["state"]["fit"]["residual"]["rho"], rtol=1e-6)
