"""The theta-independent layout of the blocked system, built once from the sums.

Factors are reordered by their number of random effects ``l_k t_k``, largest
first (MixedModels.jl sorts its terms by ``nranef``; for intercepts that is the
level count). Write ``1`` for the first factor and ``2`` for all the others
together (``Q2 = sum_{k >= 2} l_k t_k`` columns, factor by factor, level-major):

    G = Z'Z = [[D,   G21'],      D    block diagonal: l_1 blocks t_1 x t_1
               [G21, G22 ]]      G21  sparse (Q2 x l_1 t_1): the level pairs seen
                                 G22  dense  (Q2 x Q2): diagonal blocks + pairs among 2
    H = Z'[X y] = [H1; H2]

For the Schur complement the key identity is

    L21 L21' = C21 C11^{-1} C12 = Lambda_2' (G21 M1 G21') Lambda_2,
    M1 = blockdiag_l(T_1 C11_l^{-1} T_1'),

so ``G21 M1 G21'`` is linear in the ``l_1 t_1^2`` numbers ``M1``:
``vec(G21 M1 G21')[lower] = B vec(M1)`` with a sparse matrix ``B`` (one entry per
pair of nonzeros of ``G21`` in the same level of factor 1, the same work as
MixedModels.jl's rank update of ``L22`` by a sparse ``L21``). Two ways to do
that work each step, chosen once here by the number of pairs:

* stored (up to :data:`STORED_PAIRS_MAX` pairs): ``B`` is built once (with one
  term on the first factor by its rows, the targets, column by column of the
  dense part: :func:`.level_pairs.target_pairs`, 12 bytes per pair held and built;
  else by column, a level of factor 1 owning consecutive pairs), and each step
  is one sparse mat-vec and a scatter into the lower triangle (fastest; 8 more
  bytes per pair once the pairs' targets for the conditional variances are made);
* streamed (more pairs): only index arrays over the row entries are kept
  (:class:`~.streamed.PairStream`, ``O(nnz(G21))``) and compiled loops walk the
  pairs again each step (:mod:`.streamed`), so the driver's memory no longer
  grows with the pairs.

* dense (when the pairs cost more than dense products would:
  :func:`uses_dense_g21`, e.g. every level of factor 1 meets most of the dense
  part, as in kb07's subjects x items): ``G21`` is kept as a dense
  ``(Q2, l_1, t_1)`` array and each step forms ``G21 M1 G21'`` by one batched
  product with the blocks of ``M1`` and one matrix product (BLAS), and the
  gradient's ``A^{-1} N`` by one more (:attr:`CrossedSystem.dense_g21`).

Either way a step ends with a Cholesky factorization of the Schur complement:
dense (LAPACK), or sparse on a fill-reducing order when its pattern (fixed by
the data) leaves the factor far from dense (:mod:`.sparse`, decided here once:
:attr:`CrossedSystem.sparse`).

"Row entries" are the scalar rows of the nonzero blocks of ``G21``: entry ``e`` has
a row ``row[e]`` of the dense part, a level ``level[e]`` of factor 1 and a row vector
``w[e]`` (``t_1`` values); they are sorted by ``(level, row)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from itertools import combinations
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from .counts import (
    _pair_blocks,
    factor_order,
    schur_pair_count,
    streams_pairs,
    uses_dense_g21,
)
from .level_pairs import pair_targets, pairs_in_runs, pairs_per_entry, target_pairs
from .sums import CrossedSums

if TYPE_CHECKING:
    from .sparse import SchurPattern
    from .streamed import PairStream

@dataclass(frozen=True)
class CrossedCost:
    """Size of one evaluation; none of it depends on the number of rows.

    Attributes
    ----------
    first_size : int
        ``l_1 t_1``: columns of the block-diagonal first factor (batched ``t_1 x t_1``).
    dense_size : int
        ``Q2``: order of the dense Schur complement (Cholesky ``Q2^3 / 3`` flops).
    g21_nonzeros : int
        Scalar nonzeros of ``Z_2'Z_1`` (the level pairs seen, times terms).
    schur_pairs : int
        Nonzeros of ``B``: pairs of nonzeros of ``G21`` sharing a level of factor 1
        (lower triangle), times ``t_1^2`` (with a dense ``G21``: those it replaces).
    flops : float
        Rough multiply-adds of one value: ``Q2^3/3 + 2 schur_pairs + Q2^2 (r + 2)``
        (dense ``G21``: its products, ``Q2^2 l_1 t_1``, in place of ``2 schur_pairs``)
        (sparse Schur factor: its flops and ``nnz(L)`` in place of ``Q2^3/3``, ``Q2^2``).
    memory_bytes : float
        Rough bytes held: the dense part once (a step's working matrix, factored and
        inverted in place), the nonzeros of ``G22``, ``B`` and ``G21``.
    """

    first_size: int
    dense_size: int
    g21_nonzeros: int
    schur_pairs: int
    flops: float
    memory_bytes: float


@dataclass(eq=False)
class CrossedSystem:
    """Sums rearranged for the blocked factorization (see the module docstring).

    Attributes
    ----------
    n_levels, n_terms : list of int
        Per factor in the caller's order.
    order : list of int
        Factor indices, first factor first (largest ``l_k t_k``; ties keep the order).
    rest_offsets : list of int
        Offset in the dense part of each factor ``order[1:]``.
    d : ndarray (l_1, t_1, t_1)
        Diagonal blocks of ``Z_1'Z_1``.
    h1 : ndarray (l_1, t_1, r)
        ``Z_1'[X y]`` per level.
    h2 : ndarray (Q2, r)
        ``Z_2'[X y]``.
    g22 : scipy.sparse.csr_matrix (Q2, Q2)
        ``Z_2'Z_2`` (symmetric, both triangles; sparse: the driver holds the dense
        part once, as the working matrix of a step, not a second time as ``G22``).
    g21 : scipy.sparse.csr_matrix (Q2, l_1 t_1)
        ``Z_2'Z_1``; ``g21_t`` is its transpose, also CSR.
    entry_row, entry_level : ndarray (n_e,) int64
        Row entries of ``G21`` (see the module docstring), sorted by ``(level, row)``.
    entry_w : ndarray (n_e, t_1)
    blocks : list of (index (m_k, t_k), level (m_k,), w (m_k, t_k, t_1))
        Per factor ``order[1:]``: its nonzero blocks of ``G21``, with the row entries
        of each block, their level of factor 1 and values.
    schur : scipy.sparse.csr_matrix or csc_matrix (U, l_1 t_1^2) or None
        ``B``: ``(G21 M1 G21')[targets] = B @ M1.ravel()`` (None when streamed); with
        one term on the first factor by its rows (CSR), else by its columns (CSC).
    schur_target : ndarray (U,) or None
        Flat index (Fortran order) of each lower-triangle target of ``B``'s rows,
        ascending.
    pair_target : ndarray (n_pairs,) or None
        For each pair of :meth:`lower_pairs` (``e' <= e`` at one level), the row of
        ``B`` (the target) it adds to (a property: with one term on the first factor
        made on first use, for the conditional variances; None unless stored).
    stream : PairStream or None
        The streamed path's index arrays (None when ``B`` is stored).
    dense_g21 : ndarray (Q2, l_1, t_1) or None
        ``G21`` as a dense array when the Schur update is made by dense products
        (then ``schur``, ``schur_target``, ``pair_target`` and ``stream`` are None).
    sparse : SchurPattern or None
        The fill-reducing order and pattern of the Schur complement's factor when it
        is factored sparse (:mod:`.sparse`); None: dense LAPACK.
    xy_cross : ndarray (r, r)
    n_rows : float
    """

    n_levels: list
    n_terms: list
    order: list
    rest_offsets: list
    d: np.ndarray
    h1: np.ndarray
    h2: np.ndarray
    g22: sp.csr_matrix
    g21: sp.csr_matrix
    g21_t: sp.csr_matrix
    entry_row: np.ndarray
    entry_level: np.ndarray
    entry_w: np.ndarray
    blocks: list
    schur: sp.csc_matrix | None
    schur_target: np.ndarray | None
    stored_pair_target: np.ndarray | None
    xy_cross: np.ndarray
    n_rows: float
    stream: PairStream | None = None
    sparse: SchurPattern | None = None
    dense_g21: np.ndarray | None = None
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def pair_target(self) -> np.ndarray | None:
        """Each stored pair's target (see the class docstring; cached)."""
        if self.stored_pair_target is not None or self.schur is None:
            return self.stored_pair_target
        if "pair_target" not in self._cache:
            self._cache["pair_target"] = pair_targets(
                self.entry_level, self.entry_row, self.schur_target,
                self.n_levels[self.first], self.dense_size)
        return self._cache["pair_target"]

    @property
    def streamed(self) -> bool:
        """Whether the pairs are walked each step (:mod:`.streamed`) instead of stored."""
        return self.stream is not None

    @property
    def first(self) -> int:
        return self.order[0]

    @property
    def rest(self) -> list:
        return self.order[1:]

    @property
    def dense_size(self) -> int:
        return self.g22.shape[0]

    @property
    def n_columns(self) -> int:
        return self.xy_cross.shape[0]

    def rest_levels(self) -> list:
        return [self.n_levels[k] for k in self.rest]

    def cost(self) -> CrossedCost:
        """The size of one evaluation (see :class:`CrossedCost`)."""
        q2 = self.dense_size
        r = self.n_columns
        t1 = self.n_terms[self.first]
        step = None  # multiply-adds of the Schur update: 2 per pair, or dense products
        if self.dense_g21 is not None:
            l1 = self.n_levels[self.first]
            pairs = int(pairs_per_entry(self.entry_level, l1).sum()) * t1 * t1
            step = float(q2) * q2 * l1 * t1 + q2 * l1 * t1 * t1
            held = 8.0 * self.dense_g21.size
        elif self.streamed:
            pairs = self.stream.pairs * t1 * t1
            held = 8.0 * 3 * self.entry_row.size
        else:
            pairs = int(self.schur.nnz)
            held = 12.0 * pairs
        if step is None:
            step = 2.0 * pairs
        if self.sparse is not None:  # the factor's flops, no Q2 x Q2 working copy
            nnz_l = self.sparse.nnz
            flops = self.sparse.flops + step + nnz_l * (r + 2)
            mem = 12.0 * self.g22.nnz + held + 12.0 * self.g21.nnz * 2 + 24.0 * nnz_l
        else:
            flops = q2**3 / 3.0 + step + q2 * q2 * (r + 2)
            mem = 8.0 * q2 * q2 + 12.0 * self.g22.nnz + held + 12.0 * self.g21.nnz * 2
        return CrossedCost(
            first_size=self.n_levels[self.first] * self.n_terms[self.first],
            dense_size=q2,
            g21_nonzeros=int(self.g21.nnz),
            schur_pairs=pairs,
            flops=flops,
            memory_bytes=mem,
        )

    def lower_pairs(self) -> tuple[sp.csr_matrix, np.ndarray]:
        """Pairs ``(e, e')`` of row entries at one level of factor 1 with ``e' <= e``
        (stored path only; cached, made on first use: the gradient with intercepts only
        does not need them).

        Returns a CSR pattern ``(n_e, n_e)`` (its data to be filled; pair ``p`` is its
        ``p``-th stored entry, in the order of :attr:`pair_target`) and the positions
        of the diagonal pairs ``e = e'``. With data ``A[row[e], row[e']]`` (for a
        symmetric ``A``: ``A.flat[schur_target][pair_target]``), ``(S + S' - diag S) v``
        is ``A``'s product with ``v`` restricted to the pattern of ``G21``: the work of
        the Schur update, not of ``A @ G21``.
        """
        if "lower_pairs" not in self._cache:
            n_e = self.entry_level.size
            b_idx, reps = pairs_in_runs(self.entry_level, self.n_levels[self.first])
            idx_t = np.int32 if max(n_e, b_idx.size) < 2**31 else np.int64
            pair_ptr = np.concatenate([[0], np.cumsum(reps)]).astype(idx_t)
            pattern = sp.csr_matrix((np.zeros(b_idx.size), b_idx.astype(idx_t), pair_ptr),
                                    shape=(n_e, n_e))
            diagonal = pair_ptr[1:] - 1  # each row's last pair is (e, e)
            self._cache["lower_pairs"] = (pattern, diagonal)
        return self._cache["lower_pairs"]

    def schur_mirror(self) -> tuple[np.ndarray, np.ndarray]:
        """Rows of ``B`` off the diagonal and the flat index (Fortran order) of their
        upper-triangle mirror (cached): for a dense part whose ``Lambda_2`` mixes terms."""
        if "schur_mirror" not in self._cache:
            t_rows, t_cols, off_diag = self.target_rows_cols()
            offdiag = np.flatnonzero(off_diag)
            self._cache["schur_mirror"] = (
                offdiag, (t_cols + t_rows * self.dense_size)[offdiag])
        return self._cache["schur_mirror"]

    @property
    def intercepts_only(self) -> bool:
        """Whether every factor has one term (random intercepts)."""
        return all(t == 1 for t in self.n_terms)

    def target_rows_cols(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Row and column of each target of ``B`` (``row >= col``) and whether it is off
        the diagonal (cached)."""
        if "target_rows_cols" not in self._cache:
            cols, rows = np.divmod(self.schur_target, self.dense_size)
            self._cache["target_rows_cols"] = (rows, cols, rows != cols)
        return self._cache["target_rows_cols"]

    def target_multiplicity(self) -> np.ndarray:
        """2 for a target of ``B`` off the diagonal (it stands for two entries of a
        symmetric matrix), 1 on it (cached)."""
        if "target_multiplicity" not in self._cache:
            self._cache["target_multiplicity"] = np.where(self.target_rows_cols()[2], 2.0, 1.0)
        return self._cache["target_multiplicity"]

    def target_scale(self, rest_scale: np.ndarray) -> np.ndarray:
        """``s[i] s[j]`` for each target ``(i, j)`` of ``B``, given ``s`` per dense row."""
        rows, cols, _ = self.target_rows_cols()
        return rest_scale[rows] * rest_scale[cols]

    def dense_owner(self) -> np.ndarray:
        """For each row of the dense part, its factor's position in :attr:`rest` (cached)."""
        if "dense_owner" not in self._cache:
            self._cache["dense_owner"] = np.repeat(
                np.arange(len(self.rest)), [self.n_levels[k] * self.n_terms[k] for k in self.rest])
        return self._cache["dense_owner"]

    def g22_sparse(self) -> sp.csr_matrix:
        """``G22`` as a sparse matrix (it is held so: diagonal blocks and the pairs among
        the factors of the dense part, often far from dense)."""
        return self.g22

    def g22_lower(self) -> tuple[np.ndarray, np.ndarray]:
        """Which of :meth:`g22_entries` lie in the lower triangle, and their flat
        indices (cached: the sparse pattern looks the array up by identity)."""
        if "g22_lower" not in self._cache:
            rows, cols, _, at = self.g22_entries()
            lower = rows >= cols
            self._cache["g22_lower"] = (lower, at[lower])
        return self._cache["g22_lower"]

    def g22_entries(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The nonzeros of ``G22`` (cached): rows, columns, values and the flat index of
        each into the lower triangle of a ``Q2 x Q2`` Fortran-order matrix."""
        if "g22_entries" not in self._cache:
            coo = self.g22.tocoo()  # canonical CSR: row-major, as np.nonzero of the dense
            rows, cols, values = coo.row.astype(np.int64), coo.col.astype(np.int64), coo.data
            flat = np.maximum(rows, cols) + np.minimum(rows, cols) * self.dense_size
            self._cache["g22_entries"] = (rows, cols, values, flat)
        return self._cache["g22_entries"]


def _schur_operator(level, row, w, n_first, t1, q2):
    """``B``, its targets (ascending) and the target of each pair (None: made when
    asked, :attr:`CrossedSystem.pair_target`).

    Pair ``p = (a, b)`` (``b <= a``, one level ``l``) adds ``w_a[c] w_b[d] M1_l[c, d]``
    to target ``(row[a], row[b])``. With ``t_1 = 1``, ``B`` is made by its rows
    (:func:`.level_pairs.target_pairs`: CSR, a target's pairs by ascending level); with
    ``t_1 > 1`` by column (CSC: the pairs of a level are consecutive and levels
    ascend; a stable sort of the pairs' ``t_1^2`` columns).
    """
    if t1 == 1:  # by its rows from compiled loops (rows sorted: row[b] <= row[a])
        targets, indptr, users, vals = target_pairs(level, row, w[:, 0], n_first, q2)
        schur = sp.csr_matrix((vals, users, indptr), shape=(targets.size, n_first))
        return schur, targets, None  # each pair's target: made when asked
    b_idx, reps = pairs_in_runs(level, n_first)  # rows sorted: row[b] <= row[a]
    flat = row[b_idx] * q2 + np.repeat(row, reps)  # Fortran order: (ra, rb), ra >= rb
    # distinct targets without a sort: mark them on the dense Q2 x Q2 grid
    seen = np.zeros(q2 * q2, dtype=bool)
    seen[flat] = True
    targets = np.flatnonzero(seen)
    del seen
    idx_t = np.int32 if max(targets.size, b_idx.size * t1 * t1) < 2**31 else np.int64
    slot = np.zeros(q2 * q2, dtype=idx_t)
    slot[targets] = np.arange(targets.size, dtype=idx_t)
    pair_target = slot[flat].astype(np.intp)  # NumPy's own index type: its fastest gathers
    del slot, flat
    n_cols = n_first * t1 * t1
    counts = np.bincount(level, weights=reps, minlength=n_first).astype(np.int64)  # per level
    cc, dd = np.divmod(np.arange(t1 * t1), t1)
    vals = (np.repeat(w, reps, axis=0)[:, cc] * w[b_idx][:, dd]).ravel()
    cols = (np.repeat(level, reps)[:, None] * (t1 * t1) + cc * t1 + dd).ravel()
    order = np.argsort(cols, kind="stable")
    vals, rows_b = vals[order], np.repeat(pair_target.astype(idx_t), t1 * t1)[order]
    counts = np.repeat(counts, t1 * t1)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(idx_t)
    schur = sp.csc_matrix((vals, rows_b, indptr), shape=(targets.size, n_cols))
    return schur, targets, pair_target


def build_system(sums: CrossedSums, streamed: bool | None = None,
                 sparse: bool | None = None, dense: bool | None = None) -> CrossedSystem:
    """Rearrange reduced :class:`CrossedSums` for :func:`~.factor.factorize` (once per fit).

    Cost ``O(sum_l nnz_l^2)`` for a stored Schur operator (``nnz_l``: nonzero blocks of
    ``G21`` at level ``l`` of factor 1), ``O(nnz(G21))`` for a streamed one, plus
    ``O(Q2^2)`` memory for ``G22``. ``streamed`` forces the path; by default the
    pairs are streamed when there are more than :data:`STORED_PAIRS_MAX`.
    ``sparse`` forces (True) or forbids (False) the sparse factorization of the
    Schur complement (:mod:`.sparse`); by default it is chosen by its counted cost
    (stored pairs only). ``dense`` forces (True) or forbids (False) a dense ``G21``
    and dense products in place of the pairs; by default :func:`uses_dense_g21`
    decides (neither streamed nor sparse forced).
    """
    if dense and (streamed or sparse):
        raise ValueError("a dense G21 is neither streamed nor factored sparse")
    n_levels, n_terms = sums.n_levels, sums.n_terms
    order = factor_order(n_levels, n_terms)
    first, rest = order[0], order[1:]
    t1, l1 = n_terms[first], n_levels[first]
    r = sums.n_columns

    offsets, q2 = [], 0
    for k in rest:
        offsets.append(q2)
        q2 += n_levels[k] * n_terms[k]
    pairs = schur_pair_count(sums) if dense is None or streamed is None else 0
    if dense is None:
        dense = not streamed and not sparse and uses_dense_g21(q2, l1, t1, pairs)
    if streamed is None:
        streamed = not dense and streams_pairs(pairs)
    off_of = dict(zip(rest, offsets))

    g22 = _g22_matrix(sums, rest, off_of, q2)
    h2 = np.concatenate([sums.zxy[k].reshape(-1, r) for k in rest]) if rest else np.zeros((0, r))

    # Row entries of G21: per rest factor k and term a, one per level pair seen.
    e_row, e_level, e_w, e_owner = [], [], [], []
    raw_blocks = []
    start = 0
    for k in rest:
        lk, l_first, vals = _pair_blocks(sums, k, first)  # blocks t_k x t_1
        m, t = lk.size, n_terms[k]
        idx = start + np.arange(m)[:, None] * t + np.arange(t)[None, :]
        e_row.append((off_of[k] + lk[:, None] * t + np.arange(t)[None, :]).ravel())
        e_level.append(np.repeat(l_first, t))
        e_w.append(vals.reshape(m * t, t1))
        e_owner.append(idx.ravel())
        raw_blocks.append((idx, l_first.astype(np.int64), vals))
        start += m * t
    if rest:
        entry_row = np.concatenate(e_row).astype(np.int64)
        entry_level = np.concatenate(e_level).astype(np.int64)
        entry_w = np.concatenate(e_w)
    else:
        entry_row = np.zeros(0, np.int64)
        entry_level = np.zeros(0, np.int64)
        entry_w = np.zeros((0, t1))
    perm = np.lexsort((entry_row, entry_level))  # sort by (level, row)
    where = np.empty_like(perm)
    where[perm] = np.arange(perm.size)
    entry_row, entry_level, entry_w = entry_row[perm], entry_level[perm], entry_w[perm]
    blocks = [(where[idx], lev, vals) for idx, lev, vals in raw_blocks]

    cols = entry_level[:, None] * t1 + np.arange(t1)[None, :]
    g21 = sp.csr_matrix(
        (entry_w.ravel(), (np.repeat(entry_row, t1), cols.ravel())), shape=(q2, l1 * t1)
    )
    g21_t = g21.T.tocsr()
    dense_g21 = None
    if dense:
        dense_g21 = g21.toarray().reshape(q2, l1, t1)
        stream = schur = target = pair_target = None
    elif streamed:
        from .streamed import pair_stream

        stream = pair_stream(entry_row, entry_level, l1, q2, t1)
        schur = target = pair_target = None
    else:
        stream = None
        schur, target, pair_target = _schur_operator(entry_level, entry_row, entry_w, l1, t1, q2)

    pattern = None
    if sparse is not False and not streamed and not dense and q2:
        pattern = _sparse_pattern(sums, rest, off_of, g22, target, force=bool(sparse))
    elif sparse and streamed:
        raise ValueError("the sparse Schur factorization needs stored pairs")

    return CrossedSystem(
        n_levels=list(n_levels),
        n_terms=list(n_terms),
        order=order,
        rest_offsets=offsets,
        d=np.array(sums.zz[first]),
        h1=np.array(sums.zxy[first]),
        h2=h2,
        g22=g22,
        g21=g21,
        g21_t=g21_t,
        entry_row=entry_row,
        entry_level=entry_level,
        entry_w=entry_w,
        blocks=blocks,
        schur=schur,
        schur_target=target,
        stored_pair_target=pair_target,
        xy_cross=np.array(sums.xy_cross),
        n_rows=float(sums.n_rows),
        stream=stream,
        sparse=pattern,
        dense_g21=dense_g21,
    )


def _g22_matrix(sums: CrossedSums, rest: list, off_of: dict, q2: int) -> sp.csr_matrix:
    """``G22 = Z_2'Z_2`` as a symmetric sparse matrix (both triangles): each factor's
    diagonal blocks and the level pairs among the factors of the dense part, without
    the ``Q2 x Q2`` array (with two factors it is diagonal)."""
    n_levels, n_terms = sums.n_levels, sums.n_terms
    rows, cols, vals = [], [], []
    for k in rest:
        t = n_terms[k]
        base = off_of[k] + np.arange(n_levels[k]) * t
        for a in range(t):
            for b in range(t):
                rows.append(base + a)
                cols.append(base + b)
                vals.append(np.asarray(sums.zz[k][:, a, b], dtype=float))
    for j, k in combinations(rest, 2):
        lj, lk, values = _pair_blocks(sums, j, k)
        for a in range(n_terms[j]):
            for b in range(n_terms[k]):
                ri = off_of[j] + lj * n_terms[j] + a
                ci = off_of[k] + lk * n_terms[k] + b
                rows += [ri, ci]
                cols += [ci, ri]
                vals += [values[:, a, b], values[:, a, b]]
    if not rows:
        return sp.csr_matrix((q2, q2))
    out = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows).astype(np.int64),
                                                 np.concatenate(cols).astype(np.int64))),
                        shape=(q2, q2))
    out.eliminate_zeros()
    out.sort_indices()
    return out


def _sparse_pattern(sums, rest, off_of, g22, target, force):
    """:func:`.sparse.analyse` of the Schur complement's pattern: the targets of ``B``
    and the nonzeros of ``G22``, each level of a later factor one block."""
    from . import sparse

    q2 = g22.shape[0]
    if not force and (q2 < sparse.SPARSE_MIN_SIZE
                      or 2.0 * target.size > sparse.SPARSE_DENSITY_MAX * q2 * q2):
        return None  # small, or A already too dense: no pattern work at all
    sizes = np.concatenate([np.full(sums.n_levels[k], sums.n_terms[k], np.int64)
                            for k in rest])
    starts = np.concatenate([off_of[k] + np.arange(sums.n_levels[k]) * sums.n_terms[k]
                             for k in rest]).astype(np.int64)
    row_block = np.repeat(np.arange(sizes.size), sizes)
    g_coo = g22.tocoo()
    g_rows, g_cols = g_coo.row, g_coo.col
    t_cols, t_rows = np.divmod(target, q2)
    rows = np.concatenate([g_rows, t_rows]).astype(np.int64)
    cols = np.concatenate([g_cols, t_cols]).astype(np.int64)
    return sparse.analyse(q2, row_block, starts, sizes, rows, cols, force=force)


def select_columns(system: CrossedSystem, keep: np.ndarray) -> CrossedSystem:
    """The same system with only the ``keep`` columns of ``[X y]`` (collinear fixed
    effects dropped before the fit): ``H1``, ``H2`` and ``[X y]'[X y]`` lose columns,
    the random-effects layout (and its cached pair structure) is shared."""
    keep = np.asarray(keep, dtype=bool)
    if keep.shape != (system.n_columns,):
        raise ValueError(f"keep has shape {keep.shape}, the system has {system.n_columns} columns")
    return replace(
        system,
        h1=np.ascontiguousarray(system.h1[:, :, keep]),
        h2=np.ascontiguousarray(system.h2[:, keep]),
        xy_cross=np.ascontiguousarray(system.xy_cross[np.ix_(keep, keep)]),
        _cache=system._cache,
    )
