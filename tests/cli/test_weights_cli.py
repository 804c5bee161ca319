"""``dlmm fit --weights COLUMN``: lme4's weighted fit from the command line, and the
one-line refusal of zero or negative weights (lme4's numbers:
``tests/reference/weights/lme4_weights.R``), and a weighted model of terms
(``lme4_weights_terms.R``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .helpers import _error_line, _no_output, run_dlmm, run_dlmm_here

HERE = Path(__file__).resolve().parents[1] / "reference" / "weights"
REF = json.loads((HERE / "lme4_weights.json").read_text())["sleep_slope"]
MODEL = ["--formula", "Reaction ~ Days + (Days | Subject)", "--weights", "w"]


def _parquet(tmp_path: Path, **changes) -> Path:
    frame = pd.read_csv(HERE / "sleepstudy_w.csv", dtype={"Subject": str})
    for rows, value in changes.values():
        frame.loc[rows, "w"] = value
    path = tmp_path / "sleep.parquet"
    frame.to_parquet(path, index=False)
    return path


def test_fit_with_weights_is_lme4s(tmp_path):
    proc = run_dlmm("fit", _parquet(tmp_path), *MODEL, "--ml", "-o", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    saved = json.loads((tmp_path / "out" / "result.json").read_text())
    estimates = saved["state"]["estimates"]
    np.testing.assert_allclose(estimates["llf"], REF["ML"]["logLik"], rtol=1e-6)
    np.testing.assert_allclose(estimates["fe_params"], list(REF["ML"]["fixef"].values()),
                               rtol=1e-6)
    assert saved["state"]["fit"]["weights"] == "w"
    assert "Precision weights:" in (tmp_path / "out" / "summary.txt").read_text()


def test_zero_weights_refused_in_one_line(tmp_path):
    data = _parquet(tmp_path, zero=([0, 5], 0.0))
    proc = run_dlmm_here("fit", data, *MODEL, "--quiet", "-o", tmp_path / "out")
    assert proc.returncode == 2, proc.stderr
    line = _error_line(proc)
    assert "weights column 'w' has 2 zero or negative value(s)" in line
    _no_output(tmp_path)


def test_fit_of_terms_with_weights_is_lme4s(tmp_path):
    """Items with a correlated slope crossed with classes in schools (the crossed terms
    engine), weighted, from a Parquet file: lme4's ML fit; ``dlmm summary`` names the
    weights."""
    spec = json.loads((HERE / "lme4_weights_terms.json").read_text())["beside_crossed"]
    frame = pd.read_csv(HERE / spec["csv"], dtype={c: str for c in spec["labels"]})
    frame.to_parquet(tmp_path / "beside.parquet", index=False)
    proc = run_dlmm("fit", tmp_path / "beside.parquet", "-f", spec["formula"], "--weights",
                    "w", "--ml", "--quiet", "-o", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "out" / "result.json").read_text())
    assert doc["kind"] == "terms" and doc["state"]["fit"]["engine"] == "crossed"
    np.testing.assert_allclose(doc["estimates"]["llf"], spec["ML"]["logLik"], rtol=1e-6)
    np.testing.assert_allclose(doc["state"]["estimates"]["theta"], spec["ML"]["theta"],
                               rtol=1e-4, atol=1e-5)
    shown = run_dlmm("summary", tmp_path / "out")
    assert shown.returncode == 0 and "Weights: w" in shown.stdout
