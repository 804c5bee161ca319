"""The block Cholesky factor of ``C = I + Lambda'Z'Z Lambda`` of nested trees, leaves first.

Unknowns are ordered deepest level first, so every node comes before its ancestors.
Node ``k`` at level ``l`` (columns ``q_l``) couples in ``C`` only to itself, its ancestors
and its descendants:

    C_kk = I + Lambda_l' zz_k Lambda_l,   C_ka = Lambda_l' za[l][m]_k Lambda_m   (a: k's
    ancestor at level m),                 right-hand side  c_k = Lambda_l' zxy_k

Eliminating ``k`` (``C_kk = T_k T_k'``, ``W_k^m = T_k^{-1} C_{k a_m}``, ``u_k = T_k^{-1} c_k``)
updates only blocks between its ancestors, which are already coupled (no fill-in):

    C_{a_m a_m}  -= W_k^m' W_k^m,   C_{a_m a_n} -= W_k^m' W_k^n  (n < m),   c_{a_m} -= W_k^m' u_k

Each update is a sum over the level-``l`` descendants of each level-``m`` node, a
scatter-add into the ancestors (:func:`.small.product`); a level is eliminated all at
once (batched over its nodes), from the deepest up. Then ``C = L L'`` with ``L_kk = T_k`` and
``L_{a_m k} = W_k^m'``, and

    log|C| = sum_k log|C_kk (updated)| = 2 sum_k sum log diag T_k,
    hmh    = c' C^{-1} c = sum_k u_k' u_k            (c = Lambda'Z'[X y]).

Levels without random-effect columns take no part (they only relay ancestry). Cost per
node at level ``l``: ``O(q_l^3 + sum_{n <= m < l} q_l q_m q_n + sum_m q_l q_m r)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .small import cholesky_inverse, product
from .stats import NestedStats
from .tree import NestedTree, nested_tree


@dataclass(eq=False)
class NestedFactor:
    """The factor of one block at one ``Lambda``.

    Attributes
    ----------
    tree : NestedTree
    lambdas : list of ndarray
        ``Lambda_l`` (q_l, q_l) per level.
    t_inv : dict
        ``t_inv[l]`` (n_l, q_l, q_l): ``T_k^{-1}`` for the (updated) diagonal blocks.
    w : dict
        ``w[l, m]`` (n_l, q_l, q_m): ``W_k^m = T_k^{-1} C_{k a_m}`` (updated), ``m < l``.
    u : dict
        ``u[l]`` (n_l, q_l, r): ``u_k = T_k^{-1} c_k`` (updated).
    logdet : float
        ``log|C|``.
    hmh : ndarray (r, r)
        ``[X y]'Z Lambda C^{-1} Lambda'Z'[X y]``.
    """

    tree: NestedTree
    lambdas: list
    t_inv: dict
    w: dict
    u: dict
    logdet: float
    hmh: np.ndarray


def congruence(lam_left: np.ndarray, blocks: np.ndarray, lam_right: np.ndarray) -> np.ndarray:
    """``Lambda_left' X_k Lambda_right`` for every block ``X_k`` of a stack."""
    return product(product(lam_left, blocks, trans_a=True), lam_right)


def factorize(stats: NestedStats, lambdas: list, tree: NestedTree | None = None
              ) -> NestedFactor:
    """Factor ``C`` of the block ``stats`` at ``Lambda_l = lambdas[l]`` (see the module
    docstring); the blocks ``C_kk`` are positive definite for any ``Lambda``, singular
    included."""
    tree = nested_tree(stats) if tree is None else tree
    lambdas = [np.asarray(lam, dtype=float) for lam in lambdas]
    diag, coupling, rhs = {}, {}, {}
    for level in tree.active:
        lam = lambdas[level]
        diag[level] = congruence(lam, stats.zz[level], lam)
        idx = np.arange(stats.q[level])
        diag[level][:, idx, idx] += 1.0
        rhs[level] = product(lam, stats.zxy[level], trans_a=True)
        for above in tree.active_above(level):
            coupling[level, above] = congruence(lam, stats.za[level][above], lambdas[above])

    t_inv, w, u = {}, {}, {}
    logdet = 0.0
    hmh = np.zeros((stats.r, stats.r))
    for level in reversed(tree.active):
        logdet_level, ti = cholesky_inverse(diag.pop(level))
        logdet += logdet_level
        t_inv[level] = ti
        u[level] = product(ti, rhs.pop(level))
        hmh += np.tensordot(u[level], u[level], axes=([0, 1], [0, 1]))
        above_levels = tree.active_above(level)
        for above in above_levels:
            w[level, above] = product(ti, coupling.pop((level, above)))
        for above in above_levels:
            anc = tree.ancestor(level, above)
            wa = w[level, above]
            product(wa, wa, trans_a=True, out=diag[above], into=anc, sign=-1.0)
            product(wa, u[level], trans_a=True, out=rhs[above], into=anc, sign=-1.0)
            for higher in above_levels:
                if higher < above:
                    product(wa, w[level, higher], trans_a=True, out=coupling[above, higher],
                            into=anc, sign=-1.0)
    return NestedFactor(tree, lambdas, t_inv, w, u, logdet, 0.5 * (hmh + hmh.T))
