"""``dlmm fit -f`` with slopes on crossed factors (issue 23): mlmRev's ScotsSec,
``attain ~ verbal + (1 + verbal | second) + (1 | primary)``, from a Parquet file on
the command line, checked against lme4 1.1-31 (``tests/reference/crossed_terms``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .helpers import run_dlmm

REFERENCE = Path(__file__).resolve().parents[1] / "reference" / "crossed_terms"


def test_slopes_on_crossed_factors_from_the_command_line_are_lme4s(tmp_path):
    ref = json.loads((REFERENCE / "lme4_crossed_terms.json").read_text())["cases"][
        "scotssec_ml"]
    frame = pd.read_csv(REFERENCE / "data" / ref["data"])
    for column in ref["label_columns"]:
        frame[column] = frame[column].astype(str)
    frame.to_parquet(tmp_path / "scots.parquet", index=False)
    proc = run_dlmm("fit", tmp_path / "scots.parquet", "-f", ref["lmer"], "--ml",
                    "-o", tmp_path / "out", "--quiet")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "out" / "result.json").read_text())
    assert doc["kind"] == "terms" and doc["state"]["fit"]["engine"] == "crossed"
    est = doc["estimates"]
    np.testing.assert_allclose(est["llf"], ref["llf"], rtol=1e-6)
    for name, value in ref["fe_params"].items():
        ours = est["fe_params"]["Intercept" if name == "(Intercept)" else name]
        np.testing.assert_allclose(ours, value, rtol=1e-6)
    for row, theirs in zip(est["varcorr"], ref["varcorr"], strict=True):
        assert (row["grp"], row["var1"], row["var2"]) == \
            (theirs["grp"], theirs["var1"], theirs["var2"] or "")
        np.testing.assert_allclose(row["vcov"], theirs["vcov"], rtol=1e-4, atol=1e-6)
    shown = run_dlmm("summary", tmp_path / "out")
    assert shown.returncode == 0 and "crossed engine" in shown.stdout
