"""statsmodels' penalties on reduced sums, against brute force.

* ``l1_shooting``: the coordinate descent reaches the minimum of the convex
  lasso objective ``(beta - b)' M (beta - b) + sum alpha_j |beta_j|`` (what
  statsmodels' shooting minimizes: ``a x^2 + c x + alpha |x|`` per coordinate)
  over the coefficients it leaves nonzero, found here by a derivative-free
  dense minimization (as statsmodels', a coefficient once zero is skipped, so
  the zeros are the algorithm's; ``tests/test_statsmodels_examples.py``
  compares with statsmodels' own);
* ``covariance_penalty``: statsmodels' PSD penalty (``-w log|Psi|``) and its
  gradient in the square-root coordinates, against finite differences.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import optimize
from statsmodels.base._penalties import PSD

from dlmm.exceptions import InputError
from dlmm.objective.penalty import (
    check_covariance_penalty,
    covariance_penalty,
    l1_shooting,
    penalize,
    pop_penalties,
)


def _problem(seed=0, p=4):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(50, p))
    m = x.T @ x / 5.0
    b = rng.normal(scale=3.0, size=p)
    return m, b


@pytest.mark.parametrize("alpha", [0.5, 5.0, 40.0])
def test_l1_shooting_minimizes_the_lasso_objective(alpha):
    m, b = _problem()

    def objective(beta):
        d = beta - b
        return d @ m @ d + alpha * np.abs(beta).sum()

    got = l1_shooting(m, b, alpha, ceps=1e-12, ptol=1e-12, maxit=5000)
    support = np.flatnonzero(got)
    assert support.size >= 1

    def on_support(x):
        beta = np.zeros_like(b)
        beta[support] = x
        return objective(beta)

    brute = optimize.minimize(on_support, b[support], method="Powell",
                              options={"xtol": 1e-12, "ftol": 1e-14, "maxfev": 200000}).x
    assert objective(got) <= on_support(brute) + 1e-9
    np.testing.assert_allclose(got[support], brute, atol=1e-5)


def test_l1_shooting_zero_alpha_is_gls_and_weights_are_checked():
    m, b = _problem(1)
    np.testing.assert_allclose(l1_shooting(m, b, 0.0), b, rtol=1e-12)
    big = l1_shooting(m, b, 1e6)
    assert np.all(big == 0.0)
    with pytest.raises(InputError, match="alpha must be a scalar or 4 weights"):
        l1_shooting(m, b, [1.0, 2.0])


def test_psd_penalty_value_and_sqrt_gradient():
    chol = np.array([[1.3, 0.0], [0.4, 0.7]])
    pen = PSD(2.5)
    value, grad = covariance_penalty(pen, chol)
    psi = chol @ chol.T
    assert value == pytest.approx(-2.5 * np.linalg.slogdet(psi)[1], rel=1e-12)
    rows, cols = np.tril_indices(2)
    fd = np.zeros(3)
    for i, (r, c) in enumerate(zip(rows, cols)):
        step = np.zeros_like(chol)
        step[r, c] = 1e-6
        fd[i] = (covariance_penalty(pen, chol + step)[0]
                 - covariance_penalty(pen, chol - step)[0]) / 2e-6
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)
    llf, g = penalize(pen, chol, -10.0, np.array([1.0, 2.0, 3.0, 4.0]))
    assert llf == pytest.approx(-10.0 - value)
    np.testing.assert_allclose(g, np.array([1.0, 2.0, 3.0, 4.0]) - np.append(grad, 0.0))


def test_penalty_options_are_checked():
    with pytest.raises(InputError, match="fit_regularized"):
        pop_penalties({"fe_pen": object()})
    with pytest.raises(InputError, match="func"):
        check_covariance_penalty(object(), 1)
    with pytest.raises(InputError, match="no standard random effects"):
        check_covariance_penalty(PSD(1.0), 0)
    options = {"cov_pen": PSD(1.0), "other": 1}
    assert isinstance(pop_penalties(options), PSD)
    assert options == {"other": 1}
