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

A step over a batch of many groups runs :func:`sweep_batch`: one compiled loop
over its groups (:mod:`dlmm.kernels.step_loop`) that forms these and adds them,
with the Hessian's pieces when asked (:mod:`dlmm.kernels.hessian`), in one sweep.
The NumPy forms (:func:`numpy_batch_pieces`: stacked LAPACK calls, or entry by
entry for small q) compute the same sums batched over the groups: the step of a
batch of few groups (:data:`COMPILED_MIN_GROUPS`), the reference the compiled
loop is tested against, and the solve of :func:`conditional_modes`.
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


@dataclass(eq=False)
class SweepSums:
    """What :func:`sweep_batch` returns: the sums over a batch's groups (see
    :class:`~dlmm.kernels.pieces.LikelihoodPieces`; ``trace2`` (m, m) and ``d2``
    (m, m, r, r) as in :class:`~dlmm.kernels.hessian.HessianPieces`, None without
    directions)."""

    logdet: float
    hmh: np.ndarray
    p_re: np.ndarray
    p_vc: np.ndarray
    t_re: np.ndarray
    t_vc: np.ndarray
    trace2: np.ndarray | None
    d2: np.ndarray | None

    def likelihood(self, n_groups: float) -> LikelihoodPieces:
        return LikelihoodPieces(logdet=self.logdet, hmh=self.hmh, p_re=self.p_re,
                                p_vc=self.p_vc, t_re=self.t_re, t_vc=self.t_vc,
                                n_groups=float(n_groups))


_NO_DIRECTIONS = (np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int64),
                  np.zeros(0, dtype=np.int64))


def sweep_batch(batch: GroupBatch, chol_re: np.ndarray, sd_vc: np.ndarray,
                pairs: list[list[tuple[int, int]]] | None = None) -> SweepSums:
    """The likelihood pieces of a batch (and, given the directions ``pairs`` -- each
    ``E_j`` as its unit entries ``(a, b)``, :func:`dlmm.kernels.hessian.direction_pairs`
    -- the Hessian's ``trace2`` and ``d2``) in one compiled loop over its groups
    (:func:`dlmm.kernels.step_loop.step_loop`)."""
    k_re = batch.k_re
    k_vc = batch.widths.shape[0]
    nb, q, r = batch.h.shape
    if q == k_re and k_re in (1, 2) and nb:
        return _small_sweep(batch, chol_re, pairs)
    from .step_loop import step_loop

    col_comp = np.repeat(np.arange(k_vc, dtype=np.int64), batch.widths)
    col_sd = np.asarray(sd_vc, dtype=float)[col_comp] if k_vc else np.zeros(0)
    chol = np.ascontiguousarray(chol_re, dtype=float).reshape(k_re, k_re)
    if pairs is None:
        dir_ptr, dir_a, dir_b = _NO_DIRECTIONS
    else:
        dir_ptr = np.cumsum([0] + [len(pj) for pj in pairs]).astype(np.int64)
        flat = np.array([e for pj in pairs for e in pj], dtype=np.int64).reshape(-1, 2)
        dir_a, dir_b = np.ascontiguousarray(flat[:, 0]), np.ascontiguousarray(flat[:, 1])
    m = dir_ptr.shape[0] - 1
    hmh = np.zeros((r, r))
    p_re = np.zeros((k_re, k_re))
    p_vc = np.zeros(k_vc)
    t_re = np.zeros((k_re, k_re, r, r))
    t_vc = np.zeros((k_vc, r, r))
    trace2 = np.zeros((m, m))
    d2 = np.zeros((m, m, r, r))
    logdet = 0.0
    if nb:
        g = np.ascontiguousarray(batch.g, dtype=float)
        h = np.ascontiguousarray(batch.h, dtype=float)
        logdet = float(step_loop(g, h, k_re, chol, col_sd, col_comp, dir_ptr, dir_a, dir_b,
                                 pairs is not None, hmh, p_re, p_vc, t_re, t_vc, trace2, d2))
    # the loop summed one side of each symmetric sum: mirror it
    upper = np.triu_indices(r, 1)
    hmh[upper[::-1]] = hmh[upper]
    for a in range(k_re):  # a few random-effect columns
        t_re[a, a][upper[::-1]] = t_re[a, a][upper]
        for b in range(a + 1, k_re):
            t_re[b, a] = t_re[a, b].T
    for k in range(k_vc):  # loop over components
        t_vc[k][upper[::-1]] = t_vc[k][upper]
    if pairs is None:
        return SweepSums(logdet, hmh, p_re, p_vc, t_re, t_vc, None, None)
    for j in range(m):  # loop over parameters
        for k in range(j + 1, m):
            trace2[k, j] = trace2[j, k]
            d2[k, j] = d2[j, k].T
    return SweepSums(logdet, hmh, p_re, p_vc, t_re, t_vc, trace2, d2)


