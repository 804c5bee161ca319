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
