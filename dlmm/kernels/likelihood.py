"""Per-step kernel: cross-products and parameters to summed likelihood pieces.

The relative covariance of a group's random effects is ``B = Lambda Lambda'``
with ``Lambda = blockdiag(L, s_1 I, ..., s_K I)``: ``L`` the lower-triangular
factor of ``Psi = cov_re / scale`` and ``s_k = sqrt(vcomp_k / scale)``.
For each group, with ``C = I + Lambda' G Lambda = T T'`` (Cholesky),
``U = T^{-1} Lambda' H`` and ``Q = T^{-1} Lambda' G``:

    log|V|           = log|C| = 2 sum log diag(T)
    H' M H           = U' U                  (M = Lambda C^{-1} Lambda')
    P = A'V^{-1}A    = G - Q' Q
    R = A'V^{-1}[Xy] = H - Q' U

All of it is batched over the groups of a batch: a few stacked LAPACK calls,
no loop over groups.
"""

from __future__ import annotations

import numpy as np

from .layout import GroupBatch
from .pieces import LikelihoodPieces


def relative_factor(
    chol_re: np.ndarray, sd_vc: np.ndarray, widths: np.ndarray
) -> np.ndarray:
    """``Lambda = blockdiag(chol_re, sd_vc[0] I_{widths[0]}, ...)``."""
    k_re = chol_re.shape[0]
    diag_vc = np.repeat(np.asarray(sd_vc, dtype=float), widths)
    q = k_re + diag_vc.shape[0]
    lam = np.zeros((q, q))
    lam[:k_re, :k_re] = chol_re
    idx = np.arange(k_re, q)
    lam[idx, idx] = diag_vc
    return lam


def _solve_pieces(batch: GroupBatch, chol_re: np.ndarray, sd_vc: np.ndarray):
    """Cholesky factors and the solved products shared by every output."""
    lam = relative_factor(chol_re, sd_vc, batch.widths)
    g_lam = batch.g @ lam  # (b, q, q) = G Lambda
    c = lam.T @ g_lam
    q = c.shape[1]
    c[:, np.arange(q), np.arange(q)] += 1.0
    t = np.linalg.cholesky(c)
    t_inv = np.linalg.inv(t)
    u = t_inv @ (lam.T @ batch.h)  # (b, q, r)
    qm = t_inv @ np.swapaxes(g_lam, 1, 2)  # (b, q, q) = T^{-1} Lambda' G
    return t, t_inv, u, qm


def batch_pieces(
    batch: GroupBatch, chol_re: np.ndarray, sd_vc: np.ndarray
) -> LikelihoodPieces:
    """Likelihood pieces of one batch of groups (see the module docstring).

    Parameters
    ----------
    batch : GroupBatch
    chol_re : ndarray (k_re, k_re)
        Lower-triangular factor of ``Psi`` (may be singular).
    sd_vc : ndarray (k_vc,)
        ``sqrt(vcomp / scale)`` of each component (may be 0).
    """
    k_re = batch.k_re
    k_vc = batch.widths.shape[0]
    t, _, u, qm = _solve_pieces(batch, chol_re, sd_vc)
    diag_t = np.diagonal(t, axis1=1, axis2=2)
    logdet = 2.0 * float(np.log(diag_t).sum())
    hmh = np.einsum("bqi,bqj->ij", u, u)
    p = batch.g - np.swapaxes(qm, 1, 2) @ qm
    rr = batch.h - np.swapaxes(qm, 1, 2) @ u  # (b, q, r)

    r_re = rr[:, :k_re, :]
    p_re = p[:, :k_re, :k_re].sum(axis=0)
    t_re = np.einsum("bai,bcj->acij", r_re, r_re)

    r_dim = batch.h.shape[2]
    p_vc = np.zeros(k_vc)
    t_vc = np.zeros((k_vc, r_dim, r_dim))
    start = k_re
    p_diag = np.diagonal(p, axis1=1, axis2=2)
    for k, width in enumerate(batch.widths):  # loop over components
        stop = start + int(width)
        if width:
            p_vc[k] = p_diag[:, start:stop].sum()
            block = rr[:, start:stop, :]
            t_vc[k] = np.einsum("bai,baj->ij", block, block)
        start = stop
    return LikelihoodPieces(
        logdet=logdet, hmh=hmh, p_re=p_re, p_vc=p_vc, t_re=t_re, t_vc=t_vc,
        n_groups=float(batch.g.shape[0]),
    )


def conditional_modes(
    batch: GroupBatch, chol_re: np.ndarray, sd_vc: np.ndarray, coef: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Best linear unbiased predictors of the random effects and their covariance.

    For ``c = [-beta; 1]`` the predictor is ``b_i = B A_i' V_i^{-1} (y_i - X_i beta)
    = Lambda C_i^{-1} Lambda' H_i c`` and its conditional covariance (relative
    to the scale) is ``B - B A_i'V_i^{-1}A_i B = Lambda C_i^{-1} Lambda'``.

    Returns
    -------
    modes : ndarray (b, q)
    cov : ndarray (b, q, q)
        Relative to ``scale``.
    """
    lam = relative_factor(chol_re, sd_vc, batch.widths)
    _, t_inv, u, _ = _solve_pieces(batch, chol_re, sd_vc)
    m_half = lam @ np.swapaxes(t_inv, 1, 2)  # Lambda T^{-T}
    modes = (m_half @ (u @ coef)[..., None])[..., 0]
    cov = m_half @ np.swapaxes(m_half, 1, 2)
    return modes, cov
