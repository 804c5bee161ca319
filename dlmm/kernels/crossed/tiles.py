"""The crossed system with its dense part held by tiles: the tile kernels (no Dask).

For random intercepts only (every factor one term), with the layout of
:mod:`.system` (factor 1 the largest, ``Q2`` rows of the others) the dense part is

    A = I + Theta (G22 - G21 diag(m) G21') Theta,   m_l = theta_1^2 / C11_l,
    C11_l = 1 + theta_1^2 d_l,  Theta = diag(theta_k(i)) over the dense rows,

and with ``X = G22 - G21 diag(m) G21'``:

    log|C|  = sum_l log C11_l + log|A|
    c'c     = H1' diag(m) H1 + u2' A^{-1} u2,     u2 = Theta (H2 - G21 diag(m) H1)
    d log|C| / d theta_1 = sum_l 2 theta_1 d_l / C11_l - <A^{-1}, Theta G21 diag(dm) G21' Theta>
                           (dm_l = 2 theta_1 / C11_l^2)
    d log|C| / d theta_k = 2 sum_{i in k} sum_j A^{-1}_ij X_ij theta_k(j)        (k >= 2)

and the derivatives of ``c'c`` need ``b2 = A^{-1} u2`` only (the back substitution of
:func:`.modes.back_solve`, here on vectors: :func:`gradient_ctc`). No ``theta^{-1}``
appears: all of it holds on the boundary.

:class:`TiledSystem` is what the driver keeps: everything of the system but the dense
``Q2 x Q2`` part (per level, per level pair: ``G21``, ``G22``'s nonzeros off its
diagonal, ``H``), split by tile rows (:class:`RowBlock`, :func:`tile_entries`) for
the workers. A tile ``(I, J)``, ``I >= J``, of ``A`` is made on a worker from its two
row blocks (:func:`schur_tile`: a sparse product ``G21_I diag(m) G21_J'``, the Schur
update's pairs of that tile); the factor, solves and inverse are the generic tiles of
:mod:`dlmm.kernels.dense_tiles`; the trace terms of the gradient are contracted tile
by tile where ``A^{-1}``'s tiles are (:func:`gradient_tile`) and the diagonal blocks
of ``C^{-1}`` for the conditional variances likewise (:func:`variance_tile`), so only
vectors and scalars reach the driver.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp

from .counts import _pair_blocks, factor_order
from .sums import CrossedSums

#: Most levels of the first factor whose columns one step of :func:`variance_tile`
#: holds dense (times the tile's rows).
VARIANCE_LEVEL_CHUNK = 2048


class NotTileable(ValueError):
    """A design the tiled path does not take (a factor with several terms)."""


@dataclass(eq=False)
class TiledSystem:
    """The blocked system without its dense part (intercepts only).

    Attributes
    ----------
    n_levels : list of int
        Per factor, in the caller's order.
    order : list of int
        Factor indices, the largest first (:func:`.system.factor_order`).
    rest_offsets : list of int
        Offset of each factor ``order[1:]`` in the dense part.
    d : ndarray (l_1, 1, 1)
        Rows (weights) per level of the first factor.
    h1 : ndarray (l_1, 1, r)
        ``Z_1'[X y]``.
    h2 : ndarray (Q2, r)
        ``Z_2'[X y]``.
    g21 : scipy.sparse.csr_matrix (Q2, l_1)
        ``Z_2'Z_1``.
    g22_diag : ndarray (Q2,)
        The diagonal of ``G22`` (rows per level of the later factors).
    g22_off : scipy.sparse.csr_matrix (Q2, Q2)
        ``G22`` off its diagonal (the level pairs among the later factors; both
        triangles).
    owner : ndarray (Q2,) int64
        Each dense row's factor, as a position in :attr:`rest`.
    xy_cross : ndarray (r, r)
    n_rows : float
    """

    n_levels: list
    order: list
    rest_offsets: list
    d: np.ndarray
    h1: np.ndarray
    h2: np.ndarray
    g21: sp.csr_matrix
    g22_diag: np.ndarray
    g22_off: sp.csr_matrix
    owner: np.ndarray
    xy_cross: np.ndarray
    n_rows: float

    @property
    def n_terms(self) -> list:
        return [1] * len(self.n_levels)

    @property
    def first(self) -> int:
        return self.order[0]

    @property
    def rest(self) -> list:
        return self.order[1:]

    @property
    def dense_size(self) -> int:
        return int(self.h2.shape[0])

    @property
    def n_columns(self) -> int:
        return int(self.xy_cross.shape[0])

    @property
    def g22(self) -> np.ndarray:
        """A read-only ``Q2 x Q2`` view whose diagonal is ``G22``'s (no memory: a
        broadcast of the diagonal, for :func:`.theta.moment_theta`, which reads only
        the diagonal)."""
        return np.broadcast_to(self.g22_diag[:, None], (self.dense_size, self.dense_size))

    def rest_theta(self, theta: np.ndarray) -> np.ndarray:
        """``theta_k`` of each factor of the dense part."""
        return np.asarray(theta, dtype=float)[self.rest]


def tiled_system(sums: CrossedSums) -> TiledSystem:
    """The :class:`TiledSystem` of reduced sums (once per fit; ``O`` of the level pairs).

    Raises :class:`NotTileable` when a factor has several terms.
    """
    if any(t != 1 for t in sums.n_terms):
        raise NotTileable("random slopes on a crossed factor")
    n_levels = list(sums.n_levels)
    order = factor_order(n_levels, sums.n_terms)
    first, rest = order[0], order[1:]
    offsets, q2 = [], 0
    for k in rest:
        offsets.append(q2)
        q2 += n_levels[k]
    off_of = dict(zip(rest, offsets))
    r = sums.n_columns
    g22_diag = np.concatenate([sums.zz[k][:, 0, 0] for k in rest]) if rest else np.zeros(0)
    h2 = np.concatenate([sums.zxy[k][:, 0, :] for k in rest]) if rest else np.zeros((0, r))
    owner = np.repeat(np.arange(len(rest)), [n_levels[k] for k in rest]).astype(np.int64)
    rows, cols, vals = [], [], []
    for a, j in enumerate(rest):
        for k in rest[a + 1:]:
            lj, lk, v = _pair_blocks(sums, j, k)
            ri, ci = off_of[j] + lj, off_of[k] + lk
            rows += [ri, ci]
            cols += [ci, ri]
            vals += [v[:, 0, 0], v[:, 0, 0]]
    g22_off = sp.csr_matrix(
        (np.concatenate(vals) if vals else np.zeros(0),
         (np.concatenate(rows) if rows else np.zeros(0, np.int64),
          np.concatenate(cols) if cols else np.zeros(0, np.int64))), shape=(q2, q2))
    g_rows, g_cols, g_vals = [], [], []
    for k in rest:
        lk, l_first, v = _pair_blocks(sums, k, first)
        g_rows.append(off_of[k] + lk)
        g_cols.append(l_first)
        g_vals.append(v[:, 0, 0])
    l1 = n_levels[first]
    g21 = sp.csr_matrix(
        (np.concatenate(g_vals) if g_vals else np.zeros(0),
         (np.concatenate(g_rows) if g_rows else np.zeros(0, np.int64),
          np.concatenate(g_cols) if g_cols else np.zeros(0, np.int64))), shape=(q2, l1))
    return TiledSystem(
        n_levels=n_levels, order=order, rest_offsets=offsets,
        d=np.array(sums.zz[first]), h1=np.array(sums.zxy[first]), h2=h2, g21=g21,
        g22_diag=g22_diag, g22_off=g22_off, owner=owner,
        xy_cross=np.array(sums.xy_cross), n_rows=float(sums.n_rows))


def select_tiled_columns(system: TiledSystem, keep: np.ndarray) -> TiledSystem:
    """The same system with only the ``keep`` columns of ``[X y]``."""
    keep = np.asarray(keep, dtype=bool)
    return replace(system, h1=np.ascontiguousarray(system.h1[:, :, keep]),
                   h2=np.ascontiguousarray(system.h2[:, keep]),
                   xy_cross=np.ascontiguousarray(system.xy_cross[np.ix_(keep, keep)]))


@dataclass(eq=False)
class RowBlock:
    """What a worker keeps of one tile row ``I`` of the dense part.

    Attributes
    ----------
    start : int
        First dense row of the block.
    g21 : scipy.sparse.csr_matrix (b, l_1)
        ``G21``'s rows of the block.
    g21_t : scipy.sparse.csr_matrix (l_1, b)
        Their transpose.
    g22_diag : ndarray (b,)
    owner : ndarray (b,) int64
    """

    start: int
    g21: sp.csr_matrix
    g21_t: sp.csr_matrix
    g22_diag: np.ndarray
    owner: np.ndarray

    @property
    def size(self) -> int:
        return int(self.g22_diag.size)


def row_block(system: TiledSystem, lo: int, hi: int) -> RowBlock:
    """The :class:`RowBlock` of dense rows ``lo:hi``."""
    g = system.g21[lo:hi]
    return RowBlock(lo, g, g.T.tocsr(), system.g22_diag[lo:hi].copy(),
                    system.owner[lo:hi].copy())


@dataclass(eq=False)
class TileEntries:
    """``G22``'s off-diagonal nonzeros in one tile: local rows, columns and values."""

    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray


