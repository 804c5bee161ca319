"""A residual variance per stratum (``residual_by``, nlme's ``varIdent``) against nlme.

nlme's numbers come from ``tests/reference/residual/nlme_varident.R`` (Debian's
r-cran-nlme): Orthodont with a residual variance per Sex, and a simulated design of
150 groups whose rows fall in three strata at random, REML and ML. Checked: the
log-likelihood, fixed effects and their standard errors, the random effects'
covariance and conditional modes, every stratum's residual variance, and the
standard error of log δ against the curvature of nlme's profile log-likelihood.
Then the saved result, the summary, the simulated responses and refit.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import dlmm

HERE = Path(__file__).resolve().parents[1] / "reference" / "residual"
REF = json.loads((HERE / "nlme_varident.json").read_text())
CASES = {
    "orthodont": ("orthodont.csv", "distance ~ age",
                  {"groups": "Subject", "re_formula": "~age", "residual_by": "Sex"}),
    "sim_strata": ("sim_strata.csv", "y ~ x",
                   {"groups": "g", "re_formula": "~x", "residual_by": "s"}),
}


def data(csv: str) -> pd.DataFrame:
    return pd.read_csv(HERE / csv)


@pytest.fixture(scope="module")
def fits():
    out = {}
    for case, (csv, formula, kw) in CASES.items():
        for reml in (True, False):
            out[case, reml] = dlmm.mixedlm(formula, data(csv), **kw).fit(reml=reml)
    return out


@pytest.mark.parametrize("reml", [True, False], ids=["REML", "ML"])
@pytest.mark.parametrize("case", list(CASES))
def test_nlme_agreement(fits, case, reml):
    result = fits[case, reml]
    ref = REF[case]["REML" if reml else "ML"]
    assert result.converged
    np.testing.assert_allclose(result.llf, ref["logLik"], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(result.fe_params), list(ref["fixef"].values()),
                               rtol=1e-6)
    table = result.satterthwaite()  # lme4's standard errors, σ² (X'V⁻¹X)⁻¹
    se = np.array(list(ref["se"].values()))
    if not reml:  # nlme's ML table scales σ² by N / (N - p); lme4's does not
        se *= np.sqrt((result.nobs - se.size) / result.nobs)
    np.testing.assert_allclose(table["Std. Error"].to_numpy(), se, rtol=1e-3)
    np.testing.assert_allclose(np.asarray(result.cov_re), ref["cov_re"], rtol=1e-4,
                               atol=1e-4 * ref["cov_re"][0][0])
    strata = result.residual_strata
    delta = ref["delta"]
    reference_level = next(k for k, v in delta.items() if v == 1)
    assert strata.levels[0] == reference_level and sorted(strata.levels) == sorted(delta)
    variances = {k: ref["sigma"] ** 2 * v**2 for k, v in delta.items()}
    np.testing.assert_allclose(strata.variances, [variances[k] for k in strata.levels],
                               rtol=1e-4)
    np.testing.assert_allclose(result.scale, ref["sigma"] ** 2, rtol=1e-4)
    np.testing.assert_allclose(strata.delta, [delta[k] for k in strata.levels], rtol=1e-4)
    # standard error of log δ: the curvature of nlme's profile log-likelihood in log δ
    # (nlme's own apVar is about 1% off it on the simulated design)
    se_log = strata.delta_se[1:] / strata.delta[1:]
    np.testing.assert_allclose(
        se_log, [ref["se_log_delta_profile"][k] for k in strata.levels[1:]], rtol=1e-3)
    modes = result.random_effects
    ours = np.array([np.asarray(modes[g]) for g in ref["ranef_groups"]])
    np.testing.assert_allclose(ours, ref["ranef"], rtol=1e-3, atol=1e-3 * np.abs(ours).max())


def test_saved_result_and_summary(fits, tmp_path):
    result = fits["orthodont", True]
    result.save(tmp_path / "fit")
    loaded = dlmm.load_result(tmp_path / "fit")
    assert loaded.residual_strata.levels == result.residual_strata.levels
    np.testing.assert_array_equal(loaded.residual_strata.delta, result.residual_strata.delta)
    np.testing.assert_array_equal(loaded.residual_strata.delta_se,
                                  result.residual_strata.delta_se)
    text = str(loaded.summary())
    assert "Residual by:" in text and "Scale Male:" in text and "2.7069" in text


def test_simulated_residual_variance_by_stratum(fits):
    """Each row's simulated variance is z' cov_re z + its stratum's residual variance."""
    result = fits["orthodont", True]
    frame = data("orthodont.csv")
    sims = result.simulate(n=4000, seed=3).to_numpy()
    z = np.column_stack([np.ones(len(frame)), frame["age"]])
    by_level = dict(zip(result.residual_strata.levels, result.residual_strata.variances))
    expected = np.einsum("ra,ab,rb->r", z, np.asarray(result.cov_re), z) + \
        frame["Sex"].map(by_level).to_numpy()
    ratio = sims.var(axis=1) / expected
    for level in ("Male", "Female"):
        np.testing.assert_allclose(ratio[(frame["Sex"] == level).to_numpy()].mean(), 1.0,
                                   atol=0.03)


def test_refit_keeps_the_strata(fits):
    result = fits["orthodont", True]
    frame = data("orthodont.csv")
    again = result.refit(frame["distance"].to_numpy())
    np.testing.assert_allclose(again.llf, result.llf, rtol=1e-10)
    assert again.residual_strata.levels == result.residual_strata.levels
