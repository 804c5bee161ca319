"""The convergence checks' negative-definiteness test (dlmm.results.inference)."""

import numpy as np

from dlmm.results.inference import negative_definite


def test_a_singular_hessian_is_not_negative_definite_whatever_the_rounding():
    """``-H = v v'`` plus rounding-sized noise: a plain Cholesky passes for one sign of
    the noise; the scaled test refuses both."""
    v = np.array([[np.sqrt(72.58)], [np.sqrt(72.58)]])
    for noise in (+1e-13, -1e-13):
        neg = v @ v.T + noise * np.eye(2)
        assert negative_definite(-neg) is False
    np.linalg.cholesky(v @ v.T + 1e-13 * np.eye(2))  # what the old test accepted


def test_the_parameters_units_do_not_decide():
    """A well-identified Hessian stays negative definite when one parameter is in units
    a million times larger and another a million times smaller (condition 1e24)."""
    neg = np.array([[2.0, 0.9, 0.1], [0.9, 1.5, 0.2], [0.1, 0.2, 1.0]])
    scale = np.diag([1e6, 1.0, 1e-6])
    assert negative_definite(-(scale @ neg @ scale)) is True
    assert np.linalg.cond(scale @ neg @ scale) > 1e20


def test_a_saddle_a_flat_diagonal_and_non_finite_entries_are_not():
    assert negative_definite(-np.diag([1.0, -1e-3])) is False
    assert negative_definite(-np.array([[1.0, 2.0], [2.0, 1.0]])) is False  # saddle
    assert negative_definite(-np.diag([1.0, 0.0])) is False
    assert negative_definite(-np.array([[1.0, np.nan], [np.nan, 1.0]])) is False
    # correlated estimates (1 - 1e-6) are still identified
    r = 1 - 1e-6
    assert negative_definite(-np.array([[1.0, r], [r, 1.0]])) is True
