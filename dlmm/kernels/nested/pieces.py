"""The nested engine's likelihood pieces: ``log|C|``, ``hmh`` and their derivatives.

For a block of whole outer groups, ``G = Z'Z``, ``H = Z'[X y]``, ``Lambda`` block
diagonal (``Lambda_l`` on every node of level ``l``), ``C = I + Lambda'G Lambda`` and
``M = C^{-1}`` (:mod:`.factor`, :mod:`.inverse`)::

    logdet = log|C| = log|V|,     hmh = H'Lambda M Lambda'H,     S = K - hmh

A parameter ``theta_j`` moves ``Lambda_l`` by ``D_j = d Lambda_l / d theta_j`` on every
node of level ``l`` (``dLambda = I (x) D_j``). With ``B = M Lambda'H`` (per node
(q_l, r), :func:`.inverse.back_solve`) and ``R = H - G Lambda B = Z'V^{-1}[X y]``::

    d logdet_j = tr(M dC) = 2 <F_l, D_j>,         F_l = sum_{k at l} (G Lambda M)_kk
    d hmh_j    = R' dLambda B + B' dLambda' R,    R' dLambda B = sum_{k at l} R_k' D_j B_k

(``dC = dLambda'G Lambda + Lambda'G dLambda``, so ``tr(M dC) = 2 tr(M Lambda'G dLambda)``;
``hmh = c'M c`` with ``c = Lambda'H`` gives ``d hmh = H'dLambda B + B'dLambda'H - B'dC B``,
and ``H - G Lambda B = R``; ``<., .>`` is the sum of the entrywise product.)

(``(G Lambda M)_kk = P_kk Lambda_l`` with ``P = Z'V^{-1}Z``). ``G_kj`` is zero unless
``j`` is ``k``, an ancestor or a descendant of ``k``, and ``M_jk`` is then a block of the
selected inverse, so for node ``k`` at level ``l`` (ancestors ``a_m``, ``m < l``)::

    (G Lambda M)_kk = zz_k Lambda_l M_kk + sum_m za[l][m]_k Lambda_m M_{a_m k}
                      + sum_{j below k} za[n][l]_j' Lambda_n M_{k j}'   (j at level n > l)
    R_k = zxy_k - zz_k Lambda_l B_k - sum_m za[l][m]_k Lambda_m B_{a_m}
                - sum_{j below k} za[n][l]_j' Lambda_n B_j

The sums over descendants are sums over a whole level for ``F_l`` and scatter-adds
into the ancestors for ``R``. No ``Lambda^{-1}`` appears: the derivatives hold on the
boundary (zeros on the diagonal of ``Lambda_l``). ``F_l`` (q_l, q_l) and
``sum_k R_k (x) B_k`` (q_l, r, q_l, r) are formed once per level (sums over nodes of
Kronecker products, by BLAS); each parameter is then a contraction with ``D_j``.

The pieces are sums over outer groups, so the pieces of disjoint blocks add
(:class:`~dlmm.kernels.pieces._Additive`); :mod:`dlmm.objective.profiled` reads them
along sqrt directions (``directions = "sqrt"``): the gradient it forms is
``d llf / d theta``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..pieces import _Additive
from .factor import NestedFactor, factorize
from .inverse import back_solve, selected_inverse
from .small import product, sum_products
from .stats import NestedStats
from .tree import NestedTree


@dataclass(eq=False)
class NestedPieces(_Additive):
    """What the profiled objective needs from a block of whole outer groups.

    Attributes
    ----------
    logdet : float
        ``sum_g log|C_g| = log|V|`` over the block's outer groups.
    hmh : ndarray (r, r)
        ``[X y]'Z Lambda C^{-1} Lambda'Z'[X y]``; ``S = K - hmh``.
    dlogdet : ndarray (n_theta,)
        ``d logdet / d theta_j`` (empty without a gradient).
    dhmh : ndarray (n_theta, r, r)
        ``d hmh / d theta_j`` (symmetric).
    n_groups : float
        Outer groups summed.
    directions : str
        ``"sqrt"``: derivatives along the entries of theta (the square-root
        parameterization), for :mod:`dlmm.objective.profiled`.
    """

    directions: ClassVar[str] = "sqrt"

    logdet: float
    hmh: np.ndarray
    dlogdet: np.ndarray
    dhmh: np.ndarray
    n_groups: float

    @classmethod
    def zeros(cls, n_theta: int, r: int) -> NestedPieces:
        """The identity of ``+`` (no groups)."""
        return cls(0.0, np.zeros((r, r)), np.zeros(n_theta), np.zeros((n_theta, r, r)), 0.0)


def _level_sums(stats: NestedStats, factor: NestedFactor) -> tuple[dict, dict]:
    """``F_l`` and ``sum_k R_k (x) B_k`` per active level (module docstring)."""
    tree: NestedTree = factor.tree
    lambdas = factor.lambdas
    inv = selected_inverse(factor)
    b = back_solve(factor)
    lam_b = {lv: product(lambdas[lv], b[lv]) for lv in tree.active}  # Lambda_l B_k
    f, quad = {}, {}
    for level in tree.active:
        zz = stats.zz[level]
        # sum_k X_k Lambda Y_k = einsum("abcd,bc->ad", sum_k X_k (x) Y_k, Lambda)
        f_l = np.einsum("abcd,bc->ad", sum_products(zz, inv.diag[level]), lambdas[level])
        r_l = np.array(stats.zxy[level], dtype=float, order="C")
        product(zz, lam_b[level], out=r_l, sign=-1.0)
        for above in tree.active_above(level):
            za = stats.za[level][above]
            f_l += np.einsum("abcd,bc->ad", sum_products(za, inv.up[level, above]),
                             lambdas[above])
            product(za, lam_b[above], rows_b=tree.ancestor(level, above), out=r_l, sign=-1.0)
        for below in tree.active_below(level):  # descendants j: za[n][l]_j' Lambda_n ...
            za = stats.za[below][level]
            f_l += np.einsum("badc,bc->ad", sum_products(za, inv.up[below, level]),
                             lambdas[below])
            product(za, lam_b[below], trans_a=True, out=r_l,
                    into=tree.ancestor(below, level), sign=-1.0)
        f[level] = f_l
        quad[level] = sum_products(r_l, b[level])  # (q_l, r, q_l, r)
    return f, quad


def nested_pieces(stats: NestedStats, lambdas: list, dlambdas: list | None = None,
                  tree: NestedTree | None = None) -> NestedPieces:
    """``log|C|``, ``hmh`` and, along each parameter direction, their derivatives.

    Parameters
    ----------
    stats : NestedStats
        The per-node sums of a block of whole outer groups.
    lambdas : list of ndarray
        ``Lambda_l`` (q_l, q_l), lower triangular (may be singular), per level.
    dlambdas : list of (int, ndarray), optional
        ``(l, D_j)`` with ``D_j = d Lambda_l / d theta_j`` (q_l, q_l) for each parameter
        ``j``; ``None``: the value only (empty derivatives).
    tree : NestedTree, optional
        ``nested_tree(stats)``, if already made (it does not depend on ``Lambda``).

    Returns
    -------
    NestedPieces
        See the module docstring for the formulas.
    """
    factor = factorize(stats, lambdas, tree)
    r = stats.r
    n_theta = 0 if dlambdas is None else len(dlambdas)
    dlogdet = np.zeros(n_theta)
    dhmh = np.zeros((n_theta, r, r))
    if n_theta:
        f, quad = _level_sums(stats, factor)
        for j, (level, d) in enumerate(dlambdas):
            if level not in f:
                continue  # a level without columns: nothing moves
            d = np.asarray(d, dtype=float)
            dlogdet[j] = 2.0 * float(np.sum(f[level] * d))
            half = np.einsum("ab,arbs->rs", d, quad[level])
            dhmh[j] = half + half.T
    return NestedPieces(factor.logdet, factor.hmh, dlogdet, dhmh, float(stats.n_nodes[0]))
