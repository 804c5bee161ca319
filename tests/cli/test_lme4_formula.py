"""``dlmm fit -f`` in lme4's spelling: the random-effect terms in the formula, restated as
statsmodels' options, fitted as ``dlmm.lmer`` fits them (issue 22 item 1)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from .helpers import run_dlmm, run_dlmm_here

REFERENCE = Path(__file__).resolve().parents[1] / "reference" / "nested"


@pytest.fixture(scope="module")
def chem97(tmp_path_factory):
    path = tmp_path_factory.mktemp("chem97") / "chem97.parquet"
    pd.read_csv(REFERENCE / "data" / "chem97.csv.gz").to_parquet(path)
    return path


def test_fit_takes_lme4s_spelling_and_gives_lme4s_fit(chem97, tmp_path):
    """``(1 | lea/school)`` on Chem97 from the command line: lme4 1.1-31's llf and
    variances, on the nested engine."""
    ref = json.loads((REFERENCE / "lme4_nested.json").read_text())["cases"]["chem97_reml"]
    out = tmp_path / "out"
    proc = run_dlmm("fit", chem97, "-f", "score ~ gcsecnt + gender + (1 | lea/school)",
                    "-o", out, "--quiet")
    assert proc.returncode == 0, proc.stderr
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "converged" and result["state"]["fit"]["engine"] == "nested"
    np.testing.assert_allclose(result["estimates"]["llf"], ref["llf"], rtol=1e-9)
    var = {row["grp"]: row["vcov"] for row in ref["varcorr"]}
    est = result["estimates"]
    np.testing.assert_allclose(est["cov_re"]["matrix"][0][0], var["lea"], rtol=1e-4)
    np.testing.assert_allclose(est["vcomp"]["school:lea"], var["school:lea"], rtol=1e-4)
    np.testing.assert_allclose(est["fe_params"]["gcsecnt"], ref["fe_params"]["gcsecnt"],
                               rtol=1e-6)


@pytest.mark.parametrize(("extra", "words"), [
    (("-g", "lea"), "leave out --groups"),
    (("--vc", "s=0 + C(school)"), "leave out --vc"),
])
def test_lme4s_bars_beside_statsmodels_options_are_a_usage_error(chem97, tmp_path, extra,
                                                                 words):
    proc = run_dlmm_here("fit", chem97, "-f", "score ~ gcsecnt + (1 | lea)", *extra,
                         "-o", tmp_path / "out")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], proc.stderr
    assert not (tmp_path / "out").exists()


def test_a_crossed_interaction_factor_needs_its_own_column(chem97, tmp_path):
    proc = run_dlmm_here("fit", chem97, "-f",
                         "score ~ gcsecnt + (1 | lea:school) + (1 | gender)",
                         "-o", tmp_path / "out")
    assert proc.returncode == 2
    assert "'lea:school' needs a column of its own" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(("formula", "words"), [
    ("math ~ year + (year | childid) + (1 | childid)", "'(Intercept)' on childid appears twice"),
    ("math ~ year + (year | childid) + (year | schoolid:nope)", "'nope' is not in the data"),
])
def test_what_lme4_refuses_is_refused_in_one_line(tmp_path, formula, words):
    """A model of terms lme4 refuses (an effect twice on one factor) or that names a
    column the data lack: exit 2, one line naming the term, nothing written (the
    models beyond statsmodels' shape that lme4 fits: tests/cli/test_lme4_terms.py)."""
    path = tmp_path / "eg.parquet"
    pd.read_csv(REFERENCE / "data" / "egsingle.csv").to_parquet(path)
    proc = run_dlmm_here("fit", path, "-f", formula, "-o", tmp_path / "out")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], proc.stderr
    assert not (tmp_path / "out").exists()
