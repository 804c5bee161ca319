"""statsmodels' penalties, on the driver's reduced sums.

* L1 on the fixed effects (``fit_regularized``): statsmodels' cyclic coordinate
  descent ("shooting") with the covariance held fixed. For coordinate ``j``,
  with ``M = X'V^{-1}X`` (``V = scale (I + A B A')``, the fitted covariance)
  and the GLS estimate ``b`` (so ``X'V^{-1}y = M b``), the loss in ``x = beta_j``
  is ``a x^2 + c x + alpha_j |x|`` with ``a = M_jj`` and
  ``c = -2 (M (b - beta))_j`` (``beta_j`` set to 0 first); its minimum is
  ``-(c - alpha_j) / 2a`` if ``c > alpha_j``, ``-(c + alpha_j) / 2a`` if
  ``c < -alpha_j``, else 0. Coefficients already below ``ceps`` in magnitude
  are skipped; the sweep stops when no coefficient moves by ``ptol``.
* A penalty on ``Psi`` (``fit(cov_pen=...)``): statsmodels' ``CovariancePenalty``
  duck-typed (``func(Psi, Psi^{-1})`` and ``deriv(Psi, Psi^{-1})``, the
  derivative over ``Psi``'s packed lower triangle with off-diagonal entries
  standing for both halves), subtracted from the log-likelihood. In the square
  root parameterization ``Psi = L L'``, ``d pen / d L = 2 G L`` (lower triangle),
  ``G`` the symmetric matrix of the derivative.
"""

from __future__ import annotations

import numpy as np

from ..exceptions import InputError


def l1_shooting(xtvx: np.ndarray, beta_gls: np.ndarray, alpha, ceps: float = 1e-4,
                ptol: float = 1e-6, maxit: int = 200) -> np.ndarray:
    """L1-penalized fixed effects by coordinate descent from the GLS estimate (see the
    module docstring); ``alpha`` a scalar or one weight per fixed effect."""
    p = beta_gls.shape[0]
    weights = np.full(p, float(alpha)) if np.isscalar(alpha) else np.asarray(alpha, float)
    if weights.shape != (p,):
        raise InputError(f"alpha must be a scalar or {p} weights (one per fixed effect), "
                         f"got {weights.size}")
    beta = np.array(beta_gls, dtype=float)
    for _ in range(maxit):
        before = beta.copy()
        for j in range(p):  # p coordinates, not groups: driver-only arithmetic
            if abs(beta[j]) < ceps:
                continue
            beta[j] = 0.0
            a = xtvx[j, j]
            c = -2.0 * (xtvx[j] @ (beta_gls - beta))
            if c > weights[j]:
                beta[j] = -(c - weights[j]) / (2 * a)
            elif c < -weights[j]:
                beta[j] = -(c + weights[j]) / (2 * a)
        if np.abs(before - beta).max() < ptol:
            break
    return beta


def check_covariance_penalty(cov_pen, k_re: int) -> None:
    """A statsmodels ``CovariancePenalty`` (``func`` and ``deriv``), for a model with
    random effects (statsmodels applies it only then)."""
    if not (callable(getattr(cov_pen, "func", None)) and callable(getattr(cov_pen, "deriv",
                                                                           None))):
        raise InputError("cov_pen must be a covariance penalty with func(mat, mat_inv) and "
                         "deriv(mat, mat_inv), such as statsmodels' "
                         "statsmodels.base._penalties.PSD(weight)")
    if k_re == 0:
        raise InputError("cov_pen penalizes cov_re, and this model has no standard random "
                         "effects (statsmodels ignores it then): leave it out")


def covariance_penalty(cov_pen, chol: np.ndarray) -> tuple[float, np.ndarray]:
    """The penalty at ``Psi = L L'`` and its gradient over the packed lower triangle of
    ``L`` (the optimizer's coordinates)."""
    psi = chol @ chol.T
    try:
        psi_inv = np.linalg.inv(psi)
    except np.linalg.LinAlgError:
        return np.inf, np.zeros(chol.shape[0] * (chol.shape[0] + 1) // 2)
    value = float(cov_pen.func(psi, psi_inv))
    if not np.isfinite(value):
        return np.inf, np.zeros(chol.shape[0] * (chol.shape[0] + 1) // 2)
    k = chol.shape[0]
    rows, cols = np.tril_indices(k)
    packed = np.asarray(cov_pen.deriv(psi, psi_inv), dtype=float)
    sym = np.zeros((k, k))
    sym[rows, cols] = packed
    sym = (sym + sym.T) / 2  # off-diagonal entries stood for both halves
    sym[np.diag_indices(k)] = packed[rows == cols]
    return value, (2 * sym @ chol)[rows, cols]


def pop_penalties(options: dict):
    """Take statsmodels' ``fe_pen`` and ``cov_pen`` out of ``fit``'s options: the
    covariance penalty (or None); ``fe_pen`` is refused in words. The penalty's
    size is checked once the model is learned (:func:`check_covariance_penalty`)."""
    fe_pen = options.pop("fe_pen", None)
    cov_pen = options.pop("cov_pen", None)
    if fe_pen is not None:
        raise InputError(
            "fe_pen is not supported: statsmodels' fit subtracts it at the unpenalized GLS "
            "fixed effects and leaves it out of the gradient, so its fixed effects are not "
            "penalized; for penalized fixed effects use fit_regularized(method='l1', "
            "alpha=...)")
    return cov_pen


def penalize(cov_pen, chol: np.ndarray, llf: float, grad: np.ndarray
             ) -> tuple[float, np.ndarray]:
    """``llf - pen(Psi)`` and its gradient in the square-root coordinates (``grad``
    holds the packed ``L`` first, then the components, whose part is unchanged)."""
    value, dpen = covariance_penalty(cov_pen, chol)
    out = np.array(grad, dtype=float)
    out[: dpen.size] -= dpen
    return llf - value, out


def penalized(objective, cov_pen):
    """``θ -> (llf - pen(Psi), gradient)`` of an objective whose θ is statsmodels'
    sqrt vector (:class:`~dlmm.objective.objective.ProfiledObjective`)."""

    def fun(theta):
        llf, grad = objective(theta)
        return penalize(cov_pen, objective.theta_map.engine_args(theta)[0], llf, grad)

    return fun
