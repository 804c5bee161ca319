"""A zero variance is never taken for the maximum when the likelihood rises away from it
(issue 25, item 14): the escape from the boundary compares the interior with the boundary
however close to it the maximum lies, under REML as under ML.

In the square-root parameterization a zero variance is always stationary; the curvature
there says whether the likelihood rises away from it. statsmodels' ``test_singular`` data
has its REML maximum at ``cov_re`` 5.7e-4 (1e-3 of the residual variance): the escape's
first steps overshoot it and lose to the boundary, which the fit took for the maximum.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from statsmodels.regression.mixed_linear_model import MixedLMParams

import dlmm
from dlmm.optimize.driver import maximize


def _quartic(x: np.ndarray):
    """``llf = a t^2 - b t^4`` in ``t = x[0]``: stationary at 0 with positive curvature
    ``2a``, its maxima at ``t^2 = a / 2b`` (llf ``a^2 / 4b``), here ``t = 0.01``."""
    a, b = 2e-4, 1.0
    t = float(x[0])
    return (a * t**2 - b * t**4, np.array([2 * a * t - 4 * b * t**3]),
            np.array([[2 * a - 12 * b * t**2]]))


def test_escape_finds_a_maximum_close_to_the_boundary():
    outcome = maximize(lambda x: _quartic(x)[:2], np.array([0.0]), 100.0, methods=(),
                       hess_fun=_quartic)
    assert outcome.converged
    assert abs(outcome.x[0]) == pytest.approx(0.01, rel=1e-8)
    assert outcome.llf == pytest.approx(1e-8, rel=1e-8)


def _singular_data() -> pd.DataFrame:
    """statsmodels' ``test_singular`` (its issue #7051)."""
    rs = np.random.RandomState(3423)
    df = pd.DataFrame(rs.randn(100, 2), columns=["Y", "X"])
    df["class"] = pd.Series([i % 3 for i in df.index], index=df.index)
    return df


def _statsmodels_fit(df: pd.DataFrame, reml: bool, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = sm.MixedLM.from_formula("Y ~ X", df, groups=df["class"])
        return model, model.fit(reml=reml, **kwargs)


def test_reml_fit_leaves_a_zero_variance_that_is_not_the_maximum():
    df = _singular_data()
    # Nelder-Mead is the one statsmodels method that reaches the REML maximum from the
    # default start (BFGS and L-BFGS-B stop at the boundary, L-BFGS-B with llf = inf).
    model, expected = _statsmodels_fit(df, reml=True, method="nm")
    result = dlmm.mixedlm("Y ~ X", df, groups=df["class"]).fit()
    assert expected.converged
    assert result.converged
    assert not result.singular
    assert result.llf == pytest.approx(-150.739394, abs=1e-6)  # the number
    assert result.llf == pytest.approx(expected.llf, rel=1e-10)
    # Nelder-Mead's tolerance decides statsmodels' digits of cov_re (5.6917e-4)
    assert np.asarray(result.cov_re)[0, 0] == pytest.approx(
        np.asarray(expected.cov_re)[0, 0], rel=1e-3)
    assert np.asarray(result.cov_re)[0, 0] > 5e-4
    # statsmodels' likelihood at dlmm's estimate is dlmm's llf, above the boundary's
    estimate = MixedLMParams.from_components(cov_re=result.params_object.cov_re)
    assert model.loglike(estimate) == pytest.approx(result.llf, rel=1e-10)
    # (statsmodels' REML likelihood is inf at 0 itself and loses digits below 1e-10)
    near_zero = model.loglike(MixedLMParams.from_components(cov_re=np.full((1, 1), 1e-10)))
    assert near_zero == pytest.approx(-150.739520, abs=1e-6)  # where the fit stopped
    assert result.llf > near_zero + 1e-4


def test_ml_fit_keeps_the_zero_variance_that_is_the_maximum():
    df = _singular_data()
    _, expected = _statsmodels_fit(df, reml=False)
    result = dlmm.mixedlm("Y ~ X", df, groups=df["class"]).fit(reml=False)
    assert result.converged and result.singular
    assert result.llf == pytest.approx(expected.llf, rel=1e-10)
    assert np.asarray(result.cov_re)[0, 0] == pytest.approx(0.0, abs=1e-8)