def tile_entries(system: TiledSystem, rows: slice, cols: slice) -> TileEntries | None:
    """``G22``'s off-diagonal nonzeros in the tile ``rows x cols``, or None when it has
    none."""
    block = system.g22_off[rows][:, cols].tocoo()
    if block.nnz == 0:
        return None
    return TileEntries(block.row.astype(np.int64), block.col.astype(np.int64),
                       block.data.copy())


@dataclass(frozen=True)
class TileParams:
    """What the tiles need of one theta: ``m``, ``dm`` per level of the first factor and
    ``theta_k`` per factor of the dense part."""

    m: np.ndarray
    dm: np.ndarray
    rest_theta: np.ndarray


@dataclass(eq=False)
class FirstFactor:
    """The first factor's part of one evaluation (driver, ``O(l_1 r^2)``).

    Attributes
    ----------
    c11, k1, m, dm : ndarray (l_1,)
        ``C11_l``, ``K1_l = theta_1 / C11_l``, ``m_l = theta_1 K1_l`` and
        ``dm_l = d m_l / d theta_1``.
    logdet : float
        ``sum_l log C11_l``.
    ctc : ndarray (r, r)
        ``H1' diag(m) H1``.
    u2 : ndarray (Q2, r)
        ``Theta (H2 - G21 diag(m) H1)``.
    """

    c11: np.ndarray
    k1: np.ndarray
    m: np.ndarray
    dm: np.ndarray
    logdet: float
    ctc: np.ndarray
    u2: np.ndarray

    def params(self, system: TiledSystem, theta: np.ndarray) -> TileParams:
        return TileParams(self.m, self.dm, system.rest_theta(theta))


