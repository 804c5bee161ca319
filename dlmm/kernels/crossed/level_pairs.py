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
def _mark_targets(starts, row, q2, seen):  # pragma: no cover - compiled
    for lev in range(starts.size - 1):
        s, e = starts[lev], starts[lev + 1]
        for a in range(s, e):
            ra = row[a]
            for b in range(s, a + 1):
                seen[row[b] * q2 + ra] = True


@numba.njit(cache=True, nogil=True)
def _fill_pairs(starts, row, w, q2, slot, pair_target, values):  # pragma: no cover
    p = 0
    for lev in range(starts.size - 1):
        s, e = starts[lev], starts[lev + 1]
        for a in range(s, e):
            ra = row[a]
            wa = w[a]
            for b in range(s, a + 1):
                pair_target[p] = slot[row[b] * q2 + ra]
                values[p] = wa * w[b]
                p += 1


def scalar_pairs(level: np.ndarray, row: np.ndarray, w: np.ndarray, n_first: int,
                 q2: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The Schur operator's pairs with one term on the first factor (``t_1 = 1``), in
    :func:`pairs_in_runs` order, by two compiled passes over the runs (no index arrays
    the size of the pairs but the outputs): the distinct targets ``row[b] q2 + row[a]``
    (ascending), each pair's target (its position among them), the pairs' values
    ``w[a] w[b]`` and the pairs per level."""
    counts = np.bincount(level, minlength=n_first).astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    row = np.ascontiguousarray(row, dtype=np.int64)
    w = np.ascontiguousarray(w, dtype=np.float64)
    per_level = counts * (counts + 1) // 2
    n_pairs = int(per_level.sum())
    seen = np.zeros(q2 * q2, dtype=bool)  # mark the targets on the dense grid: no sort
    _mark_targets(starts, row, q2, seen)
    targets = np.flatnonzero(seen)
    del seen
    slot = np.zeros(q2 * q2, dtype=np.int32 if targets.size < 2**31 else np.int64)
    slot[targets] = np.arange(targets.size, dtype=slot.dtype)
    pair_target = np.empty(n_pairs, dtype=np.intp)
    values = np.empty(n_pairs)
    _fill_pairs(starts, row, w, q2, slot, pair_target, values)
    return targets, pair_target, values, per_level


@numba.njit(parallel=True, cache=True, nogil=True)
def _gather_runs2(ainv, chunks, by_row_ptr, by_row, entry_level, level_ptr, entry_row, n,
                  y):  # pragma: no cover - compiled
    for k in numba.prange(chunks.size - 1):
        for c in range(chunks[k], chunks[k + 1]):
            col = ainv[:, c]
            for p in range(by_row_ptr[c], by_row_ptr[c + 1]):
                e = by_row[p]
                lev = entry_level[e]
                s0 = 0.0
                s1 = 0.0
                for f in range(level_ptr[lev], level_ptr[lev + 1]):
                    a_fc = col[entry_row[f]]
                    s0 += a_fc * n[f, 0]
                    s1 += a_fc * n[f, 1]
                y[e, 0] = s0
                y[e, 1] = s1


def gather_runs2(ainv: np.ndarray, stream, entry_row: np.ndarray, entry_level: np.ndarray,
                 n: np.ndarray) -> np.ndarray:
    """``y_e = sum_{f at level(e)} ainv[r_f, r_e] n_f`` for a full symmetric ``ainv`` and
    two terms on the first factor (``n``: ``(n_e, 2)``; no dense levels, which need
    ``t_1 = 1``): :func:`.streamed.gather_products` with each ``y_e`` summed in
    registers and written once, the same sums in the same order (d3, one thread:
    53 ms against 71)."""
    y = np.zeros(n.shape)
    _gather_runs2(ainv, stream.gather_chunks, stream.by_row_ptr, stream.by_row, entry_level,
                  stream.level_ptr, entry_row, np.ascontiguousarray(n, dtype=np.float64), y)
    return y


@numba.njit(parallel=True, cache=True, nogil=True)
def _update_runs2(x, chunks, by_row_ptr, by_row, entry_level, level_ptr, entry_row, w,
                  v):  # pragma: no cover - compiled
    for k in numba.prange(chunks.size - 1):
        for c in range(chunks[k], chunks[k + 1]):
            col = x[:, c]
            for p in range(by_row_ptr[c], by_row_ptr[c + 1]):
                e = by_row[p]
                v0 = v[e, 0]
                v1 = v[e, 1]
                for f in range(e, level_ptr[entry_level[e] + 1]):
                    col[entry_row[f]] -= w[f, 0] * v0 + w[f, 1] * v1


def schur_update2(x: np.ndarray, stream, entry_row: np.ndarray, entry_level: np.ndarray,
                  w: np.ndarray, v: np.ndarray) -> None:
    """:func:`.streamed.schur_update` with two terms on the first factor (no dense
    levels): ``x[r_f, r_e] -= w_f' v_e`` for the pairs ``e <= f`` of a level, ``v_e`` in
    registers (d3, one thread: 33-36 ms against 40)."""
    _update_runs2(x, stream.update_chunks, stream.by_row_ptr, stream.by_row, entry_level,
                  stream.level_ptr, entry_row, np.ascontiguousarray(w, dtype=np.float64),
                  np.ascontiguousarray(v, dtype=np.float64))
