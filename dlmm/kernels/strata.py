"""A residual variance per stratum: each group's cross-products kept by stratum.

Rows of stratum ``s`` have the residual variance ``σ² / w_s`` (nlme's ``varIdent``:
``w_s = 1 / δ_s²``). Scaling a row by ``√w_s`` makes the model one of a single
residual variance, so with ``G_{i,s} = A_{i,s}' A_{i,s}``, ``H_{i,s} = A_{i,s}'[X y]_{i,s}``
and ``K_s = [X y]_s'[X y]_s`` summed over the rows of stratum ``s`` (the one pass
keeps them apart), every quantity of the grouped engine at the weights ``w`` is a
weighted sum:

    G_i(w) = Σ_s w_s G_{i,s},   H_i(w) = Σ_s w_s H_{i,s},   K(w) = Σ_s w_s K_s,
    log|V| = Σ_i log|C_i(w)| - Σ_s n_s log w_s.

The likelihood's derivatives along ``w_s`` then take one more sweep over a block's
groups. With ``M_i = Λ C_i⁻¹ Λ'`` and ``N_i = M_i H_i``, since ``hmh = Σ_i H_i' M_i H_i``
and ``dM_i = -M_i dG_i M_i``:

    ∂ log|V| / ∂w_s = Σ_i tr(M_i G_{i,s}) - n_s / w_s
    ∂ hmh / ∂w_s    = Σ_i (H_{i,s}' N_i + N_i' H_{i,s} - N_i' G_{i,s} N_i)

and, with ``S = K - hmh``, the direction ``dhmh_s = ∂hmh/∂w_s - K_s`` enters the one
gradient formula of every engine (:func:`dlmm.objective.profiled.direction_gradient`).
This module gives the per-block sums; the terms of the totals (``n_s``, ``K_s``) are
added on the driver (:mod:`dlmm.structure.stratified`). It knows nothing of where the
blocks live.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .block import StatsBlock, block_effects, block_pieces
from .layout import GroupBatch
from .moments import block_moment_pieces
from .pieces import LikelihoodPieces


@dataclass(eq=False)
class ResidualPieces(LikelihoodPieces):
    """:class:`LikelihoodPieces` with the derivatives along the strata's weights.

    Attributes
    ----------
    p_res : ndarray (S,)
        ``∂ log|V| / ∂w_s`` (the block sums; the driver adds ``-n_s / w_s``).
    t_res : ndarray (S, r, r)
        ``∂ hmh / ∂w_s`` (the block sums; the driver adds ``-K_s``).
    """

    p_res: np.ndarray = None  # type: ignore[assignment]
    t_res: np.ndarray = None  # type: ignore[assignment]


@dataclass(eq=False)
class StratifiedBlock:
    """Whole groups with their cross-products per stratum: what a worker keeps.

    Attributes
    ----------
    labels : ndarray (b,)
        Group labels, sorted.
    n : ndarray (S, b)
        Rows of each group in each stratum.
    g : ndarray (S, b, q, q)
        ``G_{i,s}`` (zero where group i has no row in stratum s).
    h : ndarray (S, b, q, r)
        ``H_{i,s}``.
    """

    labels: np.ndarray
    n: np.ndarray
    g: np.ndarray
    h: np.ndarray

    @property
    def n_groups(self) -> int:
        return int(self.labels.shape[0])

    @property
    def nbytes(self) -> int:
        return int(self.labels.nbytes + self.n.nbytes + self.g.nbytes + self.h.nbytes)

    def at(self, weights: np.ndarray) -> StatsBlock:
        """The block of the weighted cross-products ``G_i(w)``, ``H_i(w)`` (one batch,
        no variance components)."""
        b = self.n_groups
        if b == 0:
            return StatsBlock(self.labels, np.zeros(0), [])
        w = np.asarray(weights, dtype=float)
        g = np.tensordot(w, self.g, axes=1)
        h = np.tensordot(w, self.h, axes=1)
        batch = GroupBatch(np.arange(b), g, h, g.shape[1], np.zeros(0, dtype=np.int64),
                           np.full((b, 0), -1, dtype=np.int64))
        return StatsBlock(self.labels, self.n.sum(axis=0), [batch])

    def select_xy(self, keep: np.ndarray) -> StratifiedBlock:
        """The block with only the ``keep`` columns of ``[X y]``."""
        keep = np.asarray(keep, dtype=bool)
        return StratifiedBlock(self.labels, self.n, self.g,
                               np.ascontiguousarray(self.h[..., keep]))


def stratified_block(labels: np.ndarray, by_stratum: list) -> StratifiedBlock:
    """A :class:`StratifiedBlock` of the groups ``labels`` (sorted) from each stratum's
    ``(labels_s, n_s, zz_s, zr_s)`` of whole groups (``labels_s`` sorted, a subset of
    ``labels``; None for a stratum without rows in these groups)."""
    b = labels.shape[0]
    first = next(p for p in by_stratum if p is not None)
    q, r = first[3].shape[1], first[3].shape[2]
    n_strata = len(by_stratum)
    n = np.zeros((n_strata, b))
    g = np.zeros((n_strata, b, q, q))
    h = np.zeros((n_strata, b, q, r))
    for s, part in enumerate(by_stratum):  # a handful of strata
        if part is None:
            continue
        where = np.searchsorted(labels, part[0])
        n[s, where] = part[1]
        g[s, where] = part[2]
        h[s, where] = part[3]
    return StratifiedBlock(labels, n, g, h)


def weight_directions(block: StratifiedBlock, chol_re: np.ndarray,
                      weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(Σ_i tr(M_i G_{i,s}), Σ_i (H_{i,s}' N_i + N_i' H_{i,s} - N_i' G_{i,s} N_i))`` for
    every stratum (see the module docstring), batched over the block's groups.

    Parameters
    ----------
    block : StratifiedBlock
    chol_re : ndarray (q, q)
        Lower-triangular ``Λ`` (may be singular).
    weights : ndarray (S,)
    """
    n_strata, b, q, _ = block.g.shape
    r = block.h.shape[3]
    if b == 0:
        return np.zeros(n_strata), np.zeros((n_strata, r, r))
    w = np.asarray(weights, dtype=float)
    lam = np.asarray(chol_re, dtype=float)
    g = np.tensordot(w, block.g, axes=1)
    h = np.tensordot(w, block.h, axes=1)
    c = lam.T @ g @ lam
    c[:, np.arange(q), np.arange(q)] += 1.0
    t = np.linalg.cholesky(c)
    x = np.linalg.solve(t, np.broadcast_to(lam.T, (b, q, q)))  # T⁻¹ Λ'
    m = np.swapaxes(x, 1, 2) @ x  # Λ C⁻¹ Λ'
    nm = m @ h  # (b, q, r)
    p_res = np.einsum("bij,sbji->s", m, block.g)
    hn = np.einsum("sbia,bic->sac", block.h, nm)
    t_res = hn + np.swapaxes(hn, 1, 2) - np.einsum("bia,sbij,bjc->sac", nm, block.g, nm)
    return p_res, t_res


