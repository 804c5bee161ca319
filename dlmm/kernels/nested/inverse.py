"""Top-down passes over the nested factor: solutions, and ``C^{-1}`` on the tree's pattern.

With ``C = L L'`` from :mod:`.factor` (``L_kk = T_k``, ``L_{a_m k} = W_k^m'`` for the
ancestor ``a_m`` of ``k`` at level ``m``), both passes run from the roots down, a level
at a time, reading what is already known about each node's ancestors.

Solution of ``C B = c`` (back substitution, ``L' B = u``)::

    B_k = T_k^{-T} (u_k - sum_m W_k^m B_{a_m})

Selected inverse (Takahashi's equations, ``M L = L^{-T}`` read on the pattern of ``L``,
which here is every pair of a node and its ancestors: the pattern of ``C`` itself).
With ``K_k^m = W_k^m' T_k^{-1}`` (q_m, q_l), for the ancestors ``a_m`` of ``k``::

    M_{a_m k} = -sum_n M_{a_m a_n} K_k^n
    M_kk      = T_k^{-T} T_k^{-1} - sum_m M_{a_m k}' K_k^m

where ``M_{a_m a_n}`` (both ancestors of ``k``) is a diagonal block or an ancestor block
of the deeper of the two, already computed. Cost per node at level ``l``:
``O(sum_{m, n < l} q_m q_n q_l + q_l^3)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .factor import NestedFactor
from .small import product


def back_solve(factor: NestedFactor, u: dict | None = None) -> dict:
    """``B = C^{-1} c`` per level from ``u = L^{-1} c`` (default: the factor's own,
    ``c = Lambda'Z'[X y]``): ``B[l]`` (n_l, q_l, s) for each active level."""
    u = factor.u if u is None else u
    tree = factor.tree
    out = {}
    for level in tree.active:
        rhs = np.array(u[level], dtype=float, order="C")
        for above in tree.active_above(level):
            product(factor.w[level, above], out[above], rows_b=tree.ancestor(level, above),
                    out=rhs, sign=-1.0)
        out[level] = product(factor.t_inv[level], rhs, trans_a=True)
    return out


@dataclass(eq=False)
class SelectedInverse:
    """Blocks of ``M = C^{-1}`` on the pattern of the trees.

    Attributes
    ----------
    diag : dict
        ``diag[l]`` (n_l, q_l, q_l): ``M_kk``.
    up : dict
        ``up[l, m]`` (n_l, q_m, q_l), ``m < l``: ``M_{a_m k}`` between each node ``k`` and
        its ancestor ``a_m`` at level ``m``.
    """

    diag: dict
    up: dict


def selected_inverse(factor: NestedFactor) -> SelectedInverse:
    """The blocks of ``C^{-1}`` between every node and itself or an ancestor (see the
    module docstring)."""
    tree = factor.tree
    inv = SelectedInverse({}, {})
    for level in tree.active:
        ti = factor.t_inv[level]
        above_levels = tree.active_above(level)
        k = {m: product(factor.w[level, m], ti, trans_a=True) for m in above_levels}
        diag = product(ti, ti, trans_a=True)
        for m in above_levels:
            up = np.zeros((ti.shape[0], factor.lambdas[m].shape[0], ti.shape[1]))
            for n in above_levels:  # up -= M_{a_m a_n} K^n
                if m == n:
                    product(inv.diag[m], k[n], rows_a=tree.ancestor(level, m), out=up,
                            sign=-1.0)
                elif m > n:  # M_{a_m a_n} = (M_{a_n a_m})', kept at a_m
                    product(inv.up[m, n], k[n], trans_a=True, rows_a=tree.ancestor(level, m),
                            out=up, sign=-1.0)
                else:  # kept at a_n
                    product(inv.up[n, m], k[n], rows_a=tree.ancestor(level, n), out=up,
                            sign=-1.0)
            inv.up[level, m] = up
            product(up, k[m], trans_a=True, out=diag, sign=-1.0)
        inv.diag[level] = 0.5 * (diag + np.swapaxes(diag, 1, 2))
    return inv
