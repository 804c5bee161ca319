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


def sqrt_jacobian(chol_re: np.ndarray, sd_vc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and second derivatives of the packed profile parameters with respect
    to the packed sqrt parameters.

    ``Psi_ab = sum_c L_ac L_bc`` gives ``dPsi_ab/dL_ij = d_ai L_bj + d_bi L_aj`` and
    ``d2Psi_ab/dL_ij dL_kl = d_jl (d_ai d_bk + d_bi d_ak)``; ``v = s^2`` gives 2s and 2.

    Returns
    -------
    jac : ndarray (m, m)
        ``d psi_i / d theta_j``.
    second : ndarray (m, m, m)
        ``d2 psi_i / d theta_j d theta_k``.
    """
    k_re = chol_re.shape[0]
    rows, cols = np.tril_indices(k_re)
    k2 = rows.shape[0]
    k_vc = len(sd_vc)
    m = k2 + k_vc
    jac = np.zeros((m, m))
    second = np.zeros((m, m, m))
    for i, (a, b) in enumerate(zip(rows, cols)):  # loops over parameters
        for j, (r, c) in enumerate(zip(rows, cols)):
            jac[i, j] = int(a == r) * chol_re[b, c] + int(b == r) * chol_re[a, c]
            for k, (r2, c2) in enumerate(zip(rows, cols)):
                if c == c2:
                    second[i, j, k] = int(a == r and b == r2) + int(b == r and a == r2)
    for k in range(k_vc):
        jac[k2 + k, k2 + k] = 2.0 * sd_vc[k]
        second[k2 + k, k2 + k, k2 + k] = 2.0
    return jac, second


def sqrt_hessian(hessian: np.ndarray, k_fe: int, grad_profile: np.ndarray,
                 chol_re: np.ndarray, sd_vc: np.ndarray) -> np.ndarray:
    """Hessian of the profiled llf (fixed effects and scale profiled out) in the sqrt
    parameterization, from the Hessian in (fixed effects, profile parameters) at the
    GLS fixed effects: the Schur complement removes the fixed effects (their
    gradient is zero there), then the chain rule through ``psi(theta)``."""
    h_bb = hessian[:k_fe, :k_fe]
    h_bt = hessian[:k_fe, k_fe:]
    h_tt = hessian[k_fe:, k_fe:]
    h_prof = h_tt - h_bt.T @ np.linalg.solve(h_bb, h_bt) if k_fe else h_tt
    jac, second = sqrt_jacobian(chol_re, sd_vc)
    return jac.T @ h_prof @ jac + np.einsum("i,ijk->jk", grad_profile, second)