def stratified_pieces(block: StratifiedBlock, chol_re: np.ndarray, sd_vc: np.ndarray,
                      weights: np.ndarray) -> ResidualPieces | int:
    """The block's likelihood pieces at the weights (:func:`~dlmm.kernels.block.
    block_pieces` of :meth:`StratifiedBlock.at`) with the derivatives along them
    (:func:`weight_directions`); 0 for a block without groups."""
    if block.n_groups == 0:
        return 0
    base = block_pieces(block.at(weights), chol_re, sd_vc)
    p_res, t_res = weight_directions(block, chol_re, weights)
    return ResidualPieces(base.logdet, base.hmh, base.p_re, base.p_vc, base.t_re, base.t_vc,
                          base.n_groups, p_res, t_res)


def stratified_effects(block: StratifiedBlock, chol_re: np.ndarray, sd_vc: np.ndarray,
                       coef: np.ndarray, scale: float, weights: np.ndarray):
    """:func:`~dlmm.kernels.block.block_effects` of the block at the weights."""
    return block_effects(block.at(weights), chol_re, sd_vc, coef, scale)


def stratified_moments(block: StratifiedBlock, coef: np.ndarray, weights: np.ndarray):
    """:func:`~dlmm.kernels.moments.block_moment_pieces` of the block at the weights."""
    return block_moment_pieces(block.at(weights), coef)


def stratified_select(block: StratifiedBlock, keep: np.ndarray) -> StratifiedBlock:
    """:meth:`StratifiedBlock.select_xy` as a function (to map over blocks)."""
    return block.select_xy(keep)
