"""The Schur complement factored sparse where it stays sparse (chosen once per system).

The Schur complement ``A = I + Lambda_2'(G22 - G21 M1 G21')Lambda_2`` of the
factors after the largest has a pattern that does not depend on theta: the
level pairs of ``G22`` (levels of two later factors seen together), the pairs
the first factor's levels connect (the targets of the Schur operator ``B``) and
the diagonal blocks, each as a whole ``t_j x t_k`` block. When the later
factors are nested or seldom meet (students x teachers x schools: a teacher
sees the students of a few classes, a school its own teachers) ``A`` is mostly
zeros, and so is its Cholesky factor under a fill-reducing order.

:func:`analyse` (once, from the layout) orders the levels of the dense part
(block by block, so a level's terms stay together) and counts the fill of the
factor: the candidates are the layout's own order (factors by size, largest
first, so a factor nested in a smaller one comes first and the smaller one's
rows form an arrow at the end), reverse Cuthill-McKee (SciPy's ``csgraph``) and
the multiple minimum degree order of SuperLU (read from an incomplete
factorization of the pattern that drops everything, so it costs the pattern's
work, not the fill's). The pattern
of ``L`` is then found symbolically (elimination tree and row subtrees,
:mod:`.sparse_loops`). The sparse path is kept only when its flops, times
:data:`SPARSE_PENALTY` (scalar compiled loops against blocked LAPACK), stay
below the dense ``Q2^3 / 3``: InstEval (its lecturers meet through students
almost all) stays dense, students x teachers x schools goes sparse (1,454 rows,
16,000 nonzeros of ``L`` under the minimum degree order against a million dense).

:class:`SparseSchurFactor` is then what :attr:`.CrossedFactor.l22` holds: the
numeric factor in ``O(flops)``, the triangular solves in ``O(nnz(L))`` and
``A^{-1}`` on the pattern of ``L`` (Takahashi's recurrence, the same order of
work as the factor): all the gradient, the modes and their variances read of
``A^{-1}`` lies on that pattern.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

#: Flops of the sparse (scalar, compiled) factorization are counted this many times
#: against the dense ``Q2^3 / 3`` of LAPACK's blocked ``dpotrf`` when choosing.
SPARSE_PENALTY = 16.0
#: Below this order the dense part is always factored densely: a dense value and
#: gradient there cost a few milliseconds, while the sparse path's compiled loops cost
#: their first load in a process (numba: ~0.5 s idle, over 1 s on busy cores).
SPARSE_MIN_SIZE = 600
#: A Schur complement with more than this fraction of its entries not zero is factored
#: densely without a count (InstEval's: 0.20; students x teachers x schools: 0.008).
SPARSE_DENSITY_MAX = 0.05
#: A symbolic count stops (that order is dropped) once the factor holds more than this
#: fraction of the dense triangle: such a factor would not beat LAPACK.
MMD_FILL_MAX = 0.5


@dataclass(eq=False)
class SchurPattern:
    """The fixed pattern of the sparse Schur factorization.

    Attributes
    ----------
    n : int
        ``Q2``.
    perm : ndarray (n,)
        Row of the dense part at each position of the factored order (new -> old).
    ap, ai : ndarray
        Upper triangle of the permuted ``A`` by column (CSC).
    a_flat : ndarray (nnz(ap),)
        Flat index (Fortran order, lower triangle, original order) of each entry of
        ``ai``: ``A``'s values are ``dense.reshape(-1, order="F")[a_flat]``.
    rp, rc : ndarray
        Row patterns of ``L`` below the diagonal (CSR, columns ascending).
    lp, li : ndarray
        ``L`` in CSC, diagonal first, rows ascending.
    l_flat : ndarray (nnz(L),)
        Flat index (Fortran order, lower triangle, original order) of each entry of
        ``L``'s pattern.
    flops : float
        ``sum_j c_j^2`` over the columns' counts (multiply-adds of one factor).
    ordering : str
        Which order won (``"layout"``, ``"rcm"`` or ``"mmd"``).
    block_start : ndarray (n_blocks,)
        First row (original order) of each block (a level of a later factor).
    block_pairs : (ndarray, ndarray)
        The pattern's block pairs ``(I, J)`` with ``I >= J`` (original block order).
    """

    n: int
    perm: np.ndarray
    ap: np.ndarray
    ai: np.ndarray
    a_flat: np.ndarray
    rp: np.ndarray
    rc: np.ndarray
    lp: np.ndarray
    li: np.ndarray
    l_flat: np.ndarray
    flops: float
    ordering: str
    block_start: np.ndarray | None = None
    block_pairs: tuple | None = None

    _lookup: dict = field(default_factory=dict, repr=False)

    @property
    def nnz(self) -> int:
        """Stored entries of ``L`` (diagonal included)."""
        return int(self.lp[-1])

    def positions(self, flat: np.ndarray) -> np.ndarray:
        """Position in ``L``'s storage of each flat lower-triangle index (original
        order), which must lie on the pattern; cached for the arrays the system keeps
        (the Schur targets, ``G22``'s entries)."""
        return self._find("l", self.l_flat, flat)

    def a_positions(self, flat: np.ndarray) -> np.ndarray:
        """Position in ``A``'s storage (``ai``) of each flat lower-triangle index."""
        return self._find("a", self.a_flat, flat)

    def a_diagonal(self) -> np.ndarray:
        """Position in ``A``'s storage of each diagonal entry (cached)."""
        if "a_diag" not in self._lookup:
            self._lookup["a_diag"] = self.ap[1:] - 1  # the last row of a column is k
        return self._lookup["a_diag"]

    def _find(self, kind: str, keys_of: np.ndarray, flat: np.ndarray) -> np.ndarray:
        hit = self._lookup.get((kind, id(flat)))
        if hit is not None and hit[0] is flat:
            return hit[1]
        if kind not in self._lookup:
            order = np.argsort(keys_of, kind="stable")
            self._lookup[kind] = (keys_of[order], order)
        keys, order = self._lookup[kind]
        at = np.searchsorted(keys, flat)
        if at.size and (at.max() >= keys.size or np.any(keys[at] != flat)):
            raise ValueError("an entry off the sparse factor's pattern was asked for")
        pos = order[at]
        if isinstance(flat, np.ndarray) and flat.size > 64:
            self._lookup[(kind, id(flat))] = (flat, pos)
        return pos


class SparseSchurFactor:
    """``P A P' = L L'`` for the Schur complement ``A``, ``L`` sparse (see the module
    docstring). Stands where the dense path keeps its ``dpotrf`` factor:
    :func:`.factor.tri_solve` and :func:`.inverse.schur_inverse_lower` take either.
    ``L22`` of the dense formulas is ``P' L`` here, so ``c2 = L^{-1} P u`` and the
    products built from it (``c'c``, ``C^{-1}``) are the dense path's."""

    def __init__(self, pattern: SchurPattern, lx: np.ndarray):
        self.pattern = pattern
        self.lx = lx

    @property
    def shape(self) -> tuple[int, int]:
        return (self.pattern.n, self.pattern.n)

    def log_diagonal_sum(self) -> float:
        """``sum log diag L`` (``log|A| / 2``)."""
        return float(np.log(self.lx[self.pattern.lp[:-1]]).sum())

    def solve(self, b: np.ndarray, trans: bool) -> np.ndarray:
        """``L22^{-1} b`` or (``trans``) ``L22^{-T} b`` with ``L22 = P' L``."""
        from .sparse_loops import solve_lower, solve_upper

        pat = self.pattern
        b = np.asarray(b, dtype=float)
        vec = b.ndim == 1
        work = b.reshape(pat.n, -1)
        if trans:
            x = np.array(work, dtype=float, order="C")
            solve_upper(pat.n, pat.lp, pat.li, self.lx, x)
            out = np.empty_like(x)
            out[pat.perm] = x
        else:
            x = np.ascontiguousarray(work[pat.perm], dtype=float)
            solve_lower(pat.n, pat.lp, pat.li, self.lx, x)
            out = x
        return out.ravel() if vec else out

    def inverse_lower(self) -> PatternInverse:
        """``A^{-1}`` on the pattern of ``L`` (Takahashi's recurrence)."""
        from .sparse_loops import selected_inverse

        pat = self.pattern
        return PatternInverse(pat, selected_inverse(pat.n, pat.lp, pat.li, self.lx))


class PatternInverse:
    """``A^{-1}`` on the pattern of the sparse factor: read by the flat index (Fortran
    order) of a lower-triangle entry in the original order, as the dense path reads
    ``dpotri``'s lower triangle; only entries on the pattern exist (every entry
    the gradient, the modes' variances and ``P21`` need: the pattern of ``A``)."""

    def __init__(self, pattern: SchurPattern, values: np.ndarray):
        self.pattern = pattern
        self.values = values

    @property
    def shape(self) -> tuple[int, int]:
        return (self.pattern.n, self.pattern.n)

    def at_flat(self, flat: np.ndarray) -> np.ndarray:
        """Entries at flat lower-triangle indices (positions cached per index array)."""
        return self.values[self.pattern.positions(flat)]

    def dense_lower(self) -> np.ndarray:
        """A ``Q2 x Q2`` Fortran array with these entries in its lower triangle, zero
        elsewhere (``O(Q2^2)``: for the paths with several terms per level)."""
        n = self.pattern.n
        out = np.zeros((n, n), order="F")
        out.reshape(-1, order="F")[self.pattern.l_flat] = self.values
        return out


def factorize_sparse(pattern: SchurPattern, ax: np.ndarray) -> SparseSchurFactor:
    """Factor ``A`` given its entries on the pattern (order of ``pattern.ai``); raises
    ``LinAlgError`` when it is not positive definite."""
    from .sparse_loops import cholesky

    lx = np.zeros(pattern.nnz)
    bad = cholesky(pattern.n, pattern.ap, pattern.ai, ax, pattern.rp, pattern.rc,
                   pattern.lp, pattern.li, lx)
    if bad >= 0:
        raise np.linalg.LinAlgError(
            f"Schur complement is not positive definite (sparse pivot {bad})")
    return SparseSchurFactor(pattern, lx)


def _block_pattern(q2, row_block, n_blocks, rows, cols):
    """Symmetric block-level pattern (CSR, diagonal included) of the scalar entries."""
    bi, bj = row_block[rows], row_block[cols]
    diag = np.arange(n_blocks)
    data = np.ones(2 * bi.size + n_blocks)
    pat = sp.csr_matrix((data, (np.concatenate([bi, bj, diag]),
                                np.concatenate([bj, bi, diag]))), shape=(n_blocks, n_blocks))
    pat.sum_duplicates()
    pat.data[:] = 1.0
    return pat


def _upper_csc(block_pat, block_order, block_start, block_size, q2):
    """The scalar permuted upper triangle (CSC) of the block pattern in ``block_order``,
    with the flat index of each entry in the original lower triangle."""
    n_blocks = block_order.size
    perm = np.concatenate([block_start[b] + np.arange(block_size[b]) for b in block_order]) \
        if n_blocks else np.zeros(0, np.int64)
    new_of = np.empty(q2, np.int64)
    new_of[perm] = np.arange(q2)
    coo = block_pat.tocoo()
    rows_b, cols_b = coo.row, coo.col
    # expand each block pair to its scalar entries
    sr, sc = block_size[rows_b], block_size[cols_b]
    reps = sr * sc
    pair = np.repeat(np.arange(rows_b.size), reps)
    local = np.arange(int(reps.sum())) - np.repeat(np.cumsum(reps) - reps, reps)
    a, b = np.divmod(local, sc[pair])
    old_r = block_start[rows_b][pair] + a
    old_c = block_start[cols_b][pair] + b
    new_r, new_c = new_of[old_r], new_of[old_c]
    keep = new_r <= new_c  # upper triangle in the new order
    new_r, new_c, old_r, old_c = new_r[keep], new_c[keep], old_r[keep], old_c[keep]
    order = np.lexsort((new_r, new_c))
    new_r, new_c, old_r, old_c = new_r[order], new_c[order], old_r[order], old_c[order]
    ap = np.concatenate([[0], np.cumsum(np.bincount(new_c, minlength=q2))]).astype(np.int64)
    a_flat = np.maximum(old_r, old_c) + np.minimum(old_r, old_c) * q2
    return perm.astype(np.int64), ap, new_r.astype(np.int64), a_flat.astype(np.int64)


def _count(q2, ap, ai, budget):
    """Column and row counts of ``L`` (strictly lower) and the elimination tree, or
    None beyond ``budget``."""
    from .sparse_loops import column_counts, elimination_tree

    parent = elimination_tree(q2, ap, ai)
    counts, row_counts = column_counts(q2, ap, ai, parent, budget)
    if q2 and counts[0] < 0:
        return None
    return counts, row_counts, parent


def _flops(counts):
    c = counts.astype(float) + 1.0
    return float(np.sum(c * c))


def _mmd_order(block_pat):
    """SuperLU's multiple minimum degree order of a symmetric block pattern, or None.

    SuperLU orders the columns before it factors; its incomplete factorization with
    everything dropped (``spilu``, ``drop_tol`` huge, ``fill_factor`` 1) orders them
    the same way (checked on STAR and InstEval: the same ``perm_c`` as ``splu``)
    while its numeric work stays that of the pattern, whatever the fill would be.
    """
    from scipy.sparse.linalg import spilu

    n = block_pat.shape[0]
    degree = np.diff(block_pat.indptr).astype(float)
    a = block_pat.tocsc().astype(float)
    a.data[:] = -1.0
    a = a + sp.diags(degree + 1.0)  # diagonally dominant: no pivoting trouble
    try:
        lu = spilu(a.tocsc(), drop_tol=1e300, fill_factor=1.0,
                   permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                   options={"SymmetricMode": True})
    except RuntimeError:  # SuperLU gave up: keep the other orders
        return None
    order = np.empty(n, np.int64)
    order[lu.perm_c] = np.arange(n)  # perm_c: old -> new position
    return order


def analyse(q2: int, row_block: np.ndarray, block_start: np.ndarray,
            block_size: np.ndarray, rows: np.ndarray, cols: np.ndarray,
            force: bool = False) -> SchurPattern | None:
    """The sparse pattern of the Schur factorization, or None when dense is cheaper.

    Parameters
    ----------
    q2 : int
        Order of the dense part.
    row_block, block_start, block_size : ndarray
        Block (level of a later factor) of each row; first row and size of each block.
    rows, cols : ndarray
        Scalar nonzeros of ``A`` off the diagonal (either triangle), original order.
    force : bool
        Keep the sparse path whatever it costs (tests).
    """
    if q2 == 0 or (not force and q2 < SPARSE_MIN_SIZE):
        return None
    n_blocks = block_start.size
    block_pat = _block_pattern(q2, row_block, n_blocks, rows, cols)
    coo = block_pat.tocoo()
    scalar_nnz = float(np.sum(block_size[coo.row] * block_size[coo.col]))
    if not force and scalar_nnz > SPARSE_DENSITY_MAX * q2 * q2:
        return None
    dense_nnz = q2 * (q2 - 1) / 2.0
    dense_flops = q2 ** 3 / 3.0
    budget = int(dense_nnz) + 1 if force else int(MMD_FILL_MAX * dense_nnz)
    candidates = {"layout": np.arange(n_blocks)}
    if n_blocks > 1:
        from scipy.sparse.csgraph import reverse_cuthill_mckee

        candidates["rcm"] = np.asarray(
            reverse_cuthill_mckee(block_pat.tocsr(), symmetric_mode=True), dtype=np.int64)
    best = None
    for name, order in candidates.items():
        perm, ap, ai, a_flat = _upper_csc(block_pat, order, block_start, block_size, q2)
        found = _count(q2, ap, ai, budget)
        if found is None:
            continue
        flops = _flops(found[0])
        if best is None or flops < best[0]:
            best = (flops, name, perm, ap, ai, a_flat, found)
    order = _mmd_order(block_pat) if n_blocks > 1 else None
    if order is not None:
        perm, ap, ai, a_flat = _upper_csc(block_pat, order, block_start, block_size, q2)
        found = _count(q2, ap, ai, budget)
        if found is not None and (best is None or _flops(found[0]) < best[0]):
            best = (_flops(found[0]), "mmd", perm, ap, ai, a_flat, found)
    if best is None:
        return None
    flops, name, perm, ap, ai, a_flat, (counts, row_counts, parent) = best
    if not force and flops * SPARSE_PENALTY >= dense_flops:
        return None
    from .sparse_loops import factor_rows, row_patterns  # numba: only when sparse

    rp = np.concatenate([[0], np.cumsum(row_counts)]).astype(np.int64)
    rc = row_patterns(q2, ap, ai, parent, rp)
    lp = np.concatenate([[0], np.cumsum(counts + 1)]).astype(np.int64)
    li = factor_rows(q2, rp, rc, lp)
    col_of = np.repeat(np.arange(q2), np.diff(lp))
    old_r, old_c = perm[li], perm[col_of]
    l_flat = np.maximum(old_r, old_c) + np.minimum(old_r, old_c) * q2
    lower = coo.row >= coo.col
    return SchurPattern(q2, perm, ap, ai, a_flat, rp, rc, lp, li, l_flat.astype(np.int64),
                        flops, name, block_start.astype(np.int64),
                        (coo.row[lower].astype(np.int64), coo.col[lower].astype(np.int64)))
