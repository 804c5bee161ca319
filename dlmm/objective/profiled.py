"""Driver math on the reduced sums: GLS fixed effects, scale, llf and gradient.

With ``S = K - hmh = sum_i [X_i y_i]' V_i^{-1} [X_i y_i]``:

    beta = S_XX^{-1} S_Xy,   qf = S_yy - S_yX beta,   scale = qf / fac
    llf  = -1/2 log|V| - fac/2 log(qf) - fac/2 (1 + log(2 pi) - log(fac))
           [REML: - 1/2 log|S_XX|],       fac = n - p (REML) or n (ML).

Where ``S_XX`` is not positive definite or ``qf`` is not positive (rounding at
a point where the fit is exact) the profiled likelihood is undefined:
:class:`~dlmm.InfeasiblePoint` is raised, and the optimizer treats the point as
``llf = -inf``.

Every engine's pieces give ``logdet = log|V|``, ``hmh`` and, for each of some
parameter directions ``j``, the derivatives ``dlogdet_j`` and ``dhmh_j``
(:func:`direction_derivatives`). Since ``dS_j = -dhmh_j``, with ``c = [-beta; 1]``
one formula gives the gradient along every direction (:func:`direction_gradient`):

    d llf_j = -1/2 dlogdet_j + fac/(2 qf) c' dhmh_j c [+ 1/2 tr(S_XX^{-1} dhmh_j[XX])]

Two kinds of directions:

* ``"profile"`` (the grouped engine's :class:`~dlmm.kernels.pieces.LikelihoodPieces`):
  every entry of ``Psi`` taken as free (``dlogdet = p_re``, ``dhmh = t_re``), then
  each ``vcomp_k / scale`` (``p_vc``, ``t_vc``): the gradient comes out in the
  profile parameterization.
* ``"sqrt"`` (the crossed engine's :class:`~dlmm.kernels.crossed.CrossedPieces`):
  the entries of the packed square-root parameter ``(tril L, sd_vc)``: the
  gradient comes out in the optimizer's parameterization, valid also where a
  standard deviation is 0. Its profile form ``d llf / dv_k = d llf / dsd_k / (2 sd_k)``
  is NaN at ``sd_k = 0`` (the limit is not available from sqrt derivatives).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import linalg

from ..exceptions import InfeasiblePoint
from ..kernels.pieces import LikelihoodPieces
from .shift import log_jacobian


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
    grad_theta : ndarray or None
        d llf / d theta in the packed square-root parameterization, when the
        pieces' directions are those (``"sqrt"``); :func:`grad_sqrt` returns it.
    grad_res : ndarray or None
        d llf / d c_k along the residual components' coefficients, when the pieces
        carry them (:class:`~dlmm.kernels.residual_blocks.ResidualPieces`).
    """

    llf: float
    grad_psi: np.ndarray
    grad_vc: np.ndarray
    fe_params: np.ndarray
    scale: float
    xvx: np.ndarray
    grad_theta: np.ndarray | None = None
    grad_res: np.ndarray | None = None


def profiled_value(
    pieces, xy_cross: np.ndarray, n_obs: float, reml: bool,
    theta: tuple[np.ndarray, np.ndarray] | None = None, xy_scale: np.ndarray | None = None,
) -> ProfiledValue:
    """Profiled llf, GLS fixed effects, scale and gradient from reduced sums.

    ``theta = (chol_re, sd_vc)``, the point the pieces were computed at, turns
    a gradient along sqrt directions into the profile one (``grad_vc``); without
    it that is NaN. Pieces along profile directions do not need it.

    ``xy_scale``, the scales of the columns the sums were taken of
    (:mod:`dlmm.spec.centering`), gives the llf and the scale in the model's units
    (:func:`dlmm.objective.shift.log_jacobian`); the fixed effects and ``xvx`` stay
    those of the sums (``beta = A beta_c + a``), and the gradients are the same.
    """
    llf, beta, chol, qf, s_xx = _profile(pieces, xy_cross, n_obs, reml, xy_scale)
    p = beta.shape[0]
    fac = n_obs - p if reml else n_obs
    c = np.concatenate([-beta, [1.0]])
    s_xx_inv = linalg.cho_solve((chol, True), np.eye(p)) if reml and p else None
    grad = covariance_gradient(pieces, c, 0.5 * fac / qf, s_xx_inv, theta)
    scale = qf / fac
    if xy_scale is not None:
        scale *= float(xy_scale[-1]) ** 2
    return ProfiledValue(llf, grad.grad_psi, grad.grad_vc, beta, scale, s_xx,
                         grad.grad_theta, grad.grad_res)


