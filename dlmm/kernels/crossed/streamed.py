"""The pair work of a step without stored pairs: compiled loops over the row entries.

Two operations of a step touch every pair of row entries that share a level
of factor 1 (``sum_l nnz_l^2`` of them; see :mod:`.system` for the layout):

    Schur update   X[r_f, r_e] -= w_f' v_e            e <= f at one level l
                   (v_e = M1_l w_e; the lower triangle of X -= G21 M1 G21')
    gather         y_e = sum_{f at level(e)} Ainv[r_f, r_e] n_f
                   (Y = A^{-1} N on the pattern of G21, for the selected inverse)

The stored path of :mod:`.system` keeps these pairs as a sparse operator: one
mat-vec per step, but about 12 bytes per pair held and 80 while built, which
is 46 GB for 10^7 ratings of 10^5 users x 10^4 items (5.2e8 pairs). Here the
pairs are walked again each step by loops compiled with numba, holding only
``O(nnz(G21))`` index arrays (:class:`PairStream`). Measured on that design
(2 cores): the Schur update took 4.3 s here against 11.1 s for SciPy's sparse
product ``G21 diag(m) G21'`` (single-threaded, and both triangles), which is
the only compiled alternative in SciPy; the gather has none.

Each thread owns whole columns ``c`` of the dense part (Fortran order, so a
column is contiguous): the entries ``e`` with ``r_e = c`` are listed by column
(``by_row``), so no two threads write one number and the sums are the same
for any number of threads. Columns are handed out in chunks of about equal
work (``update_chunks``, ``gather_chunks``), computed once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

#: Chunks of columns per kernel call (about equal work each; several per thread).
N_CHUNKS = 64


@dataclass(frozen=True)
class PairStream:
    """Index arrays that let the kernels walk the pairs (built once per system).

    Attributes
    ----------
    by_row_ptr : ndarray (Q2 + 1,) int64
        ``by_row[by_row_ptr[c]:by_row_ptr[c + 1]]`` are the entries with ``r_e = c``.
    by_row : ndarray (n_e,) int64
    level_ptr : ndarray (l_1 + 1,) int64
        Entries of level ``l`` are ``level_ptr[l]:level_ptr[l + 1]`` (sorted by row).
    update_chunks, gather_chunks : ndarray int64
        Column boundaries of chunks of about equal work for each kernel.
    pairs : int
        Pairs ``e <= f`` sharing a level (the Schur update's work).
    """

    by_row_ptr: np.ndarray
    by_row: np.ndarray
    level_ptr: np.ndarray
    update_chunks: np.ndarray
    gather_chunks: np.ndarray
    pairs: int


def _chunks(work_per_column: np.ndarray) -> np.ndarray:
    """Column boundaries ``0 = b_0 < ... = Q2`` splitting the work in ``N_CHUNKS`` parts."""
    q2 = work_per_column.size
    total = np.cumsum(work_per_column)
    if q2 == 0 or total[-1] == 0:
        return np.array([0, q2], dtype=np.int64)
    cuts = np.searchsorted(total, np.linspace(0.0, total[-1], N_CHUNKS + 1)[1:-1], side="right")
    return np.unique(np.concatenate([[0], cuts, [q2]])).astype(np.int64)


def pair_stream(entry_row: np.ndarray, entry_level: np.ndarray, n_first: int,
                dense_size: int) -> PairStream:
    """The :class:`PairStream` of row entries sorted by ``(level, row)``."""
    entry_row = np.ascontiguousarray(entry_row, dtype=np.int64)
    counts = np.bincount(entry_level, minlength=n_first)
    level_ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    by_row = np.argsort(entry_row, kind="stable").astype(np.int64)
    by_row_ptr = np.concatenate(
        [[0], np.cumsum(np.bincount(entry_row, minlength=dense_size))]).astype(np.int64)
    suffix = (level_ptr[entry_level + 1] - np.arange(entry_row.size)).astype(float)
    size = counts[entry_level].astype(float)
    return PairStream(
        by_row_ptr=by_row_ptr,
        by_row=by_row,
        level_ptr=level_ptr,
        update_chunks=_chunks(np.bincount(entry_row, weights=suffix, minlength=dense_size)),
        gather_chunks=_chunks(np.bincount(entry_row, weights=size, minlength=dense_size)),
        pairs=int(suffix.sum()),
    )


@numba.njit(parallel=True, cache=True, nogil=True)
def _update(x, chunks, by_row_ptr, by_row, entry_level, level_ptr, entry_row, w, v):
    t1 = w.shape[1]
    for k in numba.prange(chunks.size - 1):
        for c in range(chunks[k], chunks[k + 1]):
            for p in range(by_row_ptr[c], by_row_ptr[c + 1]):
                e = by_row[p]
                for f in range(e, level_ptr[entry_level[e] + 1]):
                    s = 0.0
                    for a in range(t1):
                        s += w[f, a] * v[e, a]
                    x[entry_row[f], c] -= s


@numba.njit(parallel=True, cache=True, nogil=True)
def _gather(ainv, chunks, by_row_ptr, by_row, entry_level, level_ptr, entry_row, n, y):
    t1 = n.shape[1]
    for k in numba.prange(chunks.size - 1):
        for c in range(chunks[k], chunks[k + 1]):
            for p in range(by_row_ptr[c], by_row_ptr[c + 1]):
                e = by_row[p]
                lev = entry_level[e]
                for f in range(level_ptr[lev], level_ptr[lev + 1]):
                    a_fc = ainv[entry_row[f], c]
                    for a in range(t1):
                        y[e, a] += a_fc * n[f, a]


@numba.njit(parallel=True, cache=True, nogil=True)
def _mirror_lower(a):
    n = a.shape[0]
    for j in numba.prange(n):
        for i in range(j):
            a[i, j] = a[j, i]


def schur_update(x: np.ndarray, stream: PairStream, entry_row: np.ndarray,
                 entry_level: np.ndarray, w: np.ndarray, v: np.ndarray) -> None:
    """In place, the lower triangle of ``x`` minus ``G21 M1 G21'``.

    ``x[r_f, r_e] -= w_f' v_e`` for every pair ``e <= f`` of row entries at one level
    (``r_f >= r_e``), with ``w`` (n_e, t_1) the entries' values and ``v_e = M1_l w_e``.
    ``x`` is ``(Q2, Q2)`` in Fortran order; its strict upper triangle is not touched.
    """
    _update(x, stream.update_chunks, stream.by_row_ptr, stream.by_row, entry_level,
            stream.level_ptr, entry_row, np.ascontiguousarray(w), np.ascontiguousarray(v))


def gather_products(ainv: np.ndarray, stream: PairStream, entry_row: np.ndarray,
                    entry_level: np.ndarray, n: np.ndarray) -> np.ndarray:
    """``y_e = sum_{f at level(e)} ainv[r_f, r_e] n_f`` for a full symmetric ``ainv``.

    Returns ``(n_e, t_1)``: ``A^{-1} N`` on the pattern of ``G21`` (``n`` holds ``N``
    at the row entries).
    """
    y = np.zeros(n.shape)
    _gather(ainv, stream.gather_chunks, stream.by_row_ptr, stream.by_row, entry_level,
            stream.level_ptr, entry_row, np.ascontiguousarray(n), y)
    return y


def mirror_lower(a: np.ndarray) -> None:
    """In place, ``a[i, j] = a[j, i]`` for ``i < j``: the symmetric matrix of its lower
    triangle (square, any memory order)."""
    _mirror_lower(a)
