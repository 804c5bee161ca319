"""Conditional modes of the random effects and their conditional covariance blocks.

    b_hat = Lambda C^{-1} Lambda'Z'(y - X beta)
    cov(b | y) blocks: scale * T_k (C^{-1})_{kl,kl} T_k'     for every level l of factor k

``C^{-1} Lambda'Z'[X y]`` comes from the blocked factor by back substitution
(``L' B = c``): ``B2 = L22^{-T} c2`` then, block row 1 of ``C B = Lambda'H``,
``B1 = C11^{-1} T_1' (H1 - G21' Lambda_2 B2)``; the diagonal blocks of ``C^{-1}``
come from :mod:`.inverse`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._blocks import block_apply
from .factor import CrossedFactor, lambda2, tri_solve
from .inverse import SelectedInverse, selected_inverse
from .system import CrossedSystem


@dataclass(eq=False)
class BackSolve:
    """``B = C^{-1} Lambda'H`` and ``Lambda B`` for some right-hand columns ``H = Z'W``.

    Attributes
    ----------
    b1, bt1 : ndarray (l_1, t_1, s)
        ``B`` and ``Lambda B`` on factor 1.
    b2, bt2 : ndarray (Q2, s)
        The same on the dense part.
    g1 : ndarray (l_1, t_1, s)
        ``G21' Lambda_2 B2`` (reused by the gradient).
    """

    b1: np.ndarray
    bt1: np.ndarray
    b2: np.ndarray
    bt2: np.ndarray
    g1: np.ndarray


def back_solve(
    system: CrossedSystem, factor: CrossedFactor, c2: np.ndarray, h1: np.ndarray
) -> BackSolve:
    """Solve ``C B = Lambda' H`` given ``c2`` (the dense part of ``L^{-1} Lambda'H``) and ``H1``.

    ``B2 = L22^{-T} c2``; ``B1 = K1 (H1 - G21' Lambda_2 B2)`` with ``K1_l = C11_l^{-1} T_1'``.
    ``c2`` None: the factor's own right-hand side, whose ``B2`` a single-precision
    factor holds refined (``factor.b2``).
    """
    t_1 = factor.factors[system.first]
    l1, t1 = factor.l11.shape[:2]
    s = h1.shape[2]
    b2 = factor.b2 if c2 is None else tri_solve(factor.l22, c2, trans=True)
    bt2 = np.array(b2)
    lambda2(system, factor.factors, bt2, transpose=False)
    g1 = np.asarray(system.g21_t @ bt2).reshape(l1, t1, s)
    b1 = block_apply(factor.k1, h1 - g1)
    bt1 = b1 * t_1[0, 0] if t1 == 1 else np.einsum("ab,lbs->las", t_1, b1)
    return BackSolve(b1, bt1, b2, bt2, g1)


def _split_rest(system: CrossedSystem, dense: np.ndarray) -> dict:
    out = {}
    for k, off in zip(system.rest, system.rest_offsets):
        lv, t = system.n_levels[k], system.n_terms[k]
        out[k] = dense[off : off + lv * t].reshape((lv, t) + dense.shape[1:])
    return out


def conditional_modes(
    system: CrossedSystem, factor: CrossedFactor, beta: np.ndarray
) -> list[np.ndarray]:
    """``b_hat = Lambda C^{-1} Lambda'Z'(y - X beta)`` per factor.

    Parameters
    ----------
    beta : ndarray (p,)
        Fixed effects (usually the GLS ``S_XX^{-1} S_Xy`` at this theta).

    Returns
    -------
    list of ndarray (l_k, t_k)
        In the caller's factor order.
    """
    cvec = np.concatenate([-np.asarray(beta, dtype=float).ravel(), [1.0]])
    h1 = (system.h1 @ cvec)[:, :, None]
    c2 = (factor.c2 @ cvec)[:, None]
    sol = back_solve(system, factor, c2, h1)
    out = {system.first: sol.bt1[:, :, 0]}
    out.update({k: v[..., 0] for k, v in _split_rest(system, sol.bt2).items()})
    return [out[k] for k in range(len(system.n_levels))]


def conditional_variances(
    system: CrossedSystem,
    factor: CrossedFactor,
    scale: float,
    inverse: SelectedInverse | None = None,
    consume: bool = False,
) -> list[np.ndarray]:
    """Diagonal blocks of ``cov(b | y) = scale * Lambda C^{-1} Lambda'``, per factor and level.

    ``consume``: the caller is done with ``factor`` (its modes solved), whose dense
    Schur factor then holds the inverse (the dense part held once; ``factor.l22`` is
    None after).

    Returns
    -------
    list of ndarray (l_k, t_k, t_k)
        ``scale * T_k (C^{-1})_{kl,kl} T_k'``, in the caller's factor order.
    """
    inv = selected_inverse(system, factor, consume) if inverse is None else inverse
    t_1 = factor.factors[system.first]
    out = {system.first: scale * np.einsum("ab,lbc,dc->lad", t_1, inv.p11, t_1)}
    for k, off in zip(system.rest, system.rest_offsets):
        t, lv = system.n_terms[k], system.n_levels[k]
        base = off + np.arange(lv) * t
        blocks = np.empty((lv, t, t))
        for a in range(t):
            for b in range(t):
                blocks[:, a, b] = inv.ainv_at(base + a, base + b)
        tk = factor.factors[k]
        out[k] = scale * np.einsum("ab,lbc,dc->lad", tk, blocks, tk)
    return [out[k] for k in range(len(system.n_levels))]
