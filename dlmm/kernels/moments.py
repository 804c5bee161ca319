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
    """

    lhs: np.ndarray
    g: np.ndarray
    design: np.ndarray


def batch_moment_pieces(batch: GroupBatch, coef: np.ndarray) -> MomentPieces:
    """Moment sums of one batch (see :class:`MomentPieces`)."""
    k_re = batch.k_re
    g = batch.g
    w = batch.h @ coef  # (b, q)
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
    wsum = np.einsum("ba,bc->ac", w, w)
    gtot = g.sum(axis=0)
    for e, (a, b) in enumerate(zip(rows, cols)):  # loop over equations
        lhs[e] = wsum[a, b]
        gsum[e] = gtot[a, b]
    for k, idx in enumerate(blocks):
        lhs[rows.shape[0] + k] = np.trace(wsum[np.ix_(idx, idx)])
        gsum[rows.shape[0] + k] = np.trace(gtot[np.ix_(idx, idx)])
    for j, pj in enumerate(pairs):  # loop over parameters
        gejg = sum(np.einsum("bx,by->xy", g[:, :, u], g[:, v, :]) for u, v in pj)
        for e, (a, b) in enumerate(zip(rows, cols)):
            design[e, j] = gejg[a, b]
        for k, idx in enumerate(blocks):
            design[rows.shape[0] + k, j] = np.trace(gejg[np.ix_(idx, idx)])
    return MomentPieces(lhs, gsum, design)


def block_moment_pieces(block, coef: np.ndarray):
    """Sum of :func:`batch_moment_pieces` over a block's batches (0 if empty)."""
    return sum_over_batches(block, batch_moment_pieces, coef)
