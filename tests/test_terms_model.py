"""lme4's models beyond statsmodels' shape (slopes at nested levels, several blocks on a
factor, three levels), fitted by ``dlmm.lmer`` on the nested engine: lme4 1.1-31's
numbers (``tests/reference/nested``: made with ``lme4_nested.R`` from Debian's R) —
log-likelihood, θ, fixed effects and their standard errors, lmerTest's Satterthwaite
degrees of freedom, VarCorr, and the conditional modes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import dlmm
from dlmm.results.terms_results import TermsResults

REFERENCE = Path(__file__).resolve().parent / "reference" / "nested"
CASES = json.loads((REFERENCE / "lme4_nested.json").read_text())["cases"]
TERMS_CASES = ["egsingle", "sim_slopes2", "sim_blocks", "sim_three"]


def _name(lme4_name: str) -> str:
    return "Intercept" if lme4_name == "(Intercept)" else lme4_name


@pytest.fixture(scope="module", params=[(c, reml) for c in TERMS_CASES for reml in (True, False)],
                ids=lambda p: f"{p[0]}-{'reml' if p[1] else 'ml'}")
def fitted(request):
    case, reml = request.param
    ref = CASES[f"{case}_{'reml' if reml else 'ml'}"]
    data = pd.read_csv(REFERENCE / "data" / ref["data"])
    return ref, dlmm.lmer(ref["lmer"], data, REML=reml)


def test_the_fit_is_lme4s(fitted):
    ref, fit = fitted
    assert isinstance(fit, TermsResults) and fit.engine == "nested" and fit.converged
    np.testing.assert_allclose(fit.llf, ref["llf"], rtol=1e-8)
    assert list(fit.theta.index) == list(ref["theta_names"])
    np.testing.assert_allclose(fit.theta.to_numpy(), ref["theta"], rtol=1e-4, atol=1e-5)
    for name, value in ref["fe_params"].items():
        np.testing.assert_allclose(fit.fe_params[_name(name)], value, rtol=1e-6, atol=1e-9)
    for name, value in ref["bse_fe"].items():
        np.testing.assert_allclose(fit.bse_fe[_name(name)], value, rtol=1e-3)
    np.testing.assert_allclose(fit.scale, ref["scale"], rtol=1e-4)


def test_varcorr_is_lme4s(fitted):
    ref, fit = fitted
    ours = fit.varcorr()
    assert len(ours) == len(ref["varcorr"])
    for row, theirs in zip(ours.to_dict("records"), ref["varcorr"]):
        assert (row["grp"], row["var1"], row["var2"]) == \
            (theirs["grp"], theirs["var1"], theirs["var2"] or "")
        np.testing.assert_allclose(row["vcov"], theirs["vcov"], rtol=1e-4, atol=1e-6)


def test_satterthwaite_is_lmertests(fitted):
    ref, fit = fitted
    table = fit.satterthwaite()
    for name, df in ref["satterthwaite_df"].items():
        np.testing.assert_allclose(table.loc[_name(name), "df"], df, rtol=1e-3)
        np.testing.assert_allclose(table.loc[_name(name), "Std. Error"],
                                   ref["bse_fe"][name], rtol=1e-3)


def test_conditional_modes_are_lme4s(fitted):
    ref, fit = fitted
    ranef = fit.random_effects
    for factor, theirs in ref["random_effects"].items():
        frame = ranef[factor]
        assert len(frame) == theirs["n_levels"]
        for column, values in theirs["condval"].items():
            for level, value in values.items():
                assert frame.loc[level, column] == pytest.approx(value, rel=1e-3, abs=1e-5)
