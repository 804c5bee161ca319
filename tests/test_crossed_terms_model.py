"""Crossed factors with slopes, fitted by ``dlmm.lmer`` on the crossed engine, against
lme4 1.1-31 (``tests/reference/crossed_terms``: made with ``lme4_crossed_terms.R`` from
Debian's R): mlmRev's ScotsSec (``(1 + verbal | second) + (1 | primary)``), a
kb07-shaped maximal model (56 subjects x 32 items, 4 correlated effects on each) and
its ``||`` version, ``(x || subj) + (1 | item)``, three crossed factors with a slope on
one, and a crossed factor with a slope beside a nested one; REML and ML.

log-likelihood (1e-6 relative; dlmm may only be higher, where lme4 stops short of
the optimum), θ's names, fixed effects (1e-6), their standard errors (1e-3), VarCorr
(variances and covariances 1e-4 relative, or 1e-6 of the residual variance: a
variance lme4's two optimizers place 1e-3 apart, ``optimizer.varcorr_max_rel_diff``,
is as flat as that), lmerTest's Satterthwaite df (1e-3), conditional modes and sds
(1e-3) and the fitted values.

kb07's ML fits start from the REML fit's θ (as a user refitting would), to keep the
suite fast; the REML fits start from lme4's default start.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import dlmm
from dlmm.results.terms_results import TermsResults

REFERENCE = Path(__file__).resolve().parent / "reference" / "crossed_terms"
CASES = json.loads((REFERENCE / "lme4_crossed_terms.json").read_text())["cases"]
NAMES = ["scotssec", "kb07", "kb07_diag", "sim_diag", "sim_three", "sim_beside"]


def _name(lme4_name: str) -> str:
    return "Intercept" if lme4_name == "(Intercept)" else lme4_name


def _data(ref: dict) -> pd.DataFrame:
    return pd.read_csv(REFERENCE / "data" / ref["data"],
                       dtype={c: str for c in ref["label_columns"]})


@pytest.fixture(scope="module")
def fits() -> dict:
    return {}


def _fit(fits: dict, name: str, reml: bool):
    """The case's fit, made once per module and process (pytest-xdist may send the ML
    case to a process that never ran the REML one). kb07's ML fit starts from its REML
    θ, as its singular optimum is reached more surely from there."""
    if (name, reml) not in fits:
        ref = CASES[f"{name}_{'reml' if reml else 'ml'}"]
        start = None
        if not reml and name.startswith("kb07"):
            start = _fit(fits, name, True).theta.to_numpy()
        fits[(name, reml)] = dlmm.lmer(ref["lmer"], _data(ref), REML=reml,
                                       start_params=start)
    return fits[(name, reml)]


@pytest.fixture(scope="module", params=[(c, reml) for c in NAMES for reml in (True, False)],
                ids=lambda p: f"{p[0]}-{'reml' if p[1] else 'ml'}")
def fitted(request, fits):
    name, reml = request.param
    return CASES[f"{name}_{'reml' if reml else 'ml'}"], _fit(fits, name, reml)


def test_the_fit_is_lme4s(fitted):
    ref, fit = fitted
    assert isinstance(fit, TermsResults) and fit.engine == "crossed" and fit.converged
    # lme4's optimum, or higher (never lower by more than the tolerance)
    assert fit.llf >= ref["llf"] - 1e-6 * abs(ref["llf"])
    np.testing.assert_allclose(fit.llf, ref["llf"], rtol=1e-6)
    assert list(fit.theta.index) == list(ref["theta_names"])
    assert fit.n_levels == ref["ngroups"]
    assert fit.nobs == ref["nobs"] and fit.npar == ref["df_logLik"]
    for name, value in ref["fe_params"].items():
        np.testing.assert_allclose(fit.fe_params[_name(name)], value, rtol=1e-6, atol=1e-9)
    for name, value in ref["bse_fe"].items():
        np.testing.assert_allclose(fit.bse_fe[_name(name)], value, rtol=1e-3)
    names = [_name(n) for n in ref["fe_params"]]  # lme4's order
    np.testing.assert_allclose(fit.cov_fe.loc[names, names].to_numpy(), ref["cov_fe"],
                               rtol=1e-3,
                               atol=1e-6 * np.abs(ref["cov_fe"]).max())
    np.testing.assert_allclose(fit.scale, ref["scale"], rtol=1e-4)


def test_varcorr_is_lme4s(fitted):
    ref, fit = fitted
    ours = fit.varcorr()
    assert len(ours) == len(ref["varcorr"])
    for row, theirs in zip(ours.to_dict("records"), ref["varcorr"]):
        assert (row["grp"], row["var1"], row["var2"]) == \
            (theirs["grp"], theirs["var1"], theirs["var2"] or "")
        np.testing.assert_allclose(row["vcov"], theirs["vcov"], rtol=1e-4,
                                   atol=1e-6 * ref["scale"])


def test_conditional_modes_are_lme4s(fitted):
    ref, fit = fitted
    ranef = fit.random_effects
    sds = {name: np.sqrt(np.diagonal(cov, axis1=1, axis2=2))
           for name, cov in fit.random_effects_cov().items()}
    for factor, theirs in ref["random_effects"].items():
        frame = ranef[factor]
        assert len(frame) == theirs["n_levels"]
        scale = max(abs(v) for values in theirs["condval"].values() for v in values.values())
        for column, values in theirs["condval"].items():
            levels = list(values)
            np.testing.assert_allclose(frame.loc[levels, column].to_numpy(),
                                       list(values.values()), rtol=1e-3, atol=1e-4 * scale)
            j = list(frame.columns).index(column)
            at = frame.index.get_indexer(levels)
            csd = theirs["condsd"][column]
            np.testing.assert_allclose(sds[factor][at, j], [csd[v] for v in levels],
                                       rtol=1e-3, atol=1e-4 * scale)


def test_fitted_values_are_lme4s(fitted):
    ref, fit = fitted
    np.testing.assert_allclose(fit.fittedvalues.to_numpy()[:10], ref["fitted_first"],
                               rtol=1e-6)


@pytest.mark.parametrize("name", ["scotssec", "sim_three", "sim_beside", "kb07_diag", "kb07"])
def test_satterthwaite_is_lmertests(fits, name):
    ref = CASES[f"{name}_reml"]
    fit = fits.get((name, True)) or dlmm.lmer(ref["lmer"], _data(ref))
    table = fit.satterthwaite()
    for coef, df in ref["satterthwaite_df"].items():
        np.testing.assert_allclose(table.loc[_name(coef), "df"], df, rtol=1e-3)
        np.testing.assert_allclose(table.loc[_name(coef), "Std. Error"],
                                   ref["bse_fe"][coef], rtol=1e-3)


def test_kb07_polish_takes_one_difference_hessian(fits):
    """Issue 23, item 3: the polish keeps its Hessian (20 gradient differences) across
    its steps; before, it took a second one after its first step (84 factorizations)."""
    ref = CASES["kb07_reml"]
    fit = _fit(fits, "kb07", True)
    assert fit.converged
    np.testing.assert_allclose(fit.llf, ref["llf"], rtol=1e-10)
    assert fit.mle_retvals["evaluations"] <= 66


def test_the_default_start_is_the_moment_estimates(fits):
    """Issue 23, item 3: a crossed fit of terms starts from moment estimates of each
    factor's covariance (kernels/crossed/theta.moment_covariances), not lme4's identity
    start: kb07's maximal model reaches lme4's optimum in fewer evaluations (64 from
    lme4's start)."""
    ref = CASES["kb07_reml"]
    fit = _fit(fits, "kb07", True)
    np.testing.assert_allclose(fit.llf, ref["llf"], rtol=1e-10)
    assert fit.mle_retvals["evaluations"] <= 56
    model = fit.model
    start = model.engine_theta(model.layout.start)
    moments = model._stats.start_theta(model.engine_layout)
    assert moments.shape == start.shape and not np.allclose(moments, start)
    # the moment start is nearer lme4's optimum than lme4's own start
    optimum = model.engine_theta(np.asarray(ref["theta"]))
    assert model.objective()(moments)[0] > model.objective()(start)[0]
    assert np.linalg.norm(moments - optimum) < np.linalg.norm(start - optimum)
