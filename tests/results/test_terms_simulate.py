"""lme4's ``simulate`` and ``refit`` for fits of lme4's models beyond statsmodels' shape
(``TermsResults``).

The simulated responses are checked against the fitted model by a dense brute force:
with ``V = sigma^2 I + sum_k phi_k G_k`` (``phi`` every variance and covariance of
VarCorr, ``G_k`` the matching dense matrix of the design's columns on rows of one
level), the method-of-moments estimate of ``phi`` from the empirical covariance of
many simulations must agree with VarCorr within 4.5 of its standard errors
(``Var(r'G r) = 2 tr(G V G V)`` for Gaussian r), and their mean with ``X beta``
(Hotelling's statistic). ``refit`` of the original response is lme4's fit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

import dlmm
from dlmm.exceptions import InputError

REFERENCE = Path(__file__).resolve().parents[1] / "reference" / "nested"
CASES = json.loads((REFERENCE / "lme4_nested.json").read_text())["cases"]
N_SIM = 2000

# Small designs of every shape: three levels with a slope in the middle (the first 6
# of sim_three's 20 outer groups), two correlated blocks on one factor (the first
# 25 of sim_blocks' 80 groups), and correlated slopes at two nested levels (the first
# 12 of sim_slopes2's 40 outer groups; egsingle's shape).
DESIGNS = {
    "three_levels": ("sim_three.csv", "y ~ x + (1 | a) + (x | a:b) + (1 | a:b:c)", "a", 6),
    "two_blocks": ("sim_blocks.csv", "y ~ x + z + w + (x | g) + (0 + z + w | g)", "g", 25),
    "slopes_two_levels": ("sim_slopes2.csv", "y ~ x + (x | g) + (x | g:h)", "g", 12),
}


def _subset(file: str, outer: str, k: int) -> pd.DataFrame:
    data = pd.read_csv(REFERENCE / "data" / file)
    keep = sorted(data[outer].unique())[:k]
    return data[data[outer].isin(keep)].reset_index(drop=True)


@pytest.fixture(scope="module", params=sorted(DESIGNS))
def simulated(request):
    file, formula, outer, k = DESIGNS[request.param]
    data = _subset(file, outer, k)
    fit = dlmm.lmer(formula, data)
    return data, fit, fit.simulate(N_SIM, seed=7)


def _column(data: pd.DataFrame, name: str) -> np.ndarray:
    return np.ones(len(data)) if name == "(Intercept)" else data[name].to_numpy(dtype=float)


def _moment_design(data: pd.DataFrame, fit):
    """The dense G_k and the fitted phi_k: per term of VarCorr (lme4's rows), each
    variance and covariance, then the residual variance."""
    n = len(data)
    mats, phi = [], []
    for (_, t), rows in _varcorr_terms(fit).items():
        factor = t.factor
        labels = data[list(factor)].astype(str).to_numpy()
        same = (labels[:, None, :] == labels[None, :, :]).all(axis=2)
        for row in rows:
            zi = _column(data, row["var1"])
            zj = zi if not row["var2"] else _column(data, row["var2"])
            g = np.outer(zi, zj)
            if row["var2"]:
                g = g + g.T
            mats.append(g * same)
            phi.append(row["vcov"])
    mats.append(np.eye(n))
    phi.append(fit.scale)
    return mats, np.asarray(phi)


def _varcorr_terms(fit) -> dict:
    """VarCorr's rows by term (lme4's order), with the term."""
    vc = fit.varcorr()
    layout = fit.model.layout
    out = {}
    for grp, term in zip(layout.terms.varcorr_names, layout.terms):
        out[(grp, term)] = vc[vc["grp"] == grp].to_dict("records")
    return out


def simulated_moments(data: pd.DataFrame, fit, sims: pd.DataFrame) -> tuple:
    """The simulated responses' first two moments against the fit's:
    ``(hotelling, phi, phi_hat, se)``.

    The mean: Hotelling's ``n rbar' V^-1 rbar`` (chi-square with a degree per row) of
    the residuals from the fixed part. The covariance: ``V = sum_k phi_k G_k``; the
    least squares of the empirical covariance on the ``G_k`` gives ``phi_hat``, whose
    standard errors ``se`` are those of a sample covariance of ``n`` normal draws.
    """
    n = sims.shape[1]
    fe = fit.fe_params
    x = np.column_stack([_column(data, "(Intercept)" if k == "Intercept" else k)
                         for k in fe.index])
    r = sims.to_numpy() - (x @ fe.to_numpy())[:, None]
    mats, phi = _moment_design(data, fit)
    v = sum(p * g for p, g in zip(phi, mats))
    rbar = r.mean(axis=1)
    hotelling = n * rbar @ np.linalg.solve(v, rbar)
    s_emp = r @ r.T / n
    a = np.array([[np.sum(gk * gl) for gl in mats] for gk in mats])
    c = np.array([np.sum(s_emp * gk) for gk in mats])
    phi_hat = np.linalg.solve(a, c)
    w = [gk @ v for gk in mats]
    m = np.array([[np.sum(wk * wl.T) for wl in w] for wk in w])
    a_inv = np.linalg.inv(a)
    se = np.sqrt(np.diag(a_inv @ (2.0 / n * m) @ a_inv))
    return hotelling, np.asarray(phi), phi_hat, se


def test_simulated_responses_have_the_fitted_moments(simulated):
    data, fit, sims = simulated
    assert list(sims.columns) == [f"sim_{s + 1}" for s in range(N_SIM)]
    assert sims.index.equals(data.index)
    hotelling, phi, phi_hat, se = simulated_moments(data, fit, sims)
    assert hotelling < sps.chi2.ppf(1 - 1e-5, len(data)), hotelling
    z = (phi_hat - phi) / se
    assert np.all(np.abs(z) < 4.5), (phi_hat, phi, z)
    # and the test has power: every variance and covariance far from zero is measured
    # to 4% or better, so that a simulation 20% off in any of them would fail
    large = np.abs(phi) > 0.05
    assert large.sum() >= 5 and np.all(se[large] / np.abs(phi[large]) < 0.04)


def test_simulate_is_reproducible_and_refuses_bad_n(simulated):
    data, fit, sims = simulated
    again = fit.simulate(3, seed=7)
    np.testing.assert_array_equal(again.to_numpy(), sims.to_numpy()[:, :3])
    other = fit.simulate(3, seed=8)
    assert not np.allclose(other.to_numpy(), again.to_numpy())
    for bad in (0, 1.5, True):
        with pytest.raises(InputError, match="n >= 1"):
            fit.simulate(bad)


@pytest.fixture(scope="module")
def three_levels():
    """sim_three's REML fit, and a fit of noise in its place (``y_obs``: the data's y)."""
    ref = CASES["sim_three_reml"]
    data = pd.read_csv(REFERENCE / "data" / ref["data"])
    noise = data.assign(y=np.random.default_rng(1).standard_normal(len(data)),
                        y_obs=data["y"])
    return ref, data, dlmm.lmer(ref["lmer"], data), dlmm.lmer(ref["lmer"], noise)


def _is_lme4s(fit, ref) -> None:
    np.testing.assert_allclose(fit.llf, ref["llf"], rtol=1e-8)
    np.testing.assert_allclose(fit.theta.to_numpy(), ref["theta"], rtol=1e-4, atol=1e-5)
    for name, value in ref["fe_params"].items():
        key = "Intercept" if name == "(Intercept)" else name
        np.testing.assert_allclose(fit.fe_params[key], value, rtol=1e-6)
    assert fit.reml and fit.converged


@pytest.mark.parametrize("how", ["column", "series", "array"])
def test_refit_gives_lme4s_fit(three_levels, how):
    """refit of sim_three's response, given three ways: from the fit of that response
    the same fit, and from a fit of noise (another start) lme4's REML fit."""
    ref, data, fit, other = three_levels
    response = {"column": "y", "series": data["y"], "array": data["y"].to_numpy()}[how]
    same = fit.refit(response)
    _is_lme4s(same, ref)
    np.testing.assert_allclose(same.theta.to_numpy(), fit.theta.to_numpy(), rtol=1e-9)
    assert np.max(np.abs(other.theta.to_numpy() - fit.theta.to_numpy())) > 0.1
    _is_lme4s(other.refit("y_obs" if how == "column" else response), ref)


def test_refit_of_a_simulation_is_the_fit_of_that_column(simulated):
    data, fit, sims = simulated
    again = fit.refit(sims["sim_5"])
    direct = dlmm.lmer(fit.model.lmer_formula.replace("y ~", "sim ~", 1),
                       data.assign(sim=sims["sim_5"]))
    np.testing.assert_allclose(again.llf, direct.llf, rtol=1e-9)
    np.testing.assert_allclose(again.fe_params.to_numpy(), direct.fe_params.to_numpy(),
                               rtol=1e-6, atol=1e-8)
    with pytest.raises(InputError, match="one new response"):
        fit.refit(sims[["sim_1", "sim_2"]])
    with pytest.raises(InputError, match="values; the data have"):
        fit.refit(np.zeros(3))
