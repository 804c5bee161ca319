"""Conditional modes of nested random effects and their conditional covariance blocks.

With ``c = [-beta; 1]`` and ``M = C^{-1}`` (:mod:`.factor`, :mod:`.inverse`), per node
``k`` at level ``l``::

    b_k   = E[b_k | y] = (Lambda M Lambda'Z'(y - X beta))_k = Lambda_l (M Lambda'H c)_k
    cov_k = Lambda_l M_kk Lambda_l'       (times sigma^2: the conditional covariance)

``M Lambda'H c`` is one back substitution on the factor's ``u c``; ``M_kk`` comes from the
selected inverse.
"""

from __future__ import annotations

import numpy as np

from .factor import factorize
from .inverse import back_solve, selected_inverse
from .small import product
from .stats import NestedStats
from .tree import NestedTree


def nested_effects(stats: NestedStats, lambdas: list, c: np.ndarray,
                   tree: NestedTree | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Conditional modes and covariances (relative to the scale) of every node.

    Parameters
    ----------
    stats : NestedStats
    lambdas : list of ndarray
        ``Lambda_l`` (q_l, q_l) per level.
    c : ndarray (r,)
        ``[-beta; 1]``.
    tree : NestedTree, optional
        ``nested_tree(stats)``, if already made.

    Returns
    -------
    list of (ndarray, ndarray)
        Per level, ``modes`` (n_l, q_l) and ``cov`` (n_l, q_l, q_l) (see the module
        docstring); empty columns for a level without random effects.
    """
    factor = factorize(stats, lambdas, tree)
    c = np.asarray(c, dtype=float)
    uc = {lv: product(factor.u[lv], c[None, :, None]) for lv in factor.tree.active}
    b = back_solve(factor, uc)
    inv = selected_inverse(factor)
    out = []
    for level, n in enumerate(stats.n_nodes):
        if level not in factor.tree.active:
            out.append((np.zeros((n, 0)), np.zeros((n, 0, 0))))
            continue
        lam = factor.lambdas[level]
        modes = product(lam, b[level])[:, :, 0]
        cov = product(product(lam, inv.diag[level]), lam, trans_b=True)
        out.append((modes, cov))
    return out
