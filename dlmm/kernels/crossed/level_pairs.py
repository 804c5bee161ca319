"""The pairs of row entries of ``G21`` that share a level of the first factor.

Row entries sorted by ``(level, row)`` (:mod:`.system`) form one run per level of
the first factor; the Schur update has a term for every pair ``(a, b)``, ``b <= a``,
within a run. Index arithmetic: how many pairs each entry has, and the pairs
themselves in CSR order; with one term on the first factor, the Schur operator's
targets and values by compiled loops over the runs (:func:`scalar_pairs`: the
10^6 ratings' 15.8 million pairs in about a tenth of the time of the index arrays).
"""

from __future__ import annotations

import numba
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


@numba.njit(cache=True, nogil=True)
def _mark_targets(starts, row, q2, slot):  # pragma: no cover - compiled
    """``slot[ra, rb] = 1`` (row-major: one row of ``slot`` per ``ra``) at every target."""
    for lev in range(starts.size - 1):
        s, e = starts[lev], starts[lev + 1]
        for a in range(s, e):
            base = row[a] * q2
            for b in range(s, a + 1):
                slot[base + row[b]] = 1


@numba.njit(cache=True, nogil=True)
def _number_targets(slot, q2, targets):  # pragma: no cover - compiled
    """Number the marked targets in column-major order (``rb`` first, then ``ra``: their
    Fortran flat indices ascending) in place, by one row-major pass: a target's number is
    the targets of the columns before its own plus those above it in its own."""
    per_col = np.zeros(q2 + 1, dtype=np.int64)
    for ra in range(q2):
        base = ra * q2
        for rb in range(ra + 1):
            if slot[base + rb]:
                per_col[rb + 1] += 1
    for rb in range(q2):
        per_col[rb + 1] += per_col[rb]
    for ra in range(q2):
        base = ra * q2
        for rb in range(ra + 1):
            if slot[base + rb]:
                k = per_col[rb]
                per_col[rb] = k + 1
                slot[base + rb] = k
                targets[k] = rb * q2 + ra


@numba.njit(cache=True, nogil=True)
def _fill_pairs(starts, row, w, q2, slot, pair_target, values):  # pragma: no cover
    p = 0
    for lev in range(starts.size - 1):
        s, e = starts[lev], starts[lev + 1]
        for a in range(s, e):
            base = row[a] * q2  # the lookups of one a: one row of slot
            wa = w[a]
            for b in range(s, a + 1):
                pair_target[p] = slot[base + row[b]]
                values[p] = wa * w[b]
                p += 1


def scalar_pairs(level: np.ndarray, row: np.ndarray, w: np.ndarray, n_first: int,
                 q2: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The Schur operator's pairs with one term on the first factor (``t_1 = 1``), in
    :func:`pairs_in_runs` order, by compiled passes (no index arrays the size of the
    pairs but the outputs): the distinct targets ``row[b] q2 + row[a]`` (ascending), each
    pair's target (its position among them; int32 where they fit), the pairs' values
    ``w[a] w[b]`` and the pairs per level.

    The targets are marked and numbered on one ``Q2 x Q2`` grid held row-major by the
    larger row ``row[a]`` (each ``a``'s lookups then read one row of it, not one entry
    per column: on the 10^6 ratings the fill took 0.71 s with column-major lookups)."""
    counts = np.bincount(level, minlength=n_first).astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    row = np.ascontiguousarray(row, dtype=np.int64)
    w = np.ascontiguousarray(w, dtype=np.float64)
    n_pairs = int((counts * (counts + 1) // 2).sum())
    index = np.int32 if max(n_pairs, q2 * q2) < 2**31 else np.int64
    slot = np.zeros(q2 * q2, dtype=index)  # mark the targets on the dense grid: no sort
    _mark_targets(starts, row, q2, slot)
    targets = np.empty(int(np.count_nonzero(slot)), dtype=np.int64)
    _number_targets(slot, q2, targets)
    pair_target = np.empty(n_pairs, dtype=index)
    values = np.empty(n_pairs)
    _fill_pairs(starts, row, w, q2, slot, pair_target, values)
    return targets, pair_target, values, counts * (counts + 1) // 2
