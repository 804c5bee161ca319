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
    return _assemble(l_bb, l_bj, l_jk)


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


def _fixed_effect_gradient(s: np.ndarray, c: np.ndarray, fac: float) -> tuple[np.ndarray, float]:
    """``d L / d beta = fac (S c)_X / Q`` and ``Q = c'Sc`` at fixed ``c = [-beta; 1]``."""
    p = s.shape[0] - 1
    sc = s @ c
    q = float(c @ sc)
    return fac * sc[:p] / q, q


def gls_at(pieces, xy_cross: np.ndarray, n_obs: float, reml: bool
           ) -> tuple[np.ndarray, np.ndarray, float, float]:
    """``(S, c, Q, fac)`` at the GLS fixed effects: ``S = [X y]'V^-1[X y]`` (from
    ``xy_cross`` and the pieces' ``hmh``), ``c = [-beta; 1]`` with ``beta = S_XX^-1
    S_Xy``, ``Q = c'Sc`` and ``fac = n - p`` (REML) or ``n`` (ML)."""
    s = xy_cross - pieces.hmh
    p = s.shape[0] - 1
    beta = np.linalg.solve(s[:p, :p], s[:p, p]) if p else np.zeros(0)
    c = np.concatenate([-beta, [1.0]])
    return s, c, float(c @ s @ c), n_obs - p if reml else n_obs


