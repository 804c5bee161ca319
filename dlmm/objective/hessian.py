"""Hessian of the log-likelihood in (fixed effects, profile covariance parameters).

As statsmodels' ``MixedLM.hessian``: the scale is profiled out, the fixed
effects are free. With ``Q(beta, theta) = c' S c`` for ``c = [-beta; 1]``,

    L = -1/2 sum log|V_i| - fac/2 log Q  [REML: - 1/2 log|S_XX|]

and the pieces of :mod:`dlmm.kernels.hessian` (``D_j = sum R'E_jR``,
``W_jk = sum R'E_j P E_k R``, ``T_jk = sum tr(E_j P E_k P)``):

    Q_b  = -2 (S c)_X            Q_bb = 2 S_XX
    Q_j  = -c' D_j c             Q_bj = 2 (D_j c)_X
    Q_jk = c' (W_jk + W_kj) c
    L_bb = -fac/2 (Q_bb/Q - Q_b Q_b'/Q^2),   L_bj = -fac/2 (Q_bj/Q - Q_b Q_j/Q^2)
    L_jk = T_jk/2 - fac/2 (Q_jk/Q - Q_j Q_k/Q^2)
           [REML: - 1/2 tr(S_XX^{-1} (W_jk + W_kj)_XX)
                  + 1/2 tr(S_XX^{-1} (D_j)_XX S_XX^{-1} (D_k)_XX)]
"""

from __future__ import annotations

import numpy as np

from ..kernels.hessian import HessianPieces


def profiled_hessian(
    pieces: HessianPieces, xy_cross: np.ndarray, n_obs: float, reml: bool,
    fe_params: np.ndarray | None = None,
) -> np.ndarray:
    """The Hessian of ``L`` at ``(fe_params, theta)``; GLS fixed effects if None.

    Returns
    -------
    ndarray (p + m, p + m)
        Fixed effects first, then the packed profile covariance parameters.
    """
    s = xy_cross - pieces.hmh
    p = s.shape[0] - 1
    s_xx = s[:p, :p]
    if fe_params is None:
        fe_params = np.linalg.solve(s_xx, s[:p, p]) if p else np.zeros(0)
    c = np.concatenate([-np.asarray(fe_params, dtype=float), [1.0]])
    fac = n_obs - p if reml else n_obs
    q = float(c @ s @ c)
    w_sym = pieces.d2 + np.swapaxes(pieces.d2, 0, 1)

    q_b = -2.0 * (s @ c)[:p]
    q_bb = 2.0 * s_xx
    q_j = -np.einsum("jrs,r,s->j", pieces.d1, c, c)
    q_bj = 2.0 * np.einsum("jrs,s->rj", pieces.d1, c)[:p]
    q_jk = np.einsum("jkrs,r,s->jk", w_sym, c, c)

    l_bb = -0.5 * fac * (q_bb / q - np.outer(q_b, q_b) / q**2)
    l_bj = -0.5 * fac * (q_bj / q - np.outer(q_b, q_j) / q**2)
    l_jk = 0.5 * pieces.trace2 - 0.5 * fac * (q_jk / q - np.outer(q_j, q_j) / q**2)
    if reml and p:
        s_inv = np.linalg.inv(s_xx)
        l_jk -= 0.5 * np.einsum("ab,jkba->jk", s_inv, w_sym[:, :, :p, :p])
        sd = np.einsum("ab,jbc->jac", s_inv, pieces.d1[:, :p, :p])  # S^-1 D_j
        l_jk += 0.5 * np.einsum("jab,kba->jk", sd, sd)
    m = l_jk.shape[0]
    hess = np.zeros((p + m, p + m))
    hess[:p, :p] = l_bb
    hess[:p, p:] = l_bj
    hess[p:, :p] = l_bj.T
    hess[p:, p:] = 0.5 * (l_jk + l_jk.T)
    return hess