def profiled_llf(pieces, xy_cross: np.ndarray, n_obs: float, reml: bool,
                 xy_scale: np.ndarray | None = None) -> float:
    """The profiled llf alone, as :func:`profiled_value` gives it (``pieces`` need no
    derivatives)."""
    return _profile(pieces, xy_cross, n_obs, reml, xy_scale)[0]


def _profile(pieces, xy_cross: np.ndarray, n_obs: float, reml: bool,
             xy_scale: np.ndarray | None):
    """``(llf, beta, chol S_XX, qf, S_XX)`` from ``log|V|`` and ``hmh`` (the module
    docstring's formulas); :class:`~dlmm.InfeasiblePoint` where they are undefined."""
    s = xy_cross - pieces.hmh
    p = s.shape[0] - 1
    s_xx = s[:p, :p]
    s_xy = s[:p, p]
    chol = np.zeros((0, 0))
    if p:
        try:
            chol = np.linalg.cholesky(s_xx)
        except np.linalg.LinAlgError:
            raise InfeasiblePoint("X'V^-1 X is not positive definite here") from None
        beta = np.linalg.solve(s_xx, s_xy)
        logdet_xx = 2.0 * np.log(np.diag(chol)).sum()
    else:
        beta = np.zeros(0)
        logdet_xx = 0.0
    qf = float(s[p, p] - s_xy @ beta)
    if not (qf > 0.0 and np.isfinite(qf) and np.isfinite(logdet_xx)
            and np.isfinite(pieces.logdet)):
        raise InfeasiblePoint(f"the residual quadratic form is {qf:.3g} here (not positive)")
    fac = n_obs - p if reml else n_obs
    llf = (
        -0.5 * pieces.logdet
        - 0.5 * fac * np.log(qf)
        - 0.5 * fac * (1.0 + np.log(2.0 * np.pi) - np.log(fac))
    )
    if reml:
        llf -= 0.5 * logdet_xx
    if xy_scale is not None:
        llf += log_jacobian(xy_scale, n_obs, reml)
    return float(llf), beta, chol, qf, s_xx


def direction_derivatives(pieces) -> tuple[str, np.ndarray, np.ndarray]:
    """``(kind, dlogdet, dhmh)``: the derivatives of ``log|V|`` (m,) and of ``hmh``
    (m, r, r) along the pieces' parameter directions (see the module docstring); the
    residual strata's weights (``p_res``, ``t_res``) last, where the pieces have them."""
    kind = getattr(pieces, "directions", "profile")
    if kind == "profile":
        if not isinstance(pieces, LikelihoodPieces):
            raise TypeError(f"pieces of type {type(pieces).__name__} name no directions")
        k_re = pieces.p_re.shape[0]
        r = pieces.t_re.shape[2]
        p_res = getattr(pieces, "p_res", None)
        extra = [] if p_res is None else [p_res]
        dlogdet = np.concatenate([pieces.p_re.reshape(-1), pieces.p_vc, *extra])
        dhmh = np.concatenate([pieces.t_re.reshape(k_re * k_re, r, r), pieces.t_vc,
                               *([] if p_res is None else [pieces.t_res])])
        return kind, dlogdet, dhmh
    if kind != "sqrt":
        raise ValueError(f"unknown kind of directions {kind!r}")
    return kind, np.asarray(pieces.dlogdet, dtype=float), np.asarray(pieces.dhmh, dtype=float)


def direction_gradient(dlogdet: np.ndarray, dhmh: np.ndarray, c: np.ndarray, weight: float,
                       s_xx_inv: np.ndarray | None = None) -> np.ndarray:
    """``-1/2 dlogdet_j + weight c' dhmh_j c [+ 1/2 tr(S_XX^{-1} dhmh_j[XX])]`` for every
    direction ``j``: the one gradient formula of every engine."""
    grad = -0.5 * dlogdet + weight * np.einsum("jab,a,b->j", dhmh, c, c)
    if s_xx_inv is not None:
        p = s_xx_inv.shape[0]
        grad = grad + 0.5 * np.einsum("jab,ab->j", dhmh[:, :p, :p], s_xx_inv)
    return grad


@dataclass
class CovarianceGradient:
    """A covariance gradient in the profile (and, if known, the sqrt) parameterization."""

    grad_psi: np.ndarray
    grad_vc: np.ndarray
    grad_theta: np.ndarray | None = None
    grad_res: np.ndarray | None = None