def _small_sweep(batch: GroupBatch, chol_re: np.ndarray,
                 pairs: list[list[tuple[int, int]]] | None) -> SweepSums:
    """:func:`sweep_batch` of a batch of one or two standard random effects and no
    component columns (:func:`dlmm.kernels.step_loop.small_step_loop`)."""
    from .step_loop import small_step_loop

    nb, k, r = batch.h.shape
    k_vc = batch.widths.shape[0]
    m = k * (k + 1) // 2
    if pairs is not None and len(pairs) != m + k_vc:
        raise ValueError("directions do not match the batch's layout")
    uu = np.zeros((r, r))
    rr_sum = np.zeros((k * r, k * r))
    ry_sum = np.zeros((k * r, (2 * m - 1) * r) if pairs is not None else (1, 1))
    p_re = np.zeros((k, k))
    tr = np.zeros((m, m))
    chol = np.ascontiguousarray(chol_re, dtype=float).reshape(k, k)
    logdet = float(small_step_loop(np.ascontiguousarray(batch.g, dtype=float),
                                   np.ascontiguousarray(batch.h, dtype=float), chol,
                                   pairs is not None, uu, rr_sum, ry_sum, p_re, tr))
    t_re = rr_sum.reshape(k, r, k, r).transpose(0, 2, 1, 3).copy()
    zeros_vc = np.zeros((k_vc, r, r))
    if pairs is None:
        return SweepSums(logdet, uu, p_re, np.zeros(k_vc), t_re, zeros_vc, None, None)
    # R~'Y~ by the loop's blocks: Y_kk[b] for every (kk, b) but (0, 1) (see its docstring)
    ry = ry_sum.reshape(k, r, 2 * m - 1, r)
    block = {kb: i for i, kb in enumerate(
        (kk, b) for kk in range(m) for b in range(k) if (kk, b) != (0, 1))}
    m_all = m + k_vc  # components of no column in this batch: zero rows and columns
    d2 = np.zeros((m_all, m_all, r, r))
    trace2 = np.zeros((m_all, m_all))
    for j in range(m):  # loop over parameters; E_j symmetric: d2[kk, j] = d2[j, kk]'
        for kk in range(j, m):
            d2[j, kk] = sum(ry[a, :, block[kk, b], :] for a, b in pairs[j])
            d2[kk, j] = d2[j, kk].T
            trace2[j, kk] = trace2[kk, j] = tr[j, kk]
    return SweepSums(logdet, uu, p_re, np.zeros(k_vc), t_re, zeros_vc, trace2, d2)


#: Groups from which a batch's step runs the compiled loop. The first compiled call
#: of a process pays numba's start and the load of the cached machine code (0.3-0.4 s
#: of CPU, measured on the loaded 2-core machine), about what eight Newton steps of
#: NumPy cost for 70,000 groups (0.5-0.7 us a group each); below, the NumPy form
#: (:func:`numpy_batch_pieces`), whose cost is then a few milliseconds a step.
COMPILED_MIN_GROUPS = 20_000


def uses_compiled(batch: GroupBatch) -> bool:
    """Whether a step over ``batch`` runs the compiled loop (:data:`COMPILED_MIN_GROUPS`)."""
    return batch.g.shape[0] >= COMPILED_MIN_GROUPS


def compiled_batch_pieces(batch: GroupBatch, chol_re: np.ndarray,
                          sd_vc: np.ndarray) -> LikelihoodPieces:
    """:func:`batch_pieces` by the compiled loop (:func:`sweep_batch`), whatever the size."""
    return sweep_batch(batch, chol_re, sd_vc).likelihood(batch.g.shape[0])


def batch_pieces(
    batch: GroupBatch, chol_re: np.ndarray, sd_vc: np.ndarray
) -> LikelihoodPieces:
    """Likelihood pieces of one batch of groups (see the module docstring): by the
    compiled loop (:func:`compiled_batch_pieces`) from :data:`COMPILED_MIN_GROUPS`
    groups, else batched in NumPy (:func:`numpy_batch_pieces`).

    Parameters
    ----------
    batch : GroupBatch
    chol_re : ndarray (k_re, k_re)
        Lower-triangular factor of ``Psi`` (may be singular).
    sd_vc : ndarray (k_vc,)
        ``sqrt(vcomp / scale)`` of each component (may be 0).
    """
    if uses_compiled(batch):
        return compiled_batch_pieces(batch, chol_re, sd_vc)
    return numpy_batch_pieces(batch, chol_re, sd_vc)


def numpy_batch_pieces(
    batch: GroupBatch, chol_re: np.ndarray, sd_vc: np.ndarray
) -> LikelihoodPieces:
    """:func:`batch_pieces` batched in NumPy (the reference of the compiled loop).

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


def compiled_conditional_modes(batch: GroupBatch, chol_re: np.ndarray, sd_vc: np.ndarray,
                               coef: np.ndarray, scale: float = 1.0
                               ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`conditional_modes` by one compiled loop over the groups
    (:func:`dlmm.kernels.effects_loop.modes_loop`), the covariances times ``scale``."""
    from .effects_loop import modes_loop

    nb, q, r = batch.h.shape
    k_re = batch.k_re
    col_comp = np.repeat(np.arange(batch.widths.shape[0], dtype=np.int64), batch.widths)
    col_sd = np.asarray(sd_vc, dtype=float)[col_comp] if col_comp.size else np.zeros(0)
    modes = np.zeros((nb, q))
    cov = np.zeros((nb, q, q))
    if nb:
        modes_loop(np.ascontiguousarray(batch.g, dtype=float),
                   np.ascontiguousarray(batch.h, dtype=float), k_re,
                   np.ascontiguousarray(chol_re, dtype=float).reshape(k_re, k_re), col_sd,
                   np.ascontiguousarray(coef, dtype=float), float(scale), modes, cov)
    return modes, cov
