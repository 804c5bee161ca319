"""The Schur operator with one term on the first factor by its rows
(:func:`target_pairs`) and each pair's target (:func:`pair_targets`) against a brute
force over the pairs of each level's run (``np.unique`` of the flat targets)."""

from __future__ import annotations

import numpy as np
import pytest

from dlmm.kernels.crossed.level_pairs import pair_targets, pairs_in_runs, target_pairs


@pytest.fixture(autouse=True)
def pair_path():
    """Once, not per pair path (the conftest's): nothing here depends on it."""
    return "stored"

def _runs(n_first, q2, n_entries, seed):
    """Row entries sorted by (level, row), distinct, with random weights; levels with
    a single entry, rows seen once and rows never seen (the last two among them)."""
    rng = np.random.default_rng(seed)
    key = np.unique(rng.integers(0, n_first, n_entries) * q2
                    + rng.integers(0, q2 - 2, n_entries))
    level, row = np.divmod(key, q2)
    return level, row, rng.random(level.size)


def _brute_force(level, row, w, n_first, q2):
    """Every pair (a, b), b <= a at one level: its flat target, level and value."""
    b_idx, reps = pairs_in_runs(level, n_first)
    a_idx = np.repeat(np.arange(level.size), reps)
    flat = row[b_idx] * q2 + row[a_idx]  # Fortran order: (row[a], row[b]), row[a] >= row[b]
    return flat, level[a_idx], w[a_idx] * w[b_idx]


SIZES = [(7, 6, 20, 1), (300, 97, 3000, 2), (40, 300, 900, 3), (2000, 60, 2500, 4)]


@pytest.mark.parametrize("small_pages", [False, True])
@pytest.mark.parametrize("sizes", SIZES)
def test_target_pairs_is_the_brute_force(sizes, small_pages, monkeypatch):
    """With its outputs in small pages or not (as large ones would be: the advice
    given to every array), in one chunk of columns a thread or many (more than the
    columns)."""
    from dlmm.kernels.crossed import level_pairs

    monkeypatch.setattr(level_pairs, "CHUNKS_PER_THREAD", 64 if small_pages else 1)
    if small_pages:
        from dlmm.kernels.crossed import small_pages as module

        monkeypatch.setattr(module, "SMALL_PAGES_MIN_BYTES", 0)
    n_first, q2, n_entries, seed = sizes
    level, row, w = _runs(n_first, q2, n_entries, seed)
    targets, indptr, users, values = target_pairs(level, row, w, n_first, q2)
    flat, pair_level, pair_value = _brute_force(level, row, w, n_first, q2)
    distinct, where = np.unique(flat, return_inverse=True)
    np.testing.assert_array_equal(targets, distinct)
    order = np.lexsort((pair_level, where))  # by target, then level ascending
    np.testing.assert_array_equal(indptr, np.concatenate([[0], np.cumsum(
        np.bincount(where, minlength=distinct.size))]))
    np.testing.assert_array_equal(users, pair_level[order])
    np.testing.assert_array_equal(values, pair_value[order])  # w[a] w[b], exactly
    # B @ m: each target's sum over its levels
    m = np.random.default_rng(seed).random(n_first)
    dense = np.zeros(distinct.size)
    np.add.at(dense, where, pair_value * m[pair_level])
    import scipy.sparse as sp

    b = sp.csr_matrix((values, users, indptr), shape=(targets.size, n_first))
    np.testing.assert_allclose(b @ m, dense, rtol=1e-13)


@pytest.mark.parametrize("sizes", SIZES)
def test_pair_targets_is_the_brute_force(sizes):
    n_first, q2, n_entries, seed = sizes
    level, row, w = _runs(n_first, q2, n_entries, seed)
    targets = target_pairs(level, row, w, n_first, q2)[0]
    flat = _brute_force(level, row, w, n_first, q2)[0]
    np.testing.assert_array_equal(pair_targets(level, row, targets, n_first, q2),
                                  np.searchsorted(targets, flat))
    assert np.array_equal(targets[np.searchsorted(targets, flat)], flat)


def test_build_holds_no_dense_table():
    """3,000 items (the dense part) and 6,000 users of four ratings each: building the
    system allocates about the pairs and the entries, never a table over the
    ``Q2 x Q2`` grid (it marked the targets on a byte and then an int32 per cell: 5
    bytes a cell: 40 MB here; now about 5 MB, the entries and the pairs' structures)."""
    import tracemalloc

    from dlmm.kernels.crossed import build_system, crossed_sums

    rng = np.random.default_rng(7)
    n, users, items = 24_000, 6_000, 3_000
    codes = [np.repeat(np.arange(users), n // users), rng.integers(0, items, n)]
    x = np.ones((n, 1))
    sums = crossed_sums(codes, [None, None], x, rng.normal(size=n), [users, items])
    build_system(sums, streamed=False, sparse=False, dense=False)  # compiled loops loaded
    tracemalloc.start()
    try:
        system = build_system(sums, streamed=False, sparse=False, dense=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert system.dense_size == items and system.schur is not None
    pairs = system.schur.nnz
    assert peak < items * items, (peak, pairs)  # under a byte a cell of the grid
