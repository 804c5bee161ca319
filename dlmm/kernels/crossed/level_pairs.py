"""The pairs of row entries of ``G21`` that share a level of the first factor.

Row entries sorted by ``(level, row)`` (:mod:`.system`) form one run per level of
the first factor; the Schur update has a term for every pair ``(a, b)``, ``b <= a``,
within a run. Index arithmetic: how many pairs each entry has, and the pairs
themselves in CSR order; with one term on the first factor, the Schur operator by
its rows (the distinct targets) from compiled loops over the columns of the dense
part (:func:`target_pairs`: no ``Q2 x Q2`` table, nothing the size of the pairs
but the operator itself), and each pair's target only when asked
(:func:`pair_targets`).
"""

from __future__ import annotations

import numba
import numpy as np

from .small_pages import empty_small_pages


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


def _by_row(level: np.ndarray, row: np.ndarray, n_first: int, q2: int) -> tuple:
    """The row entries grouped by their row of the dense part (a stable sort: each
    row's entries by ascending level): the pointers ``(q2 + 1,)``, the
    entries, the end of each one's run (its level's last entry + 1) and its level;
    and the start of each level's run."""
    starts = np.zeros(n_first + 1, dtype=np.int64)
    np.cumsum(np.bincount(level, minlength=n_first), out=starts[1:])
    ptr = np.zeros(q2 + 1, dtype=np.int64)
    np.cumsum(np.bincount(row, minlength=q2), out=ptr[1:])
    by_row = np.argsort(row, kind="stable")
    by_level = level[by_row]
    return ptr, by_row, starts[by_level + 1], by_level, starts


#: Chunks of columns per thread in :func:`target_pairs` (balanced by their pairs).
CHUNKS_PER_THREAD = 4


@numba.njit(parallel=True, cache=True, nogil=True)
def _count_targets(row, by_ptr, by_row, by_end, q2, chunks):  # pragma: no cover
    """Distinct targets ``(row[a], j)`` of each column ``j`` (one marker per row of
    the dense part, ``q2`` of them: in cache whatever the pairs); chunks of columns
    in parallel."""
    per_column = np.zeros(q2, np.int64)
    for c in numba.prange(chunks.size - 1):
        mark = np.full(q2, -1, np.int64)
        for j in range(chunks[c], chunks[c + 1]):
            n = 0
            for k in range(by_ptr[j], by_ptr[j + 1]):
                for a in range(by_row[k], by_end[k]):
                    i = row[a]
                    n += mark[i] != j
                    mark[i] = j
            per_column[j] = n
    return per_column


@numba.njit(parallel=True, cache=True, nogil=True)
def _fill_targets(row, w, by_ptr, by_row, by_end, by_level, q2, chunks, column_ptr,
                  pair_ptr, targets, indptr, users, values):  # pragma: no cover
    """Each column's targets (ascending rows), their pairs' levels (ascending) and
    values: the pairs counted per row of the column, then placed (a column's pairs
    are written in a span of the outputs that stays in cache); chunks of columns in
    parallel, each column writing only its own span. The scan over a column's rows
    (up to its last with pairs) has no branch: every row is written at the next
    target's place, which only a row with pairs takes."""
    for c in numba.prange(chunks.size - 1):
        count = np.zeros(q2, np.int64)
        place = np.zeros(q2, np.int64)
        for j in range(chunks[c], chunks[c + 1]):
            lo, hi = by_ptr[j], by_ptr[j + 1]
            top = -1
            for k in range(lo, hi):
                top = max(top, row[by_end[k] - 1])  # a run's rows ascend
                for a in range(by_row[k], by_end[k]):
                    count[row[a]] += 1
            t = column_ptr[j]
            start = pair_ptr[j]
            for i in range(j, top + 1):  # rows ascending: the targets' order
                n = count[i]
                targets[t] = j * q2 + i
                place[i] = start
                start += n
                indptr[t + 1] = start
                count[i] = 0
                t += n != 0
            for k in range(lo, hi):
                b = by_row[k]
                lev = by_level[k]
                wb = w[b]
                for a in range(b, by_end[k]):
                    i = row[a]
                    p = place[i]
                    users[p] = lev
                    values[p] = w[a] * wb
                    place[i] = p + 1


def _column_chunks(pair_ptr: np.ndarray) -> np.ndarray:
    """Bounds of chunks of columns with about equal pairs, :data:`CHUNKS_PER_THREAD`
    per thread of numba's."""
    n = max(1, CHUNKS_PER_THREAD * numba.get_num_threads())
    q2 = pair_ptr.size - 1
    bounds = np.searchsorted(pair_ptr, np.linspace(0, pair_ptr[-1], n + 1), side="left")
    bounds[0], bounds[-1] = 0, q2
    return np.unique(np.minimum(bounds, q2)).astype(np.int64)


