"""The log-likelihood at given fixed effects (statsmodels' ``profile_fe=False``).

The scale is profiled out as in :mod:`dlmm.objective.profiled`, the fixed
effects are held at ``beta``: with ``S = K - hmh`` and ``c = [-beta; 1]``,

    qf   = c' S c                      (the GLS minimum of it gives the profiled llf)
    llf  = -1/2 log|V| - fac/2 log(qf) - fac/2 (1 + log(2 pi) - log(fac))
           [REML: - 1/2 log|S_XX|],    fac = n - p (REML) or n (ML)
    d llf / d beta = fac / qf (S_Xy - S_XX beta)

and the covariance gradient is the profiled one's formula with this ``c``
(:func:`~dlmm.objective.profiled.covariance_gradient`): at the GLS ``beta`` both
are the profiled values. Everything is in the coordinates of the sums (centred,
scaled: ``beta = A beta_c + a``); ``xy_scale`` adds the log-Jacobian to the llf.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import linalg

from ..exceptions import InfeasiblePoint
from .profiled import covariance_gradient
from .shift import log_jacobian


@dataclass
class UnprofiledValue:
    """The log-likelihood at held fixed effects and its gradients.

    Attributes
    ----------
    llf : float
    grad_fe : ndarray (p,)
        d llf / d beta (in the coordinates of the sums).
    grad_psi, grad_vc, grad_theta
        The covariance gradient, as :class:`~dlmm.objective.profiled.ProfiledValue`'s.
    """

    llf: float
    grad_fe: np.ndarray
    grad_psi: np.ndarray
    grad_vc: np.ndarray
    grad_theta: np.ndarray | None = None


def unprofiled_value(pieces, xy_cross: np.ndarray, n_obs: float, reml: bool,
                     beta: np.ndarray, theta: tuple[np.ndarray, np.ndarray] | None = None,
                     xy_scale: np.ndarray | None = None) -> UnprofiledValue:
    """llf and gradients at fixed effects ``beta`` from the reduced sums (see the module
    docstring); ``theta = (chol_re, sd_vc)`` as for
    :func:`~dlmm.objective.profiled.profiled_value`.

    Raises
    ------
    InfeasiblePoint
        ``qf`` is not positive, or (REML) ``S_XX`` is not positive definite.
    """
    s = xy_cross - pieces.hmh
    p = s.shape[0] - 1
    beta = np.asarray(beta, dtype=float).reshape(p)
    c = np.concatenate([-beta, [1.0]])
    qf = float(c @ s @ c)
    s_xx_inv, logdet_xx = None, 0.0
    if reml and p:
        try:
            chol = np.linalg.cholesky(s[:p, :p])
        except np.linalg.LinAlgError:
            raise InfeasiblePoint("X'V^-1 X is not positive definite here") from None
        logdet_xx = 2.0 * np.log(np.diag(chol)).sum()
        s_xx_inv = linalg.cho_solve((chol, True), np.eye(p))
    if not (qf > 0.0 and np.isfinite(qf) and np.isfinite(pieces.logdet)):
        raise InfeasiblePoint(f"the residual quadratic form is {qf:.3g} here (not positive)")
    fac = n_obs - p if reml else n_obs
    llf = (-0.5 * pieces.logdet - 0.5 * fac * np.log(qf)
           - 0.5 * fac * (1.0 + np.log(2.0 * np.pi) - np.log(fac)) - 0.5 * logdet_xx)
    if xy_scale is not None:
        llf += log_jacobian(xy_scale, n_obs, reml)
    grad_fe = fac / qf * (s[:p, p] - s[:p, :p] @ beta)
    grad = covariance_gradient(pieces, c, 0.5 * fac / qf, s_xx_inv, theta)
    return UnprofiledValue(float(llf), grad_fe, grad.grad_psi, grad.grad_vc, grad.grad_theta)
