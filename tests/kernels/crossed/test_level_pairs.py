"""The Schur operator's pairs with one term on the first factor (:func:`scalar_pairs`)
against a brute force over the pairs of each level's run (``np.unique`` of the flat
targets)."""

from __future__ import annotations

import numpy as np
import pytest

from dlmm.kernels.crossed.level_pairs import pairs_in_runs, scalar_pairs


@pytest.fixture(autouse=True)
def pair_path():
    """Once, not per pair path (the conftest's): nothing here depends on it."""
    return "stored"

def _runs(n_first, q2, n_entries, seed):
    """Row entries sorted by (level, row), distinct, with random weights."""
    rng = np.random.default_rng(seed)
    key = np.unique(rng.integers(0, n_first, n_entries) * q2 + rng.integers(0, q2, n_entries))
    level, row = np.divmod(key, q2)
    return level, row, rng.random(level.size)


@pytest.mark.parametrize("sizes", [(7, 5, 20, 1), (300, 97, 3000, 2), (40, 300, 900, 3)])
def test_scalar_pairs_is_the_brute_force(sizes):
    n_first, q2, n_entries, seed = sizes
    level, row, w = _runs(n_first, q2, n_entries, seed)
    targets, pair_target, values, per_level = scalar_pairs(level, row, w, n_first, q2)
    b_idx, reps = pairs_in_runs(level, n_first)
    a_idx = np.repeat(np.arange(level.size), reps)
    flat = row[b_idx] * q2 + row[a_idx]  # Fortran order: (row[a], row[b]), row[a] >= row[b]
    distinct, where = np.unique(flat, return_inverse=True)
    np.testing.assert_array_equal(targets, distinct)
    np.testing.assert_array_equal(pair_target, where)
    np.testing.assert_allclose(values, w[a_idx] * w[b_idx], rtol=1e-15)
    np.testing.assert_array_equal(per_level, np.bincount(level[a_idx], minlength=n_first))
