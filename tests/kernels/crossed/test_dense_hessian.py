"""Second derivatives along the dense part's factors against differences of the gradient."""

from __future__ import annotations

import numpy as np
import pytest

from dlmm.kernels.crossed import build_system, crossed_pieces, crossed_sums
from dlmm.objective.pair_hessian import PairGradientHessian, profiled_pair_hessian

from .cases import make_case, thetas
from .helpers import ALL_PATHS, central_derivative, profiled_grad, profiled_llf, set_pair_path


@pytest.fixture(autouse=True, params=ALL_PATHS)
def pair_path(request, monkeypatch):
    """Stored pairs, streamed pairs and a dense ``G21`` (:func:`.helpers.set_pair_path`)."""
    return set_pair_path(request.param, monkeypatch)


@pytest.mark.parametrize("name", ["two_intercepts", "three_intercepts"])
def test_dense_pairs_match_differences_of_the_gradient(name):
    design = make_case(name)
    theta = thetas(design)["generic"]
    system = build_system(
        crossed_sums(design.codes, design.terms, design.x, design.y, design.n_levels))
    d2logdet, d2ctc = crossed_pieces(system, theta, gradient=True, pair_hessian=True).pair_hessian
    def pieces(t):
        return crossed_pieces(system, t, gradient=True)

    fd_logdet = central_derivative(lambda t: pieces(t).dlogdet, theta)
    fd_ctc = central_derivative(lambda t: pieces(t).dhmh, theta)
    dense = np.zeros(theta.size, dtype=bool)
    dense[system.rest] = True
    known = np.outer(dense, dense)
    assert np.array_equal(~np.isnan(d2logdet), known)  # the dense part's pairs only
    np.testing.assert_allclose(d2logdet[known], fd_logdet[known], rtol=1e-7, atol=1e-8)
    scale = np.abs(fd_ctc).max()
    np.testing.assert_allclose(d2ctc[known], fd_ctc[known], rtol=1e-7, atol=1e-8 * scale)


def test_zero_theta_pair_unknown():
    """The formula divides by theta: a dense factor at 0 leaves its pairs to differences."""
    design = make_case("three_intercepts")
    system = build_system(
        crossed_sums(design.codes, design.terms, design.x, design.y, design.n_levels))
    theta = thetas(design)["generic"]
    theta[system.rest[0]] = 0.0
    d2logdet, _ = crossed_pieces(system, theta, gradient=True, pair_hessian=True).pair_hessian
    assert np.isnan(d2logdet[system.rest[0]]).all()
    assert np.isfinite(d2logdet[system.rest[1], system.rest[1]])


@pytest.mark.parametrize("reml", [False, True])
@pytest.mark.parametrize("name", ["two_intercepts", "three_intercepts"])
def test_profiled_pairs_match_differences_of_the_llf_gradient(name, reml):
    """:func:`dlmm.objective.pair_hessian.profiled_pair_hessian` against differences of
    the profiled llf's gradient (:func:`.helpers.profiled_grad`, its own formula)."""
    design = make_case(name)
    theta = thetas(design)["generic"]
    system = build_system(
        crossed_sums(design.codes, design.terms, design.x, design.y, design.n_levels))
    n = system.n_rows

    def grad(t):
        pieces = crossed_pieces(system, t, gradient=True)
        value = profiled_llf(pieces.logdet, system.xy_cross - pieces.hmh, n, reml)
        return profiled_grad(value, pieces.dlogdet, pieces.dhmh, n, reml)

    pieces = crossed_pieces(system, theta, gradient=True, pair_hessian=True)
    got = profiled_pair_hessian(pieces, system.xy_cross, n, reml)
    expected = central_derivative(grad, theta)
    known = ~np.isnan(got)
    assert known.sum() == len(system.rest) ** 2
    np.testing.assert_allclose(got[known], expected[known], rtol=1e-7,
                               atol=1e-8 * np.abs(expected).max())


def test_pair_gradient_hessian_differences_the_open_column_only():
    """Two factors, the dense one's entry known: one direction differenced, and the
    Hessian is the full one by differences (a quadratic: exact)."""
    hess = np.array([[-4.0, 1.5], [1.5, -3.0]])
    calls = []

    def fun(x):
        calls.append(x.copy())
        return 0.5 * x @ hess @ x, hess @ x

    known = np.array([[np.nan, np.nan], [np.nan, -3.0]])
    h = PairGradientHessian(fun, lambda x: known, rel_step=1e-4, central=False)
    _, _, got = h(np.array([0.3, 0.7]))
    np.testing.assert_allclose(got, hess, rtol=1e-9)
    assert len(calls) == 2 and h.directions == 1  # the point, one difference