def hessian_from_gradients(pieces_at, xy_cross: np.ndarray, n_obs: float, reml: bool,
                           sd_vc: np.ndarray, fe_params: np.ndarray | None = None,
                           rel_step: float = 1e-4, chol_re: np.ndarray | None = None
                           ) -> np.ndarray:
    """The Hessian of ``L`` in (fixed effects, profile covariance parameters) from
    analytic gradients, for engines whose pieces have no second derivatives (the
    crossed and nested engines).

    The parameters are ``psi``: the lower triangle of ``Psi = chol_re chol_re'`` (row
    by row), then ``v_k = vcomp_k / scale``. The fixed-effects block is exact,
    ``L_bb = -fac/2 (Q_bb/Q - Q_b Q_b'/Q^2)`` with ``Q_bb = 2 S_XX``, ``Q_b = -2 (S c)_X``;
    the other blocks are central differences in each ``psi_j`` of the analytic
    gradient at fixed ``beta``,

        d L / d beta  = fac (S c)_X / Q,
        d L / d psi_j = -1/2 dlogdet_j + fac/(2Q) c' dhmh_j c [+ 1/2 tr(S_XX^{-1} dhmh_j[XX])],

    Steps are ``rel_step * max(scale_j, 1e-2)`` (a variance's own size; for a covariance
    the geometric mean of its two variances): the error is about ``rel_step^2``
    relative, plus rounding of the gradient over the step. The gradient along ``psi``
    comes from sqrt directions (:func:`dlmm.objective.profiled.profile_from_sqrt`),
    which loses its digits as a variance goes to 0: near 0 (a boundary fit) the Hessian
    is taken at four and eight steps of that variance and extrapolated linearly to it
    (twice the evaluations).

    Parameters
    ----------
    pieces_at : callable
        ``pieces_at(chol_re, sd_vc)``: the engine's pieces at a parameter value.
    sd_vc : ndarray (k_vc,)
        ``sqrt(vcomp / scale)`` at the point.
    fe_params : ndarray, optional
        The fixed effects; the GLS ones at the point if None.
    chol_re : ndarray (k_re, k_re), optional
        The factor of ``Psi`` at the point (none: no standard random effects).

    Returns
    -------
    ndarray (p + m, p + m)
        Fixed effects first, then ``psi``, as :func:`profiled_hessian`.
    """
    from .profiled import covariance_gradient

    sd_vc = np.asarray(sd_vc, dtype=float)
    chol0 = np.zeros((0, 0)) if chol_re is None else np.asarray(chol_re, dtype=float)
    k_re = chol0.shape[0]
    rows, cols = np.tril_indices(k_re)
    psi0 = chol0 @ chol0.T
    x0 = np.concatenate([psi0[rows, cols], sd_vc**2])
    variance = np.concatenate([rows == cols, np.ones(sd_vc.size, dtype=bool)])
    diag = np.diag(psi0)
    size = np.concatenate([np.sqrt(np.abs(diag[rows] * diag[cols])), sd_vc**2])
    off = np.where(rows == cols, 1.0, 2.0)  # a packed covariance moves Psi_ab and Psi_ba

    def point(x):
        psi = np.zeros((k_re, k_re))
        psi[rows, cols] = x[: rows.size]
        psi[cols, rows] = x[: rows.size]
        chol = np.linalg.cholesky(psi) if k_re else psi
        return chol, np.sqrt(np.maximum(x[rows.size:], 0.0))

    centre = pieces_at(chol0, sd_vc)
    s0 = xy_cross - centre.hmh
    p = s0.shape[0] - 1
    if fe_params is None:
        fe_params = np.linalg.solve(s0[:p, :p], s0[:p, p]) if p else np.zeros(0)
    c = np.concatenate([-np.asarray(fe_params, dtype=float), [1.0]])
    fac = n_obs - p if reml else n_obs

    def gradient(x):
        chol, sd = point(x)
        pieces = pieces_at(chol, sd)
        s = xy_cross - pieces.hmh
        g_beta, q = _fixed_effect_gradient(s, c, fac)
        s_inv = np.linalg.inv(s[:p, :p]) if reml and p else None
        g = covariance_gradient(pieces, c, 0.5 * fac / q, s_inv, (chol, sd))
        return np.concatenate([g_beta, off * g.grad_psi[rows, cols], g.grad_vc])

    m = x0.shape[0]
    steps = rel_step * np.maximum(size, 1e-2)

    def differences(at):
        out = np.zeros((p + m, m))  # d [L_b; L_psi] / d psi_j
        for j in range(m):  # loop over parameters
            e = np.zeros(m)
            e[j] = steps[j]
            out[:, j] = (gradient(at + e) - gradient(at - e)) / (2 * steps[j])
        return out

    # d/dv = d/dsd / (2 sd) loses every digit as sd -> 0: a variance within four steps
    # of 0 is differentiated at four and at eight steps and extrapolated linearly to
    # where it is (the Hessian changes fast near a boundary).
    near = variance & (x0 < 4 * steps)
    cross = differences(np.where(near, 4 * steps, x0))
    if near.any():
        far = differences(np.where(near, 8 * steps, x0))
        weight = np.where(near, (4 * steps - x0) / (4 * steps), 0.0)
        cross = cross + (cross - far) * weight.max()
    q_b = -2.0 * (s0 @ c)[:p]
    q = float(c @ s0 @ c)
    hess = np.zeros((p + m, p + m))
    hess[:p, :p] = -0.5 * fac * (2.0 * s0[:p, :p] / q - np.outer(q_b, q_b) / q**2)
    hess[:p, p:] = cross[:p]
    hess[p:, :p] = cross[:p].T
    hess[p:, p:] = 0.5 * (cross[p:] + cross[p:].T)
    return hess


