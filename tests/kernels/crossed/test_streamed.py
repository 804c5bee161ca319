"""The streamed pair kernels against dense products of ``G21`` (no stored pairs involved)."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from dlmm.kernels.crossed import build_system, crossed_sums
from dlmm.kernels.crossed.streamed import (
    gather_products,
    mirror_lower,
    pair_stream,
    schur_update,
)

from .cases import make_case


def _streamed(name):
    design = make_case(name)
    return build_system(
        crossed_sums(design.codes, design.terms, design.x, design.y, design.n_levels),
        streamed=True,
    )


def _dense_g21_by_level(system):
    """``G21`` as a dense ``(Q2, l_1, t_1)`` array, from the row entries."""
    l1, t1 = system.n_levels[system.first], system.n_terms[system.first]
    out = np.zeros((system.dense_size, l1, t1))
    np.add.at(out, (system.entry_row, system.entry_level), system.entry_w)
    return out


@pytest.mark.parametrize("name", ["two_intercepts", "three_intercepts", "three_with_slopes",
                                  "slope_factor_first"])
def test_schur_update_is_the_lower_triangle_of_g21_m1_g21t(name):
    system = _streamed(name)
    rng = np.random.default_rng(3)
    l1, t1 = system.n_levels[system.first], system.n_terms[system.first]
    m1 = rng.normal(size=(l1, t1, t1))
    m1 = m1 + np.swapaxes(m1, 1, 2)
    g = _dense_g21_by_level(system)
    expected = np.einsum("ila,lab,jlb->ij", g, m1, g)
    x = np.asfortranarray(rng.normal(size=(system.dense_size,) * 2))
    before = x.copy()
    v = np.einsum("eab,eb->ea", m1[system.entry_level], system.entry_w)
    schur_update(x, system.stream, system.entry_row, system.entry_level, system.entry_w, v)
    lower = np.tril_indices(system.dense_size)
    np.testing.assert_allclose(x[lower], (before - expected)[lower], rtol=1e-12, atol=1e-12)
    upper = np.triu_indices(system.dense_size, 1)
    np.testing.assert_array_equal(x[upper], before[upper])  # left alone


@pytest.mark.parametrize("name", ["two_intercepts", "three_with_slopes", "slope_factor_first"])
def test_gather_is_a_inverse_times_n_on_the_pattern_of_g21(name):
    system = _streamed(name)
    rng = np.random.default_rng(4)
    q2, t1 = system.dense_size, system.n_terms[system.first]
    a = rng.normal(size=(q2, q2))
    a = np.asfortranarray(a + a.T)
    n = rng.normal(size=(system.entry_row.size, t1))
    # dense: N as (Q2, l_1, t_1), then (A N) read back at each entry's row and level
    dense_n = np.zeros((q2, system.n_levels[system.first], t1))
    dense_n[system.entry_row, system.entry_level] = n
    an = np.einsum("ij,jlb->ilb", a, dense_n)
    expected = an[system.entry_row, system.entry_level]
    got = gather_products(a, system.stream, system.entry_row, system.entry_level, n)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_results_do_not_depend_on_the_number_of_threads():
    """Each column is one thread's, summed in one order: bit-identical for 1 or 2 threads."""
    system = _streamed("three_with_slopes")
    rng = np.random.default_rng(5)
    q2 = system.dense_size
    v = rng.normal(size=system.entry_w.shape)
    a = rng.normal(size=(q2, q2))
    a = np.asfortranarray(a + a.T)
    outs = []
    before = numba.get_num_threads()
    try:
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(threads)
            x = np.zeros((q2, q2), order="F")
            schur_update(x, system.stream, system.entry_row, system.entry_level,
                         system.entry_w, v)
            y = gather_products(a, system.stream, system.entry_row, system.entry_level, v)
            outs.append((x, y))
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    np.testing.assert_array_equal(outs[0][1], outs[1][1])


def test_pair_stream_counts_and_chunks():
    """Pairs ``e <= f`` per level, ``n (n + 1) / 2``; the chunks cover every column once."""
    level = np.array([0, 0, 0, 2, 2, 3])
    row = np.array([0, 2, 5, 1, 5, 3])
    stream = pair_stream(row, level, n_first=4, dense_size=6, dense_fraction=1.0)
    assert stream.pairs == 3 * 4 // 2 + 2 * 3 // 2 + 1
    np.testing.assert_array_equal(stream.level_ptr, [0, 3, 3, 5, 6])
    for chunks in (stream.update_chunks, stream.gather_chunks):
        assert chunks[0] == 0 and chunks[-1] == 6 and np.all(np.diff(chunks) > 0)
    np.testing.assert_array_equal(row[stream.by_row], np.sort(row))


def test_mirror_lower_makes_the_symmetric_matrix():
    a = np.asfortranarray(np.arange(16.0).reshape(4, 4))
    expected = np.tril(a) + np.tril(a, -1).T
    mirror_lower(a)
    np.testing.assert_array_equal(a, expected)


