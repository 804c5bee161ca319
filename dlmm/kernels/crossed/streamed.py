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

A level of factor 1 that meets many rows of the dense part (more than
:data:`DENSE_LEVEL_FRACTION` of ``Q2``: the heaviest users of a heavy-tailed ratings
table) is not walked pair by pair: its row entries are laid out as dense columns
(``Q2 x b`` at a time, :data:`DENSE_CHUNK_BYTES`) and its share of each operation is a
BLAS product (``dsyrk`` or ``dsyr2k`` for the update, ``dtrsm`` for its quadratic form,
``dsymm`` for the gather): ``Q2^2 / 2`` multiply-adds at BLAS speed (about 0.02 ns
each on the two cores) against its ``n_l^2 / 2`` pairs at a few ns each, cheaper
from ``n_l`` of about ``Q2 / 16``. Its entries are left out of ``by_row``.

Each thread owns whole columns ``c`` of the dense part (Fortran order, so a
column is contiguous): the entries ``e`` with ``r_e = c`` are listed by column
(``by_row``), so no two threads write one number and the sums are the same
for any number of threads. Columns are handed out in chunks of about equal
work (``update_chunks``, ``gather_chunks``), computed once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numba
import numpy as np
import scipy.linalg.blas as blas

#: Chunks of columns per kernel call (about equal work each; several per thread).
N_CHUNKS = 64

#: A level of factor 1 with more row entries than this fraction of ``Q2`` is dense
#: (BLAS, see the module docstring): its pairs cost ``n_l^2 / 2`` scattered
#: multiply-adds (measured 5-7 ns each on two cores, 10^7 ratings) against ``Q2^2 / 2``
#: at BLAS speed (~0.02 ns): equal at ``n_l ~ Q2 sqrt(0.02 / 5) ~ Q2 / 16``.
DENSE_LEVEL_FRACTION = 1.0 / 16.0