class GradientHessian:
    """``theta -> (llf, grad, hess)`` from ``fun(theta) -> (llf, grad)``: the Hessian by
    differences of the analytic gradient, kept and reused while the point stays
    within ``reuse`` (relative) of where it was taken.

    For engines without Hessian pieces (the crossed engine): the optimizer's Newton
    polish and its convergence test use it, and the results' standard errors
    (:func:`hessian_from_profiled`). The polish's steps keep one Hessian while they
    converge (a chord method, :data:`differences` tells the optimizer so: each step
    then costs one evaluation) and ask for a new one only where the point has moved
    beyond ``reuse`` (:meth:`refresh` forces one where the chord steps stall).

    Steps are ``rel_step * max(1, |theta_j|)``. ``central=True`` (the default): ``2 m``
    more evaluations, error ~ ``rel_step^2`` relative (1e-10; standard errors then
    match statsmodels' analytic Hessian to ~1e-8), reused within ``reuse = 1e-6``
    (the default for central differences: the Hessian at the optimum to the digits
    of the standard errors). ``central=False``: forward differences from the
    gradient at the point, ``m`` evaluations, error ~1e-5 relative with ``rel_step =
    1e-6`` (where a variance is small, ``H_v = H_sd / 4 sd^2`` magnifies it), for the
    polish and its convergence test only; reused within ``reuse = 1e-3`` (the
    default for forward differences: over that distance the Hessian changes by about
    1e-3 relative, which moves the Newton decrement of the convergence test by as
    much, and the chord steps converge by about that factor each).
    """

    #: The optimizer's signal that this Hessian costs ``m`` or ``2 m`` evaluations (so
    #: its polish reuses it across steps: :func:`dlmm.optimize.driver.maximize`).
    differences = True

    def __init__(self, fun, rel_step: float = 1e-5, reuse: float | None = None,
                 central: bool = True):
        self.central = central
        self.fun = fun
        self.rel_step = rel_step
        self.reuse = (1e-6 if central else 1e-3) if reuse is None else float(reuse)
        self.last: tuple[np.ndarray, np.ndarray] | None = None
        #: Hessians taken so far (each ``m`` or ``2 m`` evaluations of ``fun``).
        self.taken = 0
        #: Directions differenced so far (each one or two evaluations of ``fun``).
        self.directions = 0

    def _close(self, x: np.ndarray) -> bool:
        if self.last is None or self.last[0].shape != x.shape:
            return False
        return bool(np.all(np.abs(x - self.last[0]) <= self.reuse * np.maximum(1.0, np.abs(x))))

    def _take(self, x: np.ndarray, grad: np.ndarray) -> np.ndarray:
        m = x.shape[0]
        hess = np.zeros((m, m))
        for j in range(m):  # loop over parameters
            e = np.zeros(m)
            e[j] = self.rel_step * max(1.0, abs(x[j]))
            low = np.asarray(self.fun(x - e)[1]) if self.central else grad
            hess[:, j] = (np.asarray(self.fun(x + e)[1]) - low) \
                / ((2 if self.central else 1) * e[j])
        self.last = (x.copy(), 0.5 * (hess + hess.T))
        self.taken += 1
        self.directions += m
        return self.last[1]

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        x = np.asarray(x, dtype=float)
        llf, grad = self.fun(x)
        grad = np.asarray(grad, dtype=float)
        if not self._close(x):
            self._take(x, grad)
        return llf, grad, self.last[1]

    def hessian(self, x: np.ndarray, grad: np.ndarray) -> np.ndarray:
        """The Hessian at ``x`` (whose gradient ``grad`` the caller has): the last one
        where ``x`` is within ``reuse`` of it, else a new one; ``fun(x)`` is not called
        again."""
        x = np.asarray(x, dtype=float)
        return self.last[1] if self._close(x) else self._take(x, np.asarray(grad, dtype=float))

    def refresh(self, x: np.ndarray, grad: np.ndarray) -> np.ndarray:
        """A new Hessian at ``x`` (whose gradient is ``grad``), however close the last."""
        return self._take(np.asarray(x, dtype=float), np.asarray(grad, dtype=float))