def first_factor(system: TiledSystem, theta: np.ndarray) -> FirstFactor:
    """The :class:`FirstFactor` at ``theta`` (caller's factor order)."""
    theta = np.asarray(theta, dtype=float).ravel()
    th1 = float(theta[system.first])
    d = system.d[:, 0, 0]
    h1 = system.h1[:, 0, :]
    c11 = 1.0 + th1 * th1 * d
    k1 = th1 / c11
    m = th1 * k1
    dm = 2.0 * th1 / (c11 * c11)
    ctc = h1.T @ (m[:, None] * h1)
    u2 = system.h2 - system.g21 @ (m[:, None] * h1)
    u2 *= system.rest_theta(theta)[system.owner][:, None]
    return FirstFactor(c11, k1, m, dm, float(np.log(c11).sum()), 0.5 * (ctc + ctc.T), u2)


def _pair_product(bi: RowBlock, bj: RowBlock, weights: np.ndarray) -> sp.csr_matrix:
    """``G21_I diag(weights) G21_J'`` (the pairs of the Schur update in the tile)."""
    return (bi.g21 @ sp.diags(weights, format="csr")) @ bj.g21_t


def _x_tile(bi: RowBlock, bj: RowBlock, g22: TileEntries | None, m: np.ndarray) -> np.ndarray:
    """``X[I, J] = G22[I, J] - G21_I diag(m) G21_J'`` (dense, Fortran order)."""
    x = np.asfortranarray(-_pair_product(bi, bj, m).toarray())
    if g22 is not None:
        x[g22.rows, g22.cols] += g22.values
    if bi.start == bj.start:
        x[np.arange(bi.size), np.arange(bi.size)] += bi.g22_diag
    return x


def schur_tile(bi: RowBlock, bj: RowBlock, g22: TileEntries | None,
               params: TileParams) -> np.ndarray:
    """The tile ``A[I, J]`` (``I >= J``; a diagonal tile whole, symmetric)."""
    x = _x_tile(bi, bj, g22, params.m)
    x *= params.rest_theta[bi.owner][:, None]
    x *= params.rest_theta[bj.owner][None, :]
    if bi.start == bj.start:
        x[np.arange(bi.size), np.arange(bi.size)] += 1.0
    return x


def gradient_tile(ainv: np.ndarray, bi: RowBlock, bj: RowBlock, g22: TileEntries | None,
                  params: TileParams) -> np.ndarray:
    """A tile's share of the trace terms of ``d log|C|``: ``[t_1, r_1, ..., r_K]`` with
    ``t_1 = <A^{-1}, Theta G21 diag(dm) G21' Theta>`` and ``r_k = sum_{i in k} sum_j
    A^{-1}_ij X_ij theta(j)`` over the tile and its mirror above the diagonal."""
    s_i = params.rest_theta[bi.owner]
    s_j = params.rest_theta[bj.owner]
    n_rest = params.rest_theta.size
    diagonal = bi.start == bj.start
    p = ainv * _x_tile(bi, bj, g22, params.m)
    per_factor = np.bincount(bi.owner, weights=p @ s_j, minlength=n_rest)
    if not diagonal:
        per_factor += np.bincount(bj.owner, weights=p.T @ s_i, minlength=n_rest)
    pairs = _pair_product(bi, bj, params.dm).tocoo()
    t1 = float(np.sum(pairs.data * ainv[pairs.row, pairs.col] * s_i[pairs.row]
                      * s_j[pairs.col]))
    return np.concatenate([[t1 if diagonal else 2.0 * t1], per_factor])


