"""The quasi-Newton start of crossed fits (:mod:`dlmm.optimize.qnewton`) on functions
whose maximum and Hessian are known in closed form."""

from __future__ import annotations

import numpy as np

from dlmm.optimize.qnewton import quasi_newton, value_hessian

# f(x) = -sum(exp(a_j x_j) - b_j x_j) - c (x_0 - x_1)^2: concave, not quadratic, maximum
# where a_j exp(a_j x_j) - b_j = -2 c (+/-)(x_0 - x_1) (found by Newton's method below)
A = np.array([1.5, 0.7])
B = np.array([2.0, 1.2])
C = 0.8


def _f(x):
    return float(-np.sum(np.exp(A * x) - B * x) - C * (x[0] - x[1]) ** 2)


def _grad(x):
    d = 2 * C * (x[0] - x[1])
    return -(A * np.exp(A * x) - B) - np.array([d, -d])


def _hess(x):
    h = -np.diag(A**2 * np.exp(A * x))
    return h - 2 * C * np.array([[1.0, -1.0], [-1.0, 1.0]])


def _maximum():
    x = np.zeros(2)
    for _ in range(50):  # exact Newton on the closed-form Hessian
        x = x - np.linalg.solve(_hess(x), _grad(x))
    return x


def test_the_hessian_from_values_matches_the_closed_form():
    x = np.array([0.3, -0.2])
    hess = value_hessian(_f, x, _f(x), _grad(x), rel_step=1e-4)
    np.testing.assert_allclose(hess, _hess(x), rtol=1e-3, atol=1e-3)


def test_finds_the_maximum_in_few_gradients():
    counts = {"grad": 0, "value": 0}

    def llf_grad(x):
        counts["grad"] += 1
        return _f(x), _grad(x)

    def value(x):
        counts["value"] += 1
        return _f(x)

    out = quasi_newton(llf_grad, value, np.array([0.9, 0.6]))
    assert out.success
    np.testing.assert_allclose(out.x, _maximum(), rtol=0, atol=1e-6)
    assert counts["value"] == 3  # m (m + 1) / 2 for the start's Hessian
    assert counts["grad"] <= 8 and out.nfev == counts["grad"] + counts["value"]


def test_a_start_where_the_function_is_not_concave_is_refused():
    def llf_grad(x):
        return float(x @ x), 2 * x  # a minimum, no maximum

    out = quasi_newton(llf_grad, lambda x: float(x @ x), np.array([0.5, 0.5]))
    assert not out.success and "not negative definite" in out.message


def _noisy(rel: float, seed: int = 3):
    """Value and gradient with float32-like errors: the value off by up to ``rel``
    relative (plus 1e3, so that ``max(1, |llf|)`` is the llf), the gradient by 1e-9."""
    rng = np.random.default_rng(seed)
    shift = 1e3

    def value(x):
        f = _f(x) - shift
        return f + rel * abs(f) * rng.uniform(-1, 1)

    def llf_grad(x):
        return value(x), _grad(x) + 1e-9 * rng.uniform(-1, 1, size=2)

    return llf_grad, value


def test_noisy_values_are_allowed_for_with_noise():
    """Values off by 1e-12 relative (a thousand times float64's rounding): without
    ``noise`` the Armijo test near the maximum compares rounding and fails; with it the
    method ends at the maximum to the gradient's precision."""
    llf_grad, value = _noisy(1e-12)
    plain = quasi_newton(llf_grad, value, np.array([0.3, -0.2]), tol_step=1e-13)
    assert not plain.success
    llf_grad, value = _noisy(1e-12)
    res = quasi_newton(llf_grad, value, np.array([0.3, -0.2]), tol_step=1e-13,
                       noise=1e-11)
    assert res.success, res.message
    np.testing.assert_allclose(res.x, _maximum(), rtol=0, atol=1e-8)
