"""The float32 path's pattern of the Schur complement's lower nonzeros
(:func:`dlmm.kernels.crossed.single.lower_pattern`) against a brute force: the union of
the targets, ``G22``'s lower nonzeros and the diagonal by ``np.union1d``."""

from __future__ import annotations

import numpy as np
import pytest

from dlmm.kernels.crossed import build_system, crossed_sums
from dlmm.kernels.crossed.single import _merge_lower, lower_pattern


@pytest.fixture(autouse=True)
def pair_path():
    """Once, not per pair path (the conftest's): stored pairs, built here."""
    return "stored"


def _brute(system):
    q2 = system.dense_size
    _, at_lower = system.g22_lower()
    diagonal = np.arange(q2) * (q2 + 1)
    flat = np.union1d(np.union1d(system.schur_target, at_lower), diagonal)
    cols, rows = np.divmod(flat, q2)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(cols, minlength=q2))])
    return (flat, np.searchsorted(flat, system.schur_target), np.searchsorted(flat, at_lower),
            np.searchsorted(flat, diagonal), rows, indptr)


@pytest.mark.parametrize("levels", [(300, 40, 25), (200, 60, 0), (50, 30, 30)])
def test_lower_pattern_is_the_brute_force(levels):
    """Two or three intercept factors (the third gives ``G22`` pairs off the
    diagonal), levels seen once and levels never seen among them."""
    rng = np.random.default_rng(sum(levels))
    n = 600
    n_levels = [k for k in levels if k]
    codes = [rng.integers(0, k - 2, n) for k in n_levels]
    x = np.ones((n, 1))
    system = build_system(crossed_sums(codes, [None] * len(codes), x, rng.normal(size=n),
                                       n_levels), streamed=False, dense=False)
    system._cache.pop("single_pattern", None)
    got = lower_pattern(system)
    for a, b in zip(got, _brute(system)):
        np.testing.assert_array_equal(a, b)
    assert got[4].dtype == np.int32 and got[5].dtype == np.int32


def test_merge_lower_of_overlapping_sets():
    rng = np.random.default_rng(1)
    q2 = 50
    sets = [np.unique(rng.integers(0, q2 * q2, size)) for size in (400, 30, 0)]
    flat, rows, counts, *positions = _merge_lower(*sets, q2, np.int32(0))
    union = np.union1d(np.union1d(sets[0], sets[1]), sets[2])
    np.testing.assert_array_equal(flat, union)
    np.testing.assert_array_equal(rows, union % q2)
    np.testing.assert_array_equal(counts, np.bincount(union // q2, minlength=q2))
    for got, values in zip(positions, sets):
        np.testing.assert_array_equal(union[got], values)