def _heavy_tailed_sums():
    """Ratings with lognormal user activity over Zipf-like items (the bench's
    ``movielens_like(users="lognormal")``): a few users rate most of the items."""
    from dlmm.bench.crossed import movielens_like

    frame = movielens_like(6_000, 400, 160, seed=2, users="lognormal")
    x = np.column_stack([np.ones(len(frame)), frame["x"].to_numpy()])
    return crossed_sums([frame["user"].to_numpy(), frame["item"].to_numpy()], [None, None],
                        x, frame["y"].to_numpy(), [400, 160])


def test_heavy_levels_are_counted_before_the_build_and_their_update_is_exact():
    """Heavy-tailed users: the levels with more than Q2/16 items are BLAS blocks, as
    counted from the sums before anything is built (the pairs the loops walk, the dense
    levels and their multiply-adds); the Schur complement they make, each way of
    taking their update (dsyrk for a positive M1, dsyr2k for any), equals the dense
    brute force I + Lambda_2 (G22 - G21 M1 G21') Lambda_2 (lower triangle)."""
    from dlmm.kernels.crossed import streamed_work
    from dlmm.kernels.crossed.factor import schur_complement
    from dlmm.kernels.crossed.theta import unpack_theta

    sums = _heavy_tailed_sums()
    walked, n_dense, blas_madds = streamed_work(sums)
    system = build_system(sums, streamed=True)
    stream, q2 = system.stream, system.dense_size
    assert q2 == 160 and n_dense == stream.dense_levels.size and 5 <= n_dense < 400
    assert walked == stream.sparse_pairs < stream.pairs
    assert blas_madds == n_dense * q2 * (q2 + 1) / 2
    counts = np.diff(stream.level_ptr)
    np.testing.assert_array_equal(stream.dense_levels, np.flatnonzero(counts > q2 / 16))
    g = _dense_g21_by_level(system)[:, :, 0]  # (Q2, l_1)
    g22 = system.g22.toarray()
    lower = np.tril_indices(q2)
    theta = np.array([0.7, 1.3])  # user, item (the caller's order)
    factors = unpack_theta(theta, system.n_terms)
    m1 = 0.49 / (1.0 + 0.49 * system.d)  # T_1 C11^{-1} T_1'
    expected = np.eye(q2) + 1.69 * (g22 - (g * m1[:, 0, 0]) @ g.T)
    got = schur_complement(system, factors, m1)
    np.testing.assert_allclose(got[lower], expected[lower], rtol=1e-12, atol=1e-10)
    # any M1 (negative too): the dense levels by dsyr2k
    rng = np.random.default_rng(8)
    m = rng.normal(size=(system.n_levels[system.first], 1, 1))
    x = np.asfortranarray(rng.normal(size=(q2, q2)))
    before = x.copy()
    v = m[system.entry_level, 0] * system.entry_w
    schur_update(x, stream, system.entry_row, system.entry_level, system.entry_w, v)
    brute = before - (g * m[:, 0, 0]) @ g.T
    np.testing.assert_allclose(x[lower], brute[lower], rtol=1e-12, atol=1e-10)
    upper = np.triu_indices(q2, 1)
    np.testing.assert_array_equal(x[upper], before[upper])


def test_level_quadratic_forms_are_g_inverse_g():
    """``q_l = g_l' A^{-1} g_l`` per user (the gradient's pair sums), from the update's
    pairs once each and, for the heavy users, from the factor by dtrsm or the inverse
    by dsymm: each equals the dense product."""
    from dlmm.kernels.crossed.streamed import dense_level_quadratic, level_quadratic

    system = build_system(_heavy_tailed_sums(), streamed=True)
    stream, q2 = system.stream, system.dense_size
    g = _dense_g21_by_level(system)[:, :, 0]
    rng = np.random.default_rng(9)
    a = rng.normal(size=(q2, q2))
    a = a @ a.T / q2 + np.eye(q2)
    ainv = np.linalg.inv(a)
    expected = np.einsum("il,ij,jl->l", g, ainv, g)
    w = system.entry_w[:, 0]
    l1 = system.n_levels[system.first]
    lower = np.asfortranarray(np.tril(ainv) + np.triu(rng.normal(size=(q2, q2)), 1))
    from_inverse = level_quadratic(lower, stream, system.entry_row, system.entry_level, w, l1)
    np.testing.assert_allclose(from_inverse, expected, rtol=1e-11, atol=1e-12)
    chol = np.asfortranarray(np.linalg.cholesky(a))
    dense_q = dense_level_quadratic(chol, stream, system.entry_row, w)
    np.testing.assert_allclose(dense_q, expected[stream.dense_levels], rtol=1e-11)
    both = level_quadratic(lower, stream, system.entry_row, system.entry_level, w, l1, dense_q)
    np.testing.assert_allclose(both, expected, rtol=1e-11, atol=1e-12)
