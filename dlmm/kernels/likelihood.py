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

from dataclasses import dataclass

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


SMALL_Q = 6


@dataclass(eq=False)
class EntrywiseSolve:
    """Per-group intermediates laid out (row, column, group), for small q.

    ``t``: Cholesky factor of C (q, q, b); ``u = T^{-1} Lambda' H`` (q, r, b);
    ``qm = T^{-1} Lambda' G`` (q, q, b); ``rr = R = H - Q'U`` (q, r, b).
    """

    t: np.ndarray
    u: np.ndarray
    qm: np.ndarray
    rr: np.ndarray


def entrywise_solve(batch: GroupBatch, lam: np.ndarray) -> EntrywiseSolve:
    """Cholesky factor, triangular solves and ``R`` entry by entry.

    Stacked LAPACK calls on 2 x 2 matrices are dominated by per-matrix overhead;
    here each matrix entry is a vector over all the groups of the batch.
    """
    g = batch.g_by_entry  # (q, q, b)
    h = batch.h_by_entry  # (q, r, b)
    q, r, nb = g.shape[0], h.shape[1], g.shape[2]
    nonzero = [(k, j, lam[k, j]) for k in range(q) for j in range(q) if lam[k, j] != 0.0]
    g_lam = np.zeros((q, q, nb))  # (G Lambda)[i, j]
    lam_h = np.zeros((q, r, nb))  # (Lambda' H)[j]
    for k, j, v in nonzero:
        g_lam[:, j] += v * g[:, k]
        lam_h[j] += v * h[k]
    c = np.zeros((q, q, nb))  # Lambda' G Lambda + I
    for k, i, v in nonzero:
        c[i] += v * g_lam[k]
    c[np.arange(q), np.arange(q)] += 1.0

    t = np.zeros((q, q, nb))  # Cholesky factor, entry by entry
    for j in range(q):
        d = c[j, j] - np.einsum("kb,kb->b", t[j, :j], t[j, :j]) if j else c[j, j].copy()
        t[j, j] = np.sqrt(d)
        for i in range(j + 1, q):
            off = c[i, j] - np.einsum("kb,kb->b", t[i, :j], t[j, :j]) if j else c[i, j]
            t[i, j] = off / t[j, j]
    u = np.zeros((q, r, nb))  # T^{-1} Lambda' H
    qm = np.zeros((q, q, nb))  # T^{-1} Lambda' G  (row i over columns)
    for i in range(q):
        acc_u = lam_h[i].copy()
        acc_q = g_lam[:, i].copy()  # row i of Lambda' G is column i of G Lambda
        for k in range(i):
            acc_u -= t[i, k] * u[k]
            acc_q -= t[i, k] * qm[k]
        u[i] = acc_u / t[i, i]
        qm[i] = acc_q / t[i, i]
    rr = h.copy()  # R = H - Q'U, row a of R over (r, b)
    for a in range(q):
        for k in range(q):
            rr[a] -= qm[k, a] * u[k]
    return EntrywiseSolve(t, u, qm, rr)


def _entrywise_pieces(batch: GroupBatch, lam: np.ndarray,
                      solved: EntrywiseSolve | None = None) -> LikelihoodPieces:
    """:func:`batch_pieces` for small q from :func:`entrywise_solve`; the sums over
    groups are matrix products (BLAS)."""
    k_re = batch.k_re
    solved = entrywise_solve(batch, lam) if solved is None else solved
    t, u, qm, rr = solved.t, solved.u, solved.qm, solved.rr
    q, r, nb = u.shape
    logdet = 2.0 * float(np.log(t[np.arange(q), np.arange(q)]).sum())
    hmh = sum(u[i] @ u[i].T for i in range(q))
    p_sum = batch.g_sum - sum(qm[i] @ qm[i].T for i in range(q))
    r_re = rr[:k_re].reshape(k_re * r, nb)
    t_re = (r_re @ r_re.T).reshape(k_re, r, k_re, r).transpose(0, 2, 1, 3)
    k_vc = batch.widths.shape[0]
    p_vc = np.zeros(k_vc)
    t_vc = np.zeros((k_vc, r, r))
    start = k_re
    for k, width in enumerate(batch.widths):  # loop over components
        stop = start + int(width)
        if width:
            p_vc[k] = np.trace(p_sum[start:stop, start:stop])
            block = np.moveaxis(rr[start:stop], 1, 0).reshape(r, -1)
            t_vc[k] = block @ block.T
        start = stop
    return LikelihoodPieces(
        logdet=logdet, hmh=hmh, p_re=p_sum[:k_re, :k_re].copy(), p_vc=p_vc,
        t_re=np.ascontiguousarray(t_re), t_vc=t_vc, n_groups=float(nb),
    )


def batch_pieces(
    batch: GroupBatch, chol_re: np.ndarray, sd_vc: np.ndarray
) -> LikelihoodPieces:
    """Likelihood pieces of one batch of groups (see the module docstring).

    Batches with at most ``SMALL_Q`` random-effect columns take the
    entry-by-entry path (:func:`_entrywise_pieces`), larger ones stacked LAPACK.

    Parameters
    ----------
    batch : GroupBatch
    chol_re : ndarray (k_re, k_re)
        Lower-triangular factor of ``Psi`` (may be singular).
    sd_vc : ndarray (k_vc,)
        ``sqrt(vcomp / scale)`` of each component (may be 0).
    """
    if batch.q <= SMALL_Q:
        return _entrywise_pieces(batch, relative_factor(chol_re, sd_vc, batch.widths))
    return _stacked_pieces(batch, chol_re, sd_vc)


def _stacked_pieces(
    batch: GroupBatch, chol_re: np.ndarray, sd_vc: np.ndarray
) -> LikelihoodPieces:
    """:func:`batch_pieces` with stacked LAPACK calls (any q)."""
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
