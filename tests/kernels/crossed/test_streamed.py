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