def hessian_from_profiled(hess_theta: np.ndarray, pieces, xy_cross: np.ndarray,
                          n_obs: float, reml: bool, sd_vc: np.ndarray,
                          min_sd: float = 1e-3, chol_re: np.ndarray | None = None
                          ) -> np.ndarray | None:
    """The Hessian of ``L`` in (fixed effects, profile covariance parameters ``psi``) at
    the GLS fixed effects, from the Hessian of the profiled llf in the sqrt parameters
    ``theta = (tril chol_re, sd_vc)`` (``hess_theta``, e.g. the optimizer's at its
    optimum) and the pieces there (along sqrt or profile directions; any further
    directions, such as residual parameters', are not used); None where a standard deviation
    (``sd_vc``, or the diagonal of ``chol_re``) is below ``min_sd`` (use
    :func:`hessian_from_gradients`).

    With ``J = d psi / d theta`` and its second derivatives (:func:`sqrt_jacobian`):
    ``H_theta = J' H_psi J + sum_i g_psi,i d2 psi_i``, so
    ``H_psi = J^{-T} (H_theta - sum_i g_psi,i d2 psi_i) J^{-1}``, and the pieces along
    ``psi`` are ``D_psi = J^{-T} D_theta``; at the GLS fixed effects (``Q_b = 0``)
    ``L_bb = -fac S_XX / Q``, ``L_bk = -fac (D_k c)_X / Q`` and, the profiled Hessian
    being the Schur complement of the fixed effects, ``L_psi = H_psi + L_pb L_bb^{-1} L_bp``.
    """
    from .profiled import covariance_gradient, direction_derivatives

    sd = np.asarray(sd_vc, dtype=float)
    chol = np.zeros((0, 0)) if chol_re is None else np.asarray(chol_re, dtype=float)
    sds = np.concatenate([np.abs(np.diag(chol)), np.abs(sd)])
    if sds.size == 0 or np.min(sds) < min_sd:
        return None
    s, c, q, fac = gls_at(pieces, xy_cross, n_obs, reml)
    p = s.shape[0] - 1
    s_xx = s[:p, :p]
    s_inv = np.linalg.inv(s_xx) if reml and p else None
    g = covariance_gradient(pieces, c, 0.5 * fac / q, s_inv, (chol, sd))
    rows, cols = np.tril_indices(chol.shape[0])
    g_psi = np.concatenate([np.where(rows == cols, 1.0, 2.0) * g.grad_psi[rows, cols],
                            g.grad_vc])
    jac, second = sqrt_jacobian(chol, sd)
    jac_inv = np.linalg.inv(jac)
    h_psi = jac_inv.T @ (np.asarray(hess_theta, dtype=float)
                         - np.einsum("i,ijk->jk", g_psi, second)) @ jac_inv
    kind, _, dhmh = direction_derivatives(pieces)
    if kind == "sqrt":
        d1 = np.einsum("ji,jrs->irs", jac_inv, dhmh[: jac.shape[0]])
    else:  # along each entry of Psi (an off-diagonal packed entry moves two), then v
        k = chol.shape[0]
        full = dhmh[: k * k].reshape(k, k, *dhmh.shape[1:])
        d1 = np.concatenate([full[rows, cols] + np.where(rows == cols, 0.0, 1.0)[:, None, None]
                             * full[cols, rows], dhmh[k * k: k * k + sd.size]])
    l_bb = -fac * s_xx / q
    l_bv = -fac * np.einsum("krs,s->rk", d1, c)[:p] / q
    l_vv = h_psi + (l_bv.T @ np.linalg.solve(l_bb, l_bv) if p else 0.0)
    return _assemble(l_bb, l_bv, l_vv)


def _assemble(l_bb: np.ndarray, l_bt: np.ndarray, l_tt: np.ndarray) -> np.ndarray:
    """``[[H_bb, H_bt], [H_bt', (H_tt + H_tt')/2]]``: fixed effects first, then the
    covariance parameters."""
    p, m = l_bt.shape
    hess = np.zeros((p + m, p + m))
    hess[:p, :p] = l_bb
    hess[:p, p:] = l_bt
    hess[p:, :p] = l_bt.T
    hess[p:, p:] = 0.5 * (l_tt + l_tt.T)
    return hess
