"""The pairs of row entries of ``G21`` that share a level of the first factor.

Row entries sorted by ``(level, row)`` (:mod:`.system`) form one run per level of
the first factor; the Schur update has a term for every pair ``(a, b)``, ``b <= a``,
within a run. Index arithmetic only: how many pairs each entry has, and the pairs
themselves in CSR order.
"""

from __future__ import annotations

import numpy as np


def pairs_per_entry(level: np.ndarray, n_first: int) -> np.ndarray:
    """Pairs ``(a, b)``, ``b <= a``, in the same run of the sorted ``level``, per ``a``."""
    counts = np.bincount(level, minlength=n_first)
    return np.arange(level.size) - (np.cumsum(counts) - counts)[level] + 1


def pairs_in_runs(level: np.ndarray, n_first: int) -> tuple[np.ndarray, np.ndarray]:
    """The pairs ``(a, b)``, ``b <= a``, in the same run of the sorted ``level``:
    ``b`` of each pair, and ``reps``, the number of pairs of each ``a``.

    The pairs run over ``a`` ascending (CSR row order: ``a`` of pair ``p`` is
    ``np.repeat(arange, reps)[p]``) and, within a row, ``b`` ascending: entry ``a``
    pairs with ``start(a), ..., a``, ``start(a)`` the first entry of its level.
    Made by repeats and ranges (sequential passes), not gathers.
    """
    reps = pairs_per_entry(level, n_first)
    n_pairs = int(reps.sum())
    first = np.cumsum(reps) - reps  # position of each a's first pair
    b_idx = np.repeat(np.arange(level.size) - (reps - 1) - first, reps) + np.arange(n_pairs)
    return b_idx, reps
