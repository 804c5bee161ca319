"""nested_pieces against a dense brute force: log|V|, [Xy]'V^-1[Xy], the profiled (RE)ML
log-likelihood and its gradient (finite differences of the dense likelihood)."""

from __future__ import annotations

import numpy as np
import pytest

from dlmm.kernels.nested import NestedPieces, nested_pieces
from dlmm.objective.profiled import direction_derivatives, profiled_value

from .cases import CASES, Case
from .helpers import dense, dense_llf, dense_stats, derivative

WHICH = ["generic", "singular"]


def _xy_cross(design) -> np.ndarray:
    xy = np.column_stack([design.x, design.y])
    return xy.T @ xy


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request) -> Case:
    case = Case(request.param)
    case.stats = dense_stats(case.design)
    return case


@pytest.mark.parametrize("which", WHICH)
def test_logdet_and_quadratic_form_match_dense(case, which):
    lambdas = case.lambdas(case.thetas[which])
    pieces = nested_pieces(case.stats, lambdas)
    brute = dense(case.design, lambdas)
    np.testing.assert_allclose(pieces.logdet, brute.logdet, rtol=1e-9, atol=1e-12)
    s = _xy_cross(case.design) - pieces.hmh
    np.testing.assert_allclose(s, brute.s, rtol=0, atol=1e-9 * np.abs(brute.s).max())
    assert pieces.dlogdet.shape == (0,) and pieces.dhmh.shape == (0, s.shape[0], s.shape[0])
    assert pieces.n_groups == CASES[case.name][0]


@pytest.mark.parametrize("reml", [True, False], ids=["reml", "ml"])
@pytest.mark.parametrize("which", WHICH)
def test_profiled_llf_matches_dense_likelihood(case, which, reml):
    theta = case.thetas[which]
    lambdas = case.lambdas(theta)
    pieces = nested_pieces(case.stats, lambdas, case.dirs)
    design = case.design
    value = profiled_value(pieces, _xy_cross(design), float(design.y.size), reml)
    llf, beta = dense_llf(design, lambdas, reml)
    np.testing.assert_allclose(value.llf, llf, rtol=1e-9)
    np.testing.assert_allclose(value.fe_params, beta, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("which", WHICH)
def test_derivatives_match_finite_differences(case, which):
    """d log|C| and d hmh along every direction, and the profiled gradient (REML and ML)
    that :func:`profiled_value` makes of them, against differences of the dense model."""
    design = case.design
    theta = case.thetas[which]
    pieces = nested_pieces(case.stats, case.lambdas(theta), case.dirs)
    kind, dlogdet, dhmh = direction_derivatives(pieces)
    assert kind == "sqrt"

    def brute(t):
        d = dense(design, case.lambdas(t))
        return np.concatenate([[d.logdet], -d.s.ravel()])

    fd = derivative(brute, theta)
    np.testing.assert_allclose(dlogdet, fd[:, 0], rtol=1e-7, atol=1e-7 * np.abs(fd[:, 0]).max())
    fd_hmh = fd[:, 1:].reshape(dhmh.shape)
    np.testing.assert_allclose(dhmh, fd_hmh, rtol=1e-7, atol=1e-8 * np.abs(fd_hmh).max())

    n = float(design.y.size)
    for reml in (True, False):
        grad = profiled_value(pieces, _xy_cross(design), n, reml).grad_theta
        fd_llf = derivative(lambda t, reml=reml: dense_llf(design, case.lambdas(t), reml)[0],
                            theta)
        np.testing.assert_allclose(grad, fd_llf, rtol=1e-6, atol=1e-6 * np.abs(fd_llf).max())


def _split(design, outer: np.ndarray):
    return dense_stats(design.take_outer(outer))


@pytest.mark.parametrize("name", ["three_levels_q123", "two_levels_q21", "one_level_q2"])
def test_pieces_of_blocks_add_up_to_the_union(name):
    case = Case(name)
    design = case.design
    n_outer = CASES[name][0]
    theta = case.thetas["generic"]
    lambdas = case.lambdas(theta)
    whole = nested_pieces(dense_stats(design), lambdas, case.dirs)
    parts = [nested_pieces(_split(design, outer), lambdas, case.dirs)
             for outer in (np.arange(0, n_outer, 2), np.arange(1, n_outer, 2))]
    total = sum(parts)
    assert isinstance(total, NestedPieces) and total.n_groups == n_outer
    for field in ("logdet", "hmh", "dlogdet", "dhmh"):
        want = getattr(whole, field)
        np.testing.assert_allclose(getattr(total, field), want, rtol=1e-12,
                                   atol=1e-12 * np.abs(want).max())
    empty = NestedPieces.zeros(len(case.dirs), design.x.shape[1] + 1)
    assert (whole + empty).logdet == whole.logdet and (empty + whole).n_groups == n_outer


def test_a_block_without_nodes_gives_zero_pieces():
    case = Case("three_levels_q123")
    stats = _split(case.design, np.zeros(0, dtype=np.int64))
    pieces = nested_pieces(stats, case.lambdas(case.thetas["generic"]), case.dirs)
    assert pieces.logdet == 0.0 and pieces.n_groups == 0.0
    assert not pieces.hmh.any() and not pieces.dlogdet.any() and not pieces.dhmh.any()
    assert pieces.dhmh.shape == (len(case.dirs), 3, 3)


def test_read_only_sums_give_the_same_pieces():
    """Sums that arrive read-only (as Dask may hand them to a task) are read, not copied
    into a different answer."""
    case = Case("three_levels_q123")
    lambdas = case.lambdas(case.thetas["generic"])
    want = nested_pieces(dense_stats(case.design), lambdas, case.dirs)
    stats = dense_stats(case.design)
    for array in [*stats.zz, *stats.zxy, *stats.parent, *(a for row in stats.za for a in row)]:
        array.flags.writeable = False
    got = nested_pieces(stats, lambdas, case.dirs)
    assert got.logdet == want.logdet
    np.testing.assert_array_equal(got.dhmh, want.dhmh)