def target_pairs(level: np.ndarray, row: np.ndarray, w: np.ndarray, n_first: int,
                 q2: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The Schur operator ``B`` with one term on the first factor (``t_1 = 1``) by its
    rows, the distinct targets: compiled loops over the columns of the dense part,
    each with a marker per row (in cache), no ``Q2 x Q2`` table and nothing the size
    of the pairs but ``B`` itself (in small pages: :mod:`.small_pages`).

    Target ``(row[a], row[b])`` of a pair ``(a, b)``, ``b <= a`` at one level, has
    the flat index ``row[b] q2 + row[a]`` (Fortran order, lower triangle: the rows are
    sorted within a level). Returns the distinct targets (ascending), ``B``'s row
    pointers, and each pair's level and value ``w[a] w[b]`` (CSR: a target's pairs by
    ascending level, so ``B @ m`` adds each target's terms in the order a walk over
    the levels would).
    """
    level = np.asarray(level, dtype=np.int64)
    by_ptr, by_row, by_end, by_level, starts = _by_row(level, row, n_first, q2)
    pairs_before = np.zeros(by_row.size + 1, dtype=np.int64)  # entry b: pairs (a, b)
    np.cumsum(by_end - by_row, out=pairs_before[1:])
    pair_ptr = pairs_before[by_ptr]  # pairs before each column
    n_pairs = int(pair_ptr[-1])
    index = np.int32 if max(n_pairs, n_first, q2) < 2**31 else np.int64
    row = np.ascontiguousarray(row, dtype=index)  # half the bytes the loops read
    w = np.ascontiguousarray(w, dtype=np.float64)
    chunks = _column_chunks(pair_ptr)
    per_column = _count_targets(row, by_ptr, by_row, by_end, q2, chunks)
    column_ptr = np.zeros(q2 + 1, dtype=np.int64)
    np.cumsum(per_column, out=column_ptr[1:])
    n_targets = int(column_ptr[-1])
    targets = np.empty(n_targets, dtype=np.int64)
    indptr = np.zeros(n_targets + 1, dtype=index)
    users = empty_small_pages(n_pairs, index)  # written once, then read in order
    values = empty_small_pages(n_pairs, np.float64)
    _fill_targets(row, w, by_ptr, by_row, by_end, by_level.astype(index), q2, chunks,
                  column_ptr, pair_ptr, targets, indptr, users, values)
    return targets, indptr, users, values


def load_loops() -> None:
    """Run :func:`target_pairs` once on two levels of a few entries, with the argument
    types a fit gives: numba's start and the load of its compiled loops (0.15-0.3 s of
    CPU), paid where it is not waited for (a thread of the driver while the workers
    read the rows: :func:`dlmm.structure.crossed.load_build_loops`)."""
    target_pairs(np.array([0, 0, 1], dtype=np.int64), np.array([0, 1, 1], dtype=np.int64),
                 np.ones(3), 2, 2)


@numba.njit(cache=True, nogil=True)
def _pair_targets(row, by_ptr, by_row, by_end, starts, by_level, q2, column_ptr, targets,
                  first, out):  # pragma: no cover - compiled
    local = np.zeros(q2, np.int64)
    for j in range(q2):
        for t in range(column_ptr[j], column_ptr[j + 1]):
            local[targets[t] - j * q2] = t
        for k in range(by_ptr[j], by_ptr[j + 1]):
            b = by_row[k]
            s = starts[by_level[k]]
            for a in range(b, by_end[k]):
                out[first[a] + b - s] = local[row[a]]


def pair_targets(level: np.ndarray, row: np.ndarray, targets: np.ndarray, n_first: int,
                 q2: int) -> np.ndarray:
    """For each pair of :func:`pairs_in_runs` (``b <= a`` at one level, ``a`` then
    ``b`` ascending), its target's position among ``targets`` (:func:`target_pairs`):
    compiled loops over the columns, each with its rows' positions in a table of
    ``q2`` (for the conditional variances, not the fit)."""
    level = np.asarray(level, dtype=np.int64)
    by_ptr, by_row, by_end, by_level, starts = _by_row(level, row, n_first, q2)
    reps = pairs_per_entry(level, n_first)
    first = np.cumsum(reps) - reps
    column_ptr = np.searchsorted(targets, np.arange(q2 + 1, dtype=np.int64) * q2)
    out = np.empty(int(reps.sum()), dtype=np.intp)
    _pair_targets(np.ascontiguousarray(row, dtype=np.int64), by_ptr, by_row, by_end, starts,
                  by_level, q2, column_ptr.astype(np.int64),
                  np.ascontiguousarray(targets, dtype=np.int64), first.astype(np.int64), out)
    return out


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
