"""Driver math on the reduced sums: GLS fixed effects, scale, llf and gradient.

With ``S = K - sum_i H_i' M_i H_i = sum_i [X_i y_i]' V_i^{-1} [X_i y_i]``:

    beta = S_XX^{-1} S_Xy,   qf = S_yy - S_yX beta,   scale = qf / fac
    llf  = -1/2 sum log|V_i| - fac/2 log(qf) - fac/2 (1 + log(2 pi) - log(fac))
           [REML: - 1/2 log|S_XX|],       fac = n - p (REML) or n (ML).

For a direction ``E`` of ``B`` (``dV_i = A_i E A_i'``), with ``c = [-beta; 1]``:

    d llf = -1/2 <E, sum P_i> + fac/(2 qf) c' D_E c [+ 1/2 tr(S_XX^{-1} D_E[XX])]
    D_E   = sum_i R_i' E R_i

so the gradient with respect to ``Psi`` (as a full matrix) is
``-1/2 p_re + fac/(2 qf) c'T c [+ 1/2 tr(S_XX^{-1} T[XX])]`` entry by entry,
and for component k the same with ``p_vc[k]`` and ``t_vc[k]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import linalg

from ..kernels.pieces import LikelihoodPieces


@dataclass
class ProfiledValue:
    """The profiled log-likelihood at one parameter value and its gradients.

    Attributes
    ----------
    llf : float
    grad_psi : ndarray (k_re, k_re)
        d llf / d Psi_ab, each entry of Psi taken as free (a symmetric matrix).
    grad_vc : ndarray (k_vc,)
        d llf / d (vcomp_k / scale).
    fe_params : ndarray (p,)
    scale : float
    xvx : ndarray (p, p)
        ``S_XX = sum_i X_i' V_i^{-1} X_i``.
    """

    llf: float
    grad_psi: np.ndarray
    grad_vc: np.ndarray
    fe_params: np.ndarray
    scale: float
    xvx: np.ndarray


def profiled_value(
    pieces: LikelihoodPieces, xy_cross: np.ndarray, n_obs: float, reml: bool
) -> ProfiledValue:
    """Profiled llf, GLS fixed effects, scale and gradient from reduced sums."""
    s = xy_cross - pieces.hmh
    p = s.shape[0] - 1
    s_xx = s[:p, :p]
    s_xy = s[:p, p]
    if p:
        chol = np.linalg.cholesky(s_xx)
        beta = np.linalg.solve(s_xx, s_xy)
        logdet_xx = 2.0 * np.log(np.diag(chol)).sum()
    else:
        beta = np.zeros(0)
        logdet_xx = 0.0
    qf = float(s[p, p] - s_xy @ beta)
    fac = n_obs - p if reml else n_obs
    llf = (
        -0.5 * pieces.logdet
        - 0.5 * fac * np.log(qf)
        - 0.5 * fac * (1.0 + np.log(2.0 * np.pi) - np.log(fac))
    )
    if reml:
        llf -= 0.5 * logdet_xx

    c = np.concatenate([-beta, [1.0]])
    s_xx_inv = linalg.cho_solve((chol, True), np.eye(p)) if reml and p else None
    grad_psi, grad_vc = covariance_gradient(pieces, c, 0.5 * fac / qf, s_xx_inv)
    return ProfiledValue(float(llf), grad_psi, grad_vc, beta, qf / fac, s_xx)


def covariance_gradient(pieces: LikelihoodPieces, c: np.ndarray, weight: float,
                        s_xx_inv: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The covariance gradient's terms for a given ``c`` and quadratic weight.

    ``grad_psi = -1/2 p_re + weight c'T_re c [+ 1/2 tr(S_XX^{-1} T_re[XX])]`` and
    the same for each component with ``p_vc``, ``t_vc``; symmetrized. With
    ``c = [-beta; 1]`` and ``weight = fac / (2 qf)`` it is the profiled
    gradient; profile likelihoods use other ``c`` (fixed coefficients held) and
    weights (a fixed scale, ``1 / (2 sigma^2)``). ``s_xx_inv`` adds the REML term.
    """
    quad_re = np.einsum("abij,i,j->ab", pieces.t_re, c, c)
    quad_vc = np.einsum("kij,i,j->k", pieces.t_vc, c, c)
    grad_psi = -0.5 * pieces.p_re + weight * quad_re
    grad_vc = -0.5 * pieces.p_vc + weight * quad_vc
    if s_xx_inv is not None:
        p = s_xx_inv.shape[0]
        grad_psi = grad_psi + 0.5 * np.einsum("abij,ij->ab", pieces.t_re[:, :, :p, :p], s_xx_inv)
        grad_vc = grad_vc + 0.5 * np.einsum("kij,ij->k", pieces.t_vc[:, :p, :p], s_xx_inv)
    return 0.5 * (grad_psi + grad_psi.T), grad_vc


def constrained_gls(s: np.ndarray, constraint: tuple[np.ndarray, float] | None = None
                    ) -> tuple[np.ndarray, float]:
    """``c = [-beta; 1]`` minimizing ``c'Sc`` (GLS), or, with ``constraint = (r, v)``,
    subject to ``r'beta = v``; also ``qf = c'Sc``.

    With ``beta_0 = S_XX^{-1} S_Xy`` the constrained minimizer is
    ``beta_0 - S_XX^{-1} r (r'beta_0 - v) / (r'S_XX^{-1} r)``.
    """
    p = s.shape[0] - 1
    beta = np.zeros(p)
    if p:
        factor = linalg.cho_factor(s[:p, :p], lower=True)
        beta = linalg.cho_solve(factor, s[:p, p])
        if constraint is not None:
            r, v = np.asarray(constraint[0], dtype=float), float(constraint[1])
            s_inv_r = linalg.cho_solve(factor, r)
            beta = beta - s_inv_r * (r @ beta - v) / (r @ s_inv_r)
    c = np.concatenate([-beta, [1.0]])
    return c, float(c @ s @ c)


def grad_sqrt(value: ProfiledValue, chol_re: np.ndarray, sd_vc: np.ndarray) -> np.ndarray:
    """Gradient in the sqrt parameterization (packed: tril of L, then sd_vc).

    ``Psi = L L'`` gives ``d llf / dL = 2 G L`` for the symmetric matrix
    gradient ``G``; ``v = s^2`` gives ``d llf / ds = 2 s d llf / dv``.
    """
    k_re = chol_re.shape[0]
    d_l = 2.0 * value.grad_psi @ chol_re
    return np.concatenate([d_l[np.tril_indices(k_re)], 2.0 * sd_vc * value.grad_vc])


def grad_profile(value: ProfiledValue) -> np.ndarray:
    """Gradient in the profile parameterization (packed: tril of Psi, then v).

    An off-diagonal packed entry moves ``Psi_ab`` and ``Psi_ba`` together.
    """
    k_re = value.grad_psi.shape[0]
    rows, cols = np.tril_indices(k_re)
    factor = np.where(rows == cols, 1.0, 2.0)
    return np.concatenate([factor * value.grad_psi[rows, cols], value.grad_vc])
