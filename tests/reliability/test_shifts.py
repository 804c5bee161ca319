"""Location and scale shifts of the data do not move the estimates (issue: large offsets).

The one pass sums centred columns (``dlmm.spec.centering``) and the driver maps
the estimates back exactly (``dlmm.objective.shift``). Checked against lme4's
fits of the unshifted sleepstudy data (``tests/reference/cases.json``),
mapped to the shifted data by the exact reparameterization: a response shift
moves only the intercept; ``Days + m`` gives ``beta_0 - m beta_1`` and
``cov_re -> T cov_re T'`` with ``T = [[1, -m], [0, 1]]``; ``Days * s`` divides the
slope by ``s`` and ``cov_re -> D cov_re D`` with ``D = diag(1, 1/s)``. (lme4 itself
converges to a wrong singular fit at ``Days + 2000`` and refuses ``Days + 1.7e9``.)
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest

import dlmm
from tests.conftest import reference_data

CASES = [
    # name, reml, transform of the frame, (beta map, cov map) from lme4's unshifted fit
    ("y+1e8", True, lambda f: f.assign(Reaction=f.Reaction + 1e8),
     lambda b: b + np.array([1e8, 0.0]), lambda c: c),
    ("days+2000", True, lambda f: f.assign(Days=f.Days + 2000.0),
     lambda b: np.array([b[0] - 2000.0 * b[1], b[1]]),
     lambda c: _t(2000.0) @ c @ _t(2000.0).T),
    ("days+1.7e9", True, lambda f: f.assign(Days=f.Days + 1.7e9),
     lambda b: np.array([b[0] - 1.7e9 * b[1], b[1]]),
     lambda c: _t(1.7e9) @ c @ _t(1.7e9).T),
    ("days*1e-5 ML", False, lambda f: f.assign(Days=f.Days * 1e-5),
     lambda b: np.array([b[0], b[1] / 1e-5]),
     lambda c: np.diag([1.0, 1e5]) @ c @ np.diag([1.0, 1e5])),
]


def _t(m: float) -> np.ndarray:
    return np.array([[1.0, -m], [0.0, 1.0]])


@pytest.mark.parametrize("name, reml, shift, beta_map, cov_map", CASES,
                         ids=[c[0] for c in CASES])
def test_shifted_sleepstudy_matches_lme4(reference_cases, name, reml, shift, beta_map,
                                         cov_map):
    case = reference_cases["sleepstudy_reml" if reml else "sleepstudy_ml"]
    exp = case["expected"]
    data = shift(reference_data("sleepstudy.csv"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", dlmm.ConvergenceWarning)
        result = dlmm.mixedlm("Reaction ~ Days", data, groups="Subject",
                              re_formula="~Days").fit(reml=reml)
    assert result.converged
    np.testing.assert_allclose(result.llf, exp["llf"], rtol=1e-6)
    np.testing.assert_allclose(result.scale, exp["scale"], rtol=1e-4)
    beta = beta_map(np.array([exp["fe_params"]["Intercept"], exp["fe_params"]["Days"]]))
    np.testing.assert_allclose(result.fe_params["Days"], beta[1], rtol=1e-6)
    np.testing.assert_allclose(result.fe_params["Intercept"], beta[0], rtol=1e-6,
                               atol=1e-6 * abs(beta[0]) + 1e-4)
    # Variance parameters of the shifted data's own model: lme4's mapped forward.
    expected = np.asarray(exp["cov_re"])
    np.testing.assert_allclose(result.cov_re.to_numpy(), cov_map(expected), rtol=1e-4)
    if not name.endswith("1.7e9"):
        # Ours mapped back as well (at 1.7e9 the variance of the intercept at Days = 0
        # is below the float resolution of the shifted covariance's m^2 terms).
        np.testing.assert_allclose(_unmap(name, result.cov_re.to_numpy()), expected,
                                   rtol=1e-4)
    # The slope's standard error (Wald, from the Hessian) as lme4's, rescaled.
    bse = exp["bse_fe"]["Days"] / (1e-5 if name.startswith("days*") else 1.0)
    np.testing.assert_allclose(result.bse_fe["Days"], bse, rtol=1e-3)
    assert not result.singular


def _unmap(name: str, cov: np.ndarray) -> np.ndarray:
    """The fitted covariance in the unshifted data's coordinates."""
    if name.startswith("days+"):
        t_inv = np.array([[1.0, float(name[5:])], [0.0, 1.0]])
        return t_inv @ cov @ t_inv.T
    if name.startswith("days*"):
        d = np.diag([1.0, 1e-5])
        return d @ cov @ d
    return cov


