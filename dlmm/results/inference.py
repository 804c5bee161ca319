"""Inference at the optimum: covariance of the estimates, boundary and convergence checks.

Standard errors come from the analytic Hessian of the log-likelihood in
(fixed effects, profile covariance parameters), as statsmodels computes them:
``cov_params = inv(-H)`` over the free parameters.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np

from ..optimize.driver import OptimizeResult
from .estimates import Inference

SINGULAR_TOL = 1e-4
logger = logging.getLogger("dlmm")


def covariance_from_hessian(hessian: np.ndarray, freepat: np.ndarray | None) -> Inference:
    """``inv(-H)`` over the free parameters (a pseudo-inverse, with a warning, when
    ``-H`` is singular); warns when ``-H`` has a non-positive diagonal."""
    k = hessian.shape[0]
    free = np.arange(k) if freepat is None else np.flatnonzero(freepat)
    cov = np.zeros((k, k))
    sub = -hessian[np.ix_(free, free)]
    singular = False
    try:
        inv = np.linalg.inv(sub)
        if not np.all(np.isfinite(inv)):
            raise np.linalg.LinAlgError("non-finite inverse")
    except np.linalg.LinAlgError:
        inv = np.linalg.pinv(sub)
        singular = True
        warnings.warn("the Hessian is singular: standard errors use a pseudo-inverse",
                      RuntimeWarning, stacklevel=4)
    cov[np.ix_(free, free)] = inv
    if np.any(np.diag(sub) <= 0):
        warnings.warn("the Hessian at the estimate is not negative definite",
                      RuntimeWarning, stacklevel=4)
    return Inference(hessian=hessian, cov_params=cov, freepat=freepat,
                     hessian_singular=singular)


def is_singular(psi: np.ndarray, v: np.ndarray, tol: float = SINGULAR_TOL) -> bool:
    """lme4's ``isSingular``, made scale-free: a random effect whose standard deviation
    relative to the residual's (``sqrt(Psi_aa)``, ``sqrt(vcomp / scale)``) is below
    ``tol``, or random effects whose correlation matrix ``R`` is singular (an
    eigenvalue below ``tol^2``, or a diagonal entry of its Cholesky factor below
    ``tol``): a zero variance or perfectly correlated effects. Judging the
    correlations rather than ``Psi`` itself keeps a covariate's units (a slope
    on seconds or on years) from deciding the answer."""
    if psi.size:
        sd = np.sqrt(np.clip(np.diag(psi), 0, None))
        if sd.min() < tol:
            return True
        corr = psi / np.outer(sd, sd)
        if np.linalg.eigvalsh(corr).min() <= tol**2:
            return True
        if np.min(np.diag(np.linalg.cholesky(corr))) < tol:
            return True
    return bool(v.size and np.min(np.sqrt(np.clip(v, 0, None))) < tol)


#: Smallest eigenvalue of ``-H`` scaled to unit diagonal (``D^{-1/2} (-H) D^{-1/2}``)
#: for the Hessian to count as negative definite. A direction the data do not identify
#: has an eigenvalue of exactly zero, which rounding turns into about +-1e-14; an
#: identified one below 1e-8 would mean two estimates correlated beyond 1 - 1e-8.
NEGATIVE_DEFINITE_TOL = 1e-8


def negative_definite(hessian: np.ndarray, tol: float = NEGATIVE_DEFINITE_TOL) -> bool:
    """Whether the llf's Hessian is clearly negative definite, whatever the parameters' units.

    ``-H`` must have a positive diagonal ``D`` and ``D^{-1/2} (-H) D^{-1/2}`` (whose
    eigenvalues do not change with the parameters' scales) a smallest eigenvalue above
    ``tol``; a plain Cholesky test of ``-H`` passes or fails a singular Hessian by the
    sign of its rounding errors.
    """
    hess = np.asarray(hessian, dtype=float)
    neg = -0.5 * (hess + hess.T)
    if not np.all(np.isfinite(neg)):
        return False
    diag = np.diag(neg)
    if np.any(diag <= 0):
        return False
    scale = 1.0 / np.sqrt(diag)
    return bool(np.linalg.eigvalsh(neg * np.outer(scale, scale))[0] > tol)


def convergence_diagnostics(outcome: OptimizeResult, singular: bool) -> dict:
    """lme4-style convergence checks in the optimizer's (sqrt) parameterization.

    ``grad_max``: largest gradient component; ``scaled_grad_max``: largest
    component of the Newton step ``H^{-1} g`` (lme4 warns above 2e-3);
    ``hessian_negative_definite``: the llf is locally strictly concave (false
    at singular fits, where some directions are flat or the boundary binds).
    """
    grad = np.asarray(outcome.grad, dtype=float)
    hess = outcome.hessian
    out = {
        "grad_max": float(np.max(np.abs(grad))) if grad.size else 0.0,
        "scaled_grad_max": float("nan"),
        "hessian_negative_definite": True,
        "singular": bool(singular),
        "newton_decrement": float(outcome.decrement),
    }
    if hess is not None and hess.size:
        out["hessian_negative_definite"] = negative_definite(hess)
        try:
            out["scaled_grad_max"] = float(np.max(np.abs(np.linalg.solve(hess, grad))))
        except np.linalg.LinAlgError:
            pass
    return out


#: lme4's bound on the scaled gradient ``max |H^{-1} g|`` (``check.conv.grad``).
SCALED_GRADIENT_TOL = 2e-3


def convergence_failures(diag: dict) -> list[str]:
    """The lme4-style checks of :func:`convergence_diagnostics` that fail, each as a
    reason a fit is not converged: a scaled gradient above lme4's 2e-3, or a
    Hessian that is not negative definite away from the boundary (a flat or
    upward direction: variance parameters the data do not identify, or a saddle).
    """
    out = []
    if diag.get("scaled_grad_max", 0.0) > SCALED_GRADIENT_TOL:
        out.append(f"scaled gradient {diag['scaled_grad_max']:.3g} above lme4's "
                   f"{SCALED_GRADIENT_TOL:g}")
    if not diag.get("hessian_negative_definite", True) and not diag.get("singular", False):
        out.append("the Hessian is not negative definite at the estimate: the variance "
                   "parameters are not identified by the data")
    return out


def log_diagnostics(diag: dict) -> None:
    """lme4-style convergence checks in the log: a line always, a warning for each
    that fails (:func:`convergence_failures`)."""
    logger.info(
        "diagnostics: max|grad| %.3g, max|H^-1 grad| %.3g, Hessian negative definite: %s, "
        "singular: %s", diag["grad_max"], diag["scaled_grad_max"],
        diag["hessian_negative_definite"], diag["singular"])
    for failure in convergence_failures(diag):
        logger.warning("lme4-style check: %s", failure)