def covariance_gradient(pieces, c: np.ndarray, weight: float,
                        s_xx_inv: np.ndarray | None = None,
                        theta: tuple[np.ndarray, np.ndarray] | None = None
                        ) -> CovarianceGradient:
    """The covariance gradient's terms for a given ``c`` and quadratic weight.

    :func:`direction_gradient` along the pieces' directions; with ``c = [-beta; 1]``
    and ``weight = fac / (2 qf)`` it is the profiled gradient; profile likelihoods
    use other ``c`` (fixed coefficients held) and weights (a fixed scale,
    ``1 / (2 sigma^2)``). ``s_xx_inv`` adds the REML term. Along profile
    directions ``grad_psi`` is symmetrized; along sqrt directions ``grad_theta``
    is the gradient and the profile form needs ``theta = (chol_re, sd_vc)``.
    """
    kind, dlogdet, dhmh = direction_derivatives(pieces)
    grad = direction_gradient(dlogdet, dhmh, c, weight, s_xx_inv)
    if kind == "profile":
        k_re = pieces.p_re.shape[0]
        k_cov = k_re * k_re + pieces.p_vc.shape[0]
        grad_psi = grad[: k_re * k_re].reshape(k_re, k_re)
        grad_res = grad[k_cov:] if getattr(pieces, "p_res", None) is not None else None
        return CovarianceGradient(0.5 * (grad_psi + grad_psi.T), grad[k_re * k_re: k_cov],
                                  grad_res=grad_res)
    return CovarianceGradient(*profile_from_sqrt(grad, theta), grad_theta=grad)


def profile_from_sqrt(grad_theta: np.ndarray, theta: tuple[np.ndarray, np.ndarray] | None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """``(grad_psi, grad_vc)`` from a gradient in packed ``(tril L, sd_vc)``.

    ``Psi = L L'``: ``d llf / dL = tril(2 G L)`` for the symmetric matrix gradient
    ``G = grad_psi``, a square linear system in the ``k_re (k_re + 1) / 2`` entries of
    ``G`` that ``L`` of full rank determines (NaN where ``L`` is singular, a boundary
    the sqrt derivatives do not see past). ``d llf / dv_k = d llf / dsd_k / (2 sd_k)``
    (NaN at ``sd_k = 0``). Without ``theta`` both are NaN.
    """
    if theta is None:
        return np.zeros((0, 0)), np.full(grad_theta.shape[0], np.nan)
    chol_re, sd_vc = theta
    chol = np.asarray(chol_re, dtype=float)
    chol = chol.reshape(0, 0) if chol.size == 0 else chol
    k_re = chol.shape[0]
    n_l = k_re * (k_re + 1) // 2
    grad_psi = _psi_gradient(np.asarray(grad_theta[:n_l], dtype=float), chol)
    sd = np.asarray(sd_vc, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        grad_vc = np.where(sd != 0, grad_theta[n_l:] / (2.0 * np.where(sd != 0, sd, 1.0)),
                           np.nan)
    return grad_psi, grad_vc


def _psi_gradient(grad_l: np.ndarray, chol: np.ndarray) -> np.ndarray:
    """The symmetric ``G`` with ``tril(2 G L) = grad_l`` (packed as ``np.tril_indices``);
    NaN where ``L`` is singular."""
    k_re = chol.shape[0]
    if k_re == 0:
        return np.zeros((0, 0))
    if not np.all(np.abs(np.diag(chol)) > 0):
        return np.full((k_re, k_re), np.nan)
    rows, cols = np.tril_indices(k_re)
    basis = np.zeros((rows.size, k_re, k_re))
    basis[np.arange(rows.size), rows, cols] = 1.0
    basis[np.arange(rows.size), cols, rows] = 1.0
    system = (2.0 * basis @ chol)[:, rows, cols].T  # column m: tril(2 E_m L)
    try:
        entries = np.linalg.solve(system, grad_l)
    except np.linalg.LinAlgError:
        return np.full((k_re, k_re), np.nan)
    grad = np.zeros((k_re, k_re))
    grad[rows, cols] = entries
    grad[cols, rows] = entries
    return grad


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
    gradient ``G``; ``v = s^2`` gives ``d llf / ds = 2 s d llf / dv``. When the
    pieces gave the gradient along sqrt directions (``value.grad_theta``) it is
    that, as it is.
    """
    if getattr(value, "grad_theta", None) is not None:
        return np.asarray(value.grad_theta, dtype=float)
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
