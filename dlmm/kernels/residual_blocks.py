"""Blocks of groups whose cross-products are kept by residual component.

A residual model with parameters (a variance per stratum, AR(1) within groups;
:mod:`dlmm.objective.residual_structure`) makes every cross-product of a group a
weighted sum of components the one pass keeps apart: with coefficients ``c_k``,

    G_i(c) = Σ_k c_k G_{i,k},   H_i(c) = Σ_k c_k H_{i,k},   K(c) = Σ_k c_k K_k,

``G_{i,k} = Z_i' P_{i,k} Z_i``, ``H_{i,k} = Z_i' P_{i,k} [X y]_i`` and ``K_k`` the same sum
of ``[X y]`` over the data (``P_{i,k}`` a component of the precision: the rows of a
stratum, the first and last rows, pairs of consecutive rows). At given ``c`` a block
is a grouped engine's block (:meth:`ComponentBlock.at`). The likelihood's
derivatives along ``c_k`` take one more sweep over a block's groups: with
``M_i = Λ C_i⁻¹ Λ'`` and ``N_i = M_i H_i``, since ``hmh = Σ_i H_i' M_i H_i`` and
``dM_i = -M_i dG_i M_i``,

    ∂ Σ_i log|C_i| / ∂c_k = Σ_i tr(M_i G_{i,k})
    ∂ hmh / ∂c_k          = Σ_i (H_{i,k}' N_i + N_i' H_{i,k} - N_i' G_{i,k} N_i)

and, with ``S = K - hmh``, the direction ``dhmh_k = ∂hmh/∂c_k - K_k`` enters the one
gradient formula of every engine (:func:`dlmm.objective.profiled.direction_gradient`).
This module gives the per-block sums; ``K_k`` and the derivative of ``log|R|`` are
added on the driver. It knows nothing of where the blocks live, nor what the
components mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .block import StatsBlock, block_effects, block_pieces
from .layout import GroupBatch
from .moments import block_moment_pieces
from .pieces import LikelihoodPieces

#: Groups from which a block's derivatives along the components run the compiled loop
#: (:mod:`dlmm.kernels.residual_loops`); below, batched NumPy (its load would cost more).
COMPILED_MIN_GROUPS = 1_000


@dataclass(eq=False)
class ResidualPieces(LikelihoodPieces):
    """:class:`LikelihoodPieces` with the derivatives along the residual components'
    coefficients.

    Attributes
    ----------
    p_res : ndarray (K,)
        ``∂ log|V| / ∂c_k`` (the groups' part, ``Σ_i tr(M_i G_{i,k})``).
    t_res : ndarray (K, r, r)
        ``∂ hmh / ∂c_k - K_k`` (the block sums hold ``∂ hmh / ∂c_k``; the driver
        subtracts ``K_k``).
    """

    p_res: np.ndarray = None  # type: ignore[assignment]
    t_res: np.ndarray = None  # type: ignore[assignment]


@dataclass(eq=False)
class ComponentBlock:
    """Whole groups with their cross-products by residual component: what a worker keeps.

    Attributes
    ----------
    labels : ndarray (b,)
        Group labels, sorted.
    n : ndarray (b,)
        Rows of each group.
    g : ndarray (K, b, q, q)
        ``G_{i,k}`` (zero where a group has no part in component k).
    h : ndarray (K, b, q, r)
        ``H_{i,k}``.
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

    def at(self, coefficients: np.ndarray) -> StatsBlock:
        """The block of the combined cross-products ``G_i(c)``, ``H_i(c)`` (one batch,
        no variance components)."""
        b = self.n_groups
        if b == 0:
            return StatsBlock(self.labels, np.zeros(0), [])
        c = np.asarray(coefficients, dtype=float)
        return self.combined(np.tensordot(c, self.g, axes=1), np.tensordot(c, self.h, axes=1))

    def combined(self, g: np.ndarray, h: np.ndarray) -> StatsBlock:
        """The grouped block of given combined cross-products ``g`` (b, q, q), ``h``."""
        batch = GroupBatch(np.arange(self.n_groups), g, h, g.shape[1],
                           np.zeros(0, dtype=np.int64),
                           np.full((self.n_groups, 0), -1, dtype=np.int64))
        return StatsBlock(self.labels, self.n, [batch])

    def select_xy(self, keep: np.ndarray) -> ComponentBlock:
        """The block with only the ``keep`` columns of ``[X y]``."""
        keep = np.asarray(keep, dtype=bool)
        return ComponentBlock(self.labels, self.n, self.g, np.ascontiguousarray(self.h[..., keep]))


def component_block(labels: np.ndarray, n: np.ndarray, parts: list) -> ComponentBlock:
    """A :class:`ComponentBlock` of the groups ``labels`` (sorted, with ``n`` rows each)
    from each component's ``(labels_k, zz_k, zr_k)`` of whole groups (``labels_k``
    sorted, a subset of ``labels``; None for a component without a part here)."""
    b = labels.shape[0]
    first = next(p for p in parts if p is not None)
    q, r = first[2].shape[1], first[2].shape[2]
    g = np.zeros((len(parts), b, q, q))
    h = np.zeros((len(parts), b, q, r))
    for k, part in enumerate(parts):  # a handful of components
        if part is None:
            continue
        where = np.searchsorted(labels, part[0])
        g[k, where] += part[1]
        h[k, where] += part[2]
    return ComponentBlock(labels, n, g, h)


def group_solves(block: ComponentBlock, chol_re: np.ndarray, coefficients: np.ndarray):
    """``(G, H, M, N)`` of every group: the combined ``G = Σ_k c_k G_k`` (b, q, q) and
    ``H``, ``M = Λ C⁻¹ Λ'`` and ``N = M H``: one compiled sweep
    (:func:`dlmm.kernels.residual_loops.group_solves_loop`) from
    :data:`COMPILED_MIN_GROUPS` groups, else batched NumPy (:func:`numpy_solves`)."""
    n_comp, b, q, _ = block.g.shape
    r = block.h.shape[3]
    c = np.asarray(coefficients, dtype=float)
    lam = np.ascontiguousarray(chol_re, dtype=float)
    if b < COMPILED_MIN_GROUPS:
        return numpy_solves(block, lam, c)
    from .residual_loops import group_solves_loop

    out = (np.empty((b, q, q)), np.empty((b, q, r)), np.empty((b, q, q)), np.empty((b, q, r)))
    group_solves_loop(block.g, block.h, c, lam, *out)
    return out


def numpy_solves(block: ComponentBlock, lam: np.ndarray, c: np.ndarray):
    """:func:`group_solves` batched in NumPy (blocks of few groups, and the reference of
    the compiled loop)."""
    n_comp, b, q, _ = block.g.shape
    g = np.tensordot(c, block.g, axes=1)
    h = np.tensordot(c, block.h, axes=1)
    cm = lam.T @ g @ lam
    cm[:, np.arange(q), np.arange(q)] += 1.0
    t = np.linalg.cholesky(cm)
    x = np.linalg.solve(t, np.broadcast_to(lam.T, (b, q, q)))  # T⁻¹ Λ'
    m = np.swapaxes(x, 1, 2) @ x  # Λ C⁻¹ Λ'
    return g, h, m, m @ h


def _contract(block: ComponentBlock, m: np.ndarray, nm: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
    """The sums over the groups as BLAS products: ``tr(M G_k)`` of every component,
    ``Σ_i H_k'N``, and ``Σ_i N'G_k N`` through the outer products ``N[a,u] N[b,v]``."""
    n_comp, b, q, _ = block.g.shape
    r = nm.shape[2]
    # one product reads every G_k once: [vec M' | N[a,u] N[b,v]] over (group, a, b)
    right = np.empty((b, q, q, 1 + r * r))
    right[..., 0] = np.swapaxes(m, 1, 2)
    right[..., 1:] = (nm[:, :, None, :, None] * nm[:, None, :, None, :]).reshape(b, q, q, r * r)
    both = block.g.reshape(n_comp, b * q * q) @ right.reshape(b * q * q, 1 + r * r)
    hn = np.tensordot(block.h, nm, axes=([1, 2], [0, 1]))  # (K, r, r): Σ_i H_{i,k}' N_i
    ngn = both[:, 1:].reshape(n_comp, r, r)
    return both[:, 0], hn + np.swapaxes(hn, 1, 2) - ngn


def component_pieces(block: ComponentBlock, chol_re: np.ndarray, sd_vc: np.ndarray,
                     coefficients: np.ndarray) -> ResidualPieces | int:
    """The block's likelihood pieces at the coefficients (:func:`~dlmm.kernels.block.
    block_pieces` of the combined block) with the derivatives along them (the module
    docstring's sums: :func:`group_solves`, then BLAS products); 0 for a block without
    groups."""
    if block.n_groups == 0:
        return 0
    g, h, m, nm = group_solves(block, chol_re, coefficients)
    base = block_pieces(block.combined(g, h), chol_re, sd_vc)
    p_res, t_res = _contract(block, m, nm)
    return ResidualPieces(base.logdet, base.hmh, base.p_re, base.p_vc, base.t_re, base.t_vc,
                          base.n_groups, p_res, t_res)


def component_effects(block: ComponentBlock, chol_re: np.ndarray, sd_vc: np.ndarray,
                      coef: np.ndarray, scale: float, coefficients: np.ndarray):
    """:func:`~dlmm.kernels.block.block_effects` of the block at the coefficients."""
    return block_effects(block.at(coefficients), chol_re, sd_vc, coef, scale)


def component_moments(block: ComponentBlock, coef: np.ndarray, coefficients: np.ndarray):
    """:func:`~dlmm.kernels.moments.block_moment_pieces` of the block at the coefficients."""
    return block_moment_pieces(block.at(coefficients), coef)


def component_select(block: ComponentBlock, keep: np.ndarray) -> ComponentBlock:
    """:meth:`ComponentBlock.select_xy` as a function (to map over blocks)."""
    return block.select_xy(keep)