#: Bytes of one block of dense levels' columns (``Q2 x b`` float64; ``b`` at most
#: ``Q2 / 8``, an eighth of the dense part).
DENSE_CHUNK_BYTES = 64e6


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
        Pairs ``e <= f`` sharing a level (the Schur update's work), dense levels
        included.
    dense_levels : ndarray int64
        Levels whose pairs are BLAS products (their entries are not in ``by_row``).
    dense_size : int
        ``Q2``.
    """

    by_row_ptr: np.ndarray
    by_row: np.ndarray
    level_ptr: np.ndarray
    update_chunks: np.ndarray
    gather_chunks: np.ndarray
    pairs: int
    dense_levels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    dense_size: int = 0

    @property
    def sparse_pairs(self) -> int:
        """Pairs walked by the compiled loops (dense levels' pairs left out)."""
        counts = np.diff(self.level_ptr)[self.dense_levels].astype(float)
        return int(self.pairs - np.sum(counts * (counts + 1) / 2))

    def dense_blocks(self, entry_row: np.ndarray, *values: np.ndarray):
        """The dense levels in blocks: ``(levels, entries, columns)`` with ``columns`` one
        ``(Q2, b)`` Fortran array per ``values`` (per row entry, 1-D), entry ``e`` of
        the block's ``j``-th level at row ``entry_row[e]`` of column ``j``."""
        q2, levels = self.dense_size, self.dense_levels
        per_block = max(1, min(int(DENSE_CHUNK_BYTES // (8 * max(q2, 1) * max(len(values), 1))),
                               q2 // 8))  # at most an eighth of the dense part
        for start in range(0, levels.size, per_block):
            block = levels[start:start + per_block]
            lo, hi = self.level_ptr[block], self.level_ptr[block + 1]
            counts = hi - lo
            entries = np.repeat(lo - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
            cols = np.repeat(np.arange(block.size), counts)
            out = []
            for val in values:
                dense = np.zeros((q2, block.size), order="F")
                dense[entry_row[entries], cols] = val[entries]
                out.append(dense)
            yield block, entries, out


def _chunks(work_per_column: np.ndarray) -> np.ndarray:
    """Column boundaries ``0 = b_0 < ... = Q2`` splitting the work in ``N_CHUNKS`` parts."""
    q2 = work_per_column.size
    total = np.cumsum(work_per_column)
    if q2 == 0 or total[-1] == 0:
        return np.array([0, q2], dtype=np.int64)
    cuts = np.searchsorted(total, np.linspace(0.0, total[-1], N_CHUNKS + 1)[1:-1], side="right")
    return np.unique(np.concatenate([[0], cuts, [q2]])).astype(np.int64)


def pair_stream(entry_row: np.ndarray, entry_level: np.ndarray, n_first: int,
                dense_size: int, t1: int = 1, dense_fraction: float | None = None
                ) -> PairStream:
    """The :class:`PairStream` of row entries sorted by ``(level, row)``; with ``t1 = 1``
    the levels with more than ``dense_fraction * Q2`` entries are dense (default
    :data:`DENSE_LEVEL_FRACTION`; 1: none)."""
    entry_row = np.ascontiguousarray(entry_row, dtype=np.int64)
    counts = np.bincount(entry_level, minlength=n_first)
    level_ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    frac = DENSE_LEVEL_FRACTION if dense_fraction is None else dense_fraction
    dense = counts > frac * dense_size if t1 == 1 else np.zeros(n_first, bool)
    sparse = ~dense[entry_level]
    walked = np.flatnonzero(sparse)
    by_row = walked[np.argsort(entry_row[walked], kind="stable")].astype(np.int64)
    by_row_ptr = np.concatenate(
        [[0], np.cumsum(np.bincount(entry_row[walked], minlength=dense_size))]).astype(np.int64)
    suffix = (level_ptr[entry_level + 1] - np.arange(entry_row.size)).astype(float)
    size = counts[entry_level].astype(float)
    return PairStream(
        by_row_ptr=by_row_ptr,
        by_row=by_row,
        level_ptr=level_ptr,
        update_chunks=_chunks(np.bincount(entry_row, weights=suffix * sparse,
                                          minlength=dense_size)),
        gather_chunks=_chunks(np.bincount(entry_row, weights=size * sparse,
                                          minlength=dense_size)),
        pairs=int(suffix.sum()),
        dense_levels=np.flatnonzero(dense).astype(np.int64),
        dense_size=int(dense_size),
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
def _lower_sums(ainv, chunks, by_row_ptr, by_row, entry_level, level_ptr, entry_row, w, out):
    for k in numba.prange(chunks.size - 1):
        for c in range(chunks[k], chunks[k + 1]):
            for p in range(by_row_ptr[c], by_row_ptr[c + 1]):
                e = by_row[p]
                s = 0.0
                for f in range(e + 1, level_ptr[entry_level[e] + 1]):
                    s += ainv[entry_row[f], c] * w[f]
                out[e] = s


@numba.njit(parallel=True, cache=True, nogil=True)
def _mirror_lower(a):
    n = a.shape[0]
    for j in numba.prange(n):
        for i in range(j):
            a[i, j] = a[j, i]


def schur_update(x: np.ndarray, stream: PairStream, entry_row: np.ndarray,
                 entry_level: np.ndarray, w: np.ndarray, v: np.ndarray,
                 level_m: np.ndarray | None = None) -> None:
    """In place, the lower triangle of ``x`` minus ``G21 M1 G21'``.

    ``x[r_f, r_e] -= w_f' v_e`` for every pair ``e <= f`` of row entries at one level
    (``r_f >= r_e``), with ``w`` (n_e, t_1) the entries' values and ``v_e = M1_l w_e``.
    ``x`` is ``(Q2, Q2)`` in Fortran order; its strict upper triangle is not touched.
    The dense levels (``t_1 = 1``) are one ``dsyr2k`` per block of them; ``level_m``
    (``M1_l`` per level), when given and not negative there, a ``dsyrk`` of
    ``sqrt(M1_l) w`` instead (half the flops).
    """
    _update(x, stream.update_chunks, stream.by_row_ptr, stream.by_row, entry_level,
            stream.level_ptr, entry_row, np.ascontiguousarray(w), np.ascontiguousarray(v))
    if not stream.dense_levels.size:
        return
    w1, v1 = np.ascontiguousarray(w[:, 0]), np.ascontiguousarray(v[:, 0])
    syrk = level_m is not None and bool(np.all(level_m[stream.dense_levels] >= 0.0))
    if syrk:
        w1 = w1 * np.sqrt(level_m[entry_level])
        blocks = stream.dense_blocks(entry_row, w1)
    else:
        blocks = stream.dense_blocks(entry_row, w1, v1)
    for _, _, cols in blocks:
        if syrk:
            out = blas.dsyrk(-1.0, cols[0], beta=1.0, c=x, lower=1, overwrite_c=1)
        else:
            out = blas.dsyr2k(-0.5, cols[0], cols[1], beta=1.0, c=x, lower=1, overwrite_c=1)
        if not np.shares_memory(out, x):  # not expected: x is Fortran-ordered float64
            x[...] = out


def level_quadratic(ainv_lower: np.ndarray, stream: PairStream, entry_row: np.ndarray,
                    entry_level: np.ndarray, w: np.ndarray, n_first: int,
                    dense_part: np.ndarray | None = None) -> np.ndarray:
    """``q_l = g_l' A^{-1} g_l`` per level of factor 1 (``g_l``: column ``l`` of ``G21``,
    ``t_1 = 1``; ``w`` (n_e,) its values at the row entries), from ``A^{-1}``'s lower
    triangle: the pairs ``e <= f`` of a level once each (the update's pairs, half the
    gather's), ``q_l = sum_e w_e (2 sum_{f > e} w_f A^{-1}_fe + w_e A^{-1}_ee)``.

    The dense levels' ``q_l`` are taken from ``dense_part`` (``q_l`` per dense level,
    :func:`dense_level_quadratic`, made from the factor before it was inverted); None:
    one ``dsymm`` with ``A^{-1}`` per block of them.
    """
    w = np.ascontiguousarray(w, dtype=float)
    partial = np.zeros(w.size)
    _lower_sums(ainv_lower, stream.update_chunks, stream.by_row_ptr, stream.by_row,
                entry_level, stream.level_ptr, entry_row, w, partial)
    flat = ainv_lower.reshape(-1, order="F")
    diag = flat[entry_row * (ainv_lower.shape[0] + 1)]
    sparse = np.ones(n_first, bool)
    sparse[stream.dense_levels] = False
    terms = np.where(sparse[entry_level], w * (2.0 * partial + w * diag), 0.0)
    q = np.bincount(entry_level, weights=terms, minlength=n_first)
    if stream.dense_levels.size:
        if dense_part is None:
            dense_part = np.zeros(stream.dense_levels.size)
            done = 0
            for block, _, cols in stream.dense_blocks(entry_row, w):
                y = blas.dsymm(1.0, ainv_lower, cols[0], side=0, lower=1)
                dense_part[done:done + block.size] = np.einsum("ij,ij->j", cols[0], y)
                done += block.size
        q[stream.dense_levels] = dense_part
    return q


def dense_level_quadratic(l22: np.ndarray, stream: PairStream, entry_row: np.ndarray,
                          w: np.ndarray) -> np.ndarray:
    """``q_l = g_l' A^{-1} g_l = |L22^{-1} g_l|^2`` for the dense levels, from the
    Schur complement's Cholesky factor (one ``dtrsm`` per block: ``Q2^2 / 2``
    multiply-adds a level, half a ``dsymm`` with the inverse)."""
    out = np.zeros(stream.dense_levels.size)
    done = 0
    for block, _, cols in stream.dense_blocks(entry_row, np.ascontiguousarray(w, dtype=float)):
        z = blas.dtrsm(1.0, l22, cols[0], side=0, lower=1, trans_a=0, overwrite_b=1)
        out[done:done + block.size] = np.einsum("ij,ij->j", z, z)
        done += block.size
    return out


def gather_products(ainv: np.ndarray, stream: PairStream, entry_row: np.ndarray,
                    entry_level: np.ndarray, n: np.ndarray) -> np.ndarray:
    """``y_e = sum_{f at level(e)} ainv[r_f, r_e] n_f`` for a full symmetric ``ainv``.

    Returns ``(n_e, t_1)``: ``A^{-1} N`` on the pattern of ``G21`` (``n`` holds ``N``
    at the row entries). The dense levels: one ``dsymm`` per block of them.
    """
    y = np.zeros(n.shape)
    _gather(ainv, stream.gather_chunks, stream.by_row_ptr, stream.by_row, entry_level,
            stream.level_ptr, entry_row, np.ascontiguousarray(n), y)
    if stream.dense_levels.size:
        n1 = np.ascontiguousarray(n[:, 0])
        for block, entries, cols in stream.dense_blocks(entry_row, n1):
            prod = blas.dsymm(1.0, ainv, cols[0], side=0, lower=1)
            local = np.repeat(np.arange(block.size), np.diff(stream.level_ptr)[block])
            y[entries, 0] = prod[entry_row[entries], local]
    return y


def mirror_lower(a: np.ndarray) -> None:
    """In place, ``a[i, j] = a[j, i]`` for ``i < j``: the symmetric matrix of its lower
    triangle (square, any memory order)."""
    _mirror_lower(a)
