"""Moment sums for start values: what the method-of-moments estimator needs.

With OLS residuals ``r_i`` and ``w_i = A_i' r_i`` of group i,
``E[w_i w_i'] ~ scale (G_i B G_i + G_i)``: linear in the covariance
parameters, so sums over groups of both sides give least-squares equations
for start values (solved on the driver by :mod:`dlmm.objective.start`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .block import sum_over_batches
from .hessian import direction_pairs
from .layout import GroupBatch
from .pieces import _Additive


@dataclass(eq=False)
class MomentPieces(_Additive):
    """Group sums for moment-based start values (see :func:`block_moment_pieces`).

    With ``w_i = A_i' r_i`` for the OLS residuals ``r_i = [X_i y_i] c``,
    ``E[w_i w_i'] ~ scale (G_i B G_i + G_i)``; these are the sums of both sides
    over the equations used: the entries (a >= b) of the standard random-effect
    block, then the trace of each component's block.

    Attributes
    ----------
    lhs : ndarray (e,)
        ``sum_i (w_i w_i')`` per equation.
    g : ndarray (e,)
        ``sum_i G_i`` per equation.
    design : ndarray (e, m)
        ``sum_i (G_i E_j G_i)`` per equation and parameter.
    explained : float
        ``sum_i w_i' G_i^+ w_i``: the part of the OLS residuals' sum of squares in the
        span of each group's random-effect columns (what a fit of a free effect per
        group would remove).
    rank : float
        ``sum_i rank(G_i)``: the degrees of freedom those free effects would take.
    """

    lhs: np.ndarray
    g: np.ndarray
    design: np.ndarray
    explained: float = 0.0
    rank: float = 0.0


#: A pivot of :func:`explained_squares` at most this times its column's squared norm
#: is zero: the column is in the span of the ones before it (rounding leaves about
#: 1e-16 of it).
PIVOT_TOL = 1e-8


def explained_squares(g: np.ndarray, w: np.ndarray) -> tuple[float, int]:
    """``sum_i w_i' G_i^+ w_i`` and ``sum_i rank(G_i)`` over a stack of ``G`` (b, q, q)
    (positive semidefinite) and ``w`` (b, q) in the range of each ``G_i``.

    Symmetric elimination of all the groups at once, a column at a time: with the
    pivots ``d_j`` of ``G_i = L D L'``, ``w'G^+w = sum_j (L^{-1} w)_j^2 / d_j`` over the
    nonzero pivots (:data:`PIVOT_TOL`); a zero pivot is a column dependent on the ones
    before it, left out of both sums (padded component columns, a slope constant
    within its group, a group of one row).
    """
    q = w.shape[1]
    a = np.asarray(g, dtype=float)  # the trailing block still to eliminate
    v = np.asarray(w, dtype=float)
    norms = np.diagonal(a, axis1=1, axis2=2)
    explained, rank = 0.0, 0
    for j in range(q):  # loop over columns
        d = a[:, 0, 0]
        ok = d > PIVOT_TOL * norms[:, j]
        d = np.where(ok, d, np.inf)  # a zero pivot: its column and row drop out
        explained += float(np.sum(v[:, 0] ** 2 / d))
        rank += int(np.count_nonzero(ok))
        if j + 1 < q:
            f = a[:, 1:, 0] / d[:, None]
            v = v[:, 1:] - f * v[:, :1]
            a = a[:, 1:, 1:] - f[:, :, None] * a[:, None, 0, 1:]
    return explained, rank


def batch_moment_pieces(batch: GroupBatch, coef: np.ndarray) -> MomentPieces:
    """Moment sums of one batch (see :class:`MomentPieces`).

    Every sum over the batch's ``b`` groups is one matrix product (BLAS):
    ``w = H c`` as ``(b q, r) @ (r,)``, ``sum_i w_i w_i' = W'W``, ``sum_i G_i`` as
    ``1' (b, q q)`` and, for a direction ``E_j = sum e_u e_v'``,
    ``sum_i G_i E_j G_i = sum_(u, v) G[:, :, u]' G[:, v, :]``; a batched
    ``(b, q, r) @ (r,)`` (NumPy's loop per group) cost a step's time.
    """
    k_re = batch.k_re
    b, q, r = batch.h.shape
    g = np.ascontiguousarray(batch.g, dtype=float)
    w = (np.ascontiguousarray(batch.h, dtype=float).reshape(b * q, r) @ coef).reshape(b, q)
    pairs = direction_pairs(k_re, batch.widths)
    rows, cols = np.tril_indices(k_re)
    blocks = []
    start = k_re
    for width in batch.widths:
        blocks.append(np.arange(start, start + int(width)))
        start += int(width)
    n_eq = rows.shape[0] + len(blocks)
    lhs = np.zeros(n_eq)
    gsum = np.zeros(n_eq)
    design = np.zeros((n_eq, len(pairs)))
    wsum = w.T @ w
    gtot = (np.ones(b) @ g.reshape(b, q * q)).reshape(q, q)
    for e, (a, c) in enumerate(zip(rows, cols)):  # loop over equations
        lhs[e] = wsum[a, c]
        gsum[e] = gtot[a, c]
    for k, idx in enumerate(blocks):
        lhs[rows.shape[0] + k] = np.trace(wsum[np.ix_(idx, idx)])
        gsum[rows.shape[0] + k] = np.trace(gtot[np.ix_(idx, idx)])
    for j, pj in enumerate(pairs):  # loop over parameters
        gejg = sum(g[:, :, u].T @ g[:, v, :] for u, v in pj)
        for e, (a, c) in enumerate(zip(rows, cols)):
            design[e, j] = gejg[a, c]
        for k, idx in enumerate(blocks):
            design[rows.shape[0] + k, j] = np.trace(gejg[np.ix_(idx, idx)])
    explained, rank = explained_squares(g, w)
    return MomentPieces(lhs, gsum, design, explained, float(rank))


def block_moment_pieces(block, coef: np.ndarray):
    """Sum of :func:`batch_moment_pieces` over a block's batches (0 if empty)."""
    return sum_over_batches(block, batch_moment_pieces, coef)