def test_epoch_seconds_are_not_collinear_with_the_intercept():
    """``Days + 1.7e9`` was refused as collinear before the one pass was centred."""
    data = reference_data("sleepstudy.csv").assign(Days=lambda f: f.Days + 1.7e9)
    result = dlmm.mixedlm("Reaction ~ Days", data, groups="Subject").fit()
    assert result.converged and list(result.fe_params.index) == ["Intercept", "Days"]


# -- magnitudes far from 1 (issue 21, item 8) ----------------------------------------------
#
# ``Days * c_x`` and ``Reaction * c_y`` are exact reparameterizations of lme4's fit:
# beta_0 * c_y, beta_Days * c_y / c_x; cov_re -> c_y^2 D cov_re D with
# D = diag(1, 1 / c_x); scale * c_y^2; conditional modes (b_0 c_y, b_Days c_y / c_x). The
# log-likelihood gains the log-Jacobian: -fac log|c_y| with fac = n (ML) or n - p
# (REML), and, for REML only, -log|c_x| from log|X'V^-1 X| (lme4's REML criterion and
# statsmodels' have that term: statsmodels' REML llf moves by -log 10 for Days * 10).
# The standard errors of statsmodels' parameter vector (fixed effects, then the
# profile covariance Psi = cov_re / scale) scale as the parameters do.

MAGNITUDES = [
    # name, reml, c_x (Days), c_y (Reaction)
    ("days*1e10", True, 1e10, 1.0),
    ("days*1e20", True, 1e20, 1.0),
    ("days*1e20 ML", False, 1e20, 1.0),
    ("reaction*1e-100", True, 1.0, 1e-100),
    ("reaction*1e-100 ML", False, 1.0, 1e-100),
]


@functools.cache
def _statsmodels_bse(reml: bool) -> np.ndarray:
    """statsmodels' standard errors of (beta, Psi's lower triangle), unscaled data."""
    import statsmodels.formula.api as smf

    data = reference_data("sleepstudy.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = smf.mixedlm("Reaction ~ Days", data, groups="Subject",
                          re_formula="~Days").fit(reml=reml, method="lbfgs")
    return fit.bse.to_numpy()


@pytest.mark.parametrize("name, reml, c_x, c_y", MAGNITUDES, ids=[m[0] for m in MAGNITUDES])
def test_covariate_and_response_far_from_unit_scale_match_lme4(reference_cases, name, reml,
                                                               c_x, c_y):
    case = reference_cases["sleepstudy_reml" if reml else "sleepstudy_ml"]
    exp = case["expected"]
    frame = reference_data("sleepstudy.csv")
    data = frame.assign(Days=frame.Days * c_x, Reaction=frame.Reaction * c_y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", dlmm.ConvergenceWarning)
        result = dlmm.mixedlm("Reaction ~ Days", data, groups="Subject",
                              re_formula="~Days").fit(reml=reml)
    assert result.converged and not result.singular
    n, p = exp["nobs"], 2
    llf = exp["llf"] - (n - p if reml else n) * np.log(c_y) - (np.log(c_x) if reml else 0.0)
    np.testing.assert_allclose(result.llf, llf, rtol=1e-6)
    fe = np.array([exp["fe_params"]["Intercept"] * c_y, exp["fe_params"]["Days"] * c_y / c_x])
    np.testing.assert_allclose(result.fe_params.to_numpy(), fe, rtol=1e-6)
    d = np.diag([1.0, 1.0 / c_x])
    np.testing.assert_allclose(result.cov_re.to_numpy(),
                               c_y**2 * d @ np.asarray(exp["cov_re"]) @ d, rtol=1e-4)
    np.testing.assert_allclose(result.scale, exp["scale"] * c_y**2, rtol=1e-4)
    # Standard errors: lme4's of the fixed effects (its vcov; 1e-3 as above), and
    # statsmodels' of every parameter.
    bse = np.array([exp["bse_fe"]["Intercept"] * c_y, exp["bse_fe"]["Days"] * c_y / c_x])
    np.testing.assert_allclose(result.bse_fe.to_numpy(), bse, rtol=1e-3)
    units = np.array([c_y, c_y / c_x, 1.0, 1.0 / c_x, 1.0 / c_x**2])
    np.testing.assert_allclose(result.bse.to_numpy(), _statsmodels_bse(reml) * units,
                               rtol=1e-4)
    # lme4's conditional modes, in the scaled data's units (each column to 1e-4 of its
    # largest entry: lme4's optimizer tolerance).
    levels = case["random_effects"]["Subject"]
    modes = np.array([[r["(Intercept)"] * c_y, r["Days"] * c_y / c_x] for r in levels])
    effects = result.random_effects
    got = np.array([effects[int(r["level"])].to_numpy() for r in levels])
    assert len(effects) == len(levels)
    for j in range(2):
        np.testing.assert_allclose(got[:, j], modes[:, j], rtol=1e-4,
                                   atol=1e-4 * np.abs(modes[:, j]).max())