def variance_tile(ainv: np.ndarray, bi: RowBlock, bj: RowBlock, n_weights: np.ndarray,
                  rest_theta: np.ndarray) -> np.ndarray:
    """A tile's share of ``diag(N' A^{-1} N)`` per level of the first factor (with its
    mirror), ``N = Theta G21 diag(n_weights)`` (``n_weights = K1``): the part of the
    diagonal of ``C^{-1}`` on the first factor beyond ``C11^{-1}``."""
    n_i = (sp.diags(rest_theta[bi.owner]) @ bi.g21 @ sp.diags(n_weights)).tocsc()
    n_j = (sp.diags(rest_theta[bj.owner]) @ bj.g21 @ sp.diags(n_weights)).tocsc()
    levels = np.intersect1d(np.flatnonzero(np.diff(n_i.indptr)),
                            np.flatnonzero(np.diff(n_j.indptr)))
    out = np.zeros(n_weights.size)
    for lo in range(0, levels.size, VARIANCE_LEVEL_CHUNK):
        chunk = levels[lo:lo + VARIANCE_LEVEL_CHUNK]
        right = ainv @ n_j[:, chunk].toarray()  # (b_I, chunk)
        out[chunk] = np.asarray(n_i[:, chunk].multiply(right).sum(axis=0)).ravel()
    return out if bi.start == bj.start else 2.0 * out


def logdet_gradient(system: TiledSystem, theta: np.ndarray, first: FirstFactor,
                    traces: np.ndarray) -> np.ndarray:
    """``d log|C| / d theta`` (caller's order) from the summed :func:`gradient_tile`."""
    theta = np.asarray(theta, dtype=float).ravel()
    th1 = float(theta[system.first])
    out = np.zeros(len(system.n_levels))
    out[system.first] = float(np.sum(2.0 * th1 * system.d[:, 0, 0] / first.c11)) - traces[0]
    for j, k in enumerate(system.rest):
        out[k] = 2.0 * traces[1 + j]
    return out


@dataclass(eq=False)
class TiledSolve:
    """``B = C^{-1} Lambda'H`` from ``b2 = A^{-1} u2`` (:func:`.modes.back_solve` on
    vectors): ``b1``, ``bt1`` (l_1, s) and ``bt2`` (Q2, s), ``g1 = G21' bt2``."""

    b1: np.ndarray
    bt1: np.ndarray
    bt2: np.ndarray
    g1: np.ndarray


def back_solve_tiled(system: TiledSystem, theta: np.ndarray, first: FirstFactor,
                     b2: np.ndarray, h1: np.ndarray) -> TiledSolve:
    """``B2 = b2``, ``B1 = K1 (H1 - G21' Theta B2)``, and ``Lambda B``."""
    theta = np.asarray(theta, dtype=float).ravel()
    bt2 = b2 * system.rest_theta(theta)[system.owner][:, None]
    g1 = system.g21.T @ bt2
    b1 = first.k1[:, None] * (h1 - g1)
    return TiledSolve(b1, float(theta[system.first]) * b1, bt2, g1)


def gradient_ctc(system: TiledSystem, theta: np.ndarray, first: FirstFactor,
                 b2: np.ndarray) -> np.ndarray:
    """``d (c'c) / d theta`` (caller's order, ``(K, r, r)``) from ``b2 = A^{-1} u2``."""
    h1 = system.h1[:, 0, :]
    sol = back_solve_tiled(system, theta, first, b2, h1)
    r1 = h1 - system.d[:, 0, 0][:, None] * sol.bt1 - sol.g1
    r2 = (system.h2 - system.g21 @ sol.bt1 - system.g22_diag[:, None] * sol.bt2
          - system.g22_off @ sol.bt2)
    out = np.zeros((len(system.n_levels), system.n_columns, system.n_columns))
    quad = r1.T @ sol.b1
    out[system.first] = quad + quad.T
    for j, k in enumerate(system.rest):
        rows = system.owner == j
        quad = r2[rows].T @ b2[rows]
        out[k] = quad + quad.T
    return out
