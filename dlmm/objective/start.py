"""Start values of the covariance parameters: moment estimates or statsmodels' default.

With many groups (at least :data:`MOMENT_MIN_GROUPS`) a method-of-moments
estimate from one map-reduce (:mod:`dlmm.kernels.moments`) saves Newton steps;
otherwise, or when the moments do not identify the parameters, the start is
statsmodels' ``Psi = I``, ``vcomp / scale = 1``.
"""

from __future__ import annotations

import numpy as np

from ..kernels.moments import MomentPieces
from .params import MixedLMParams

MOMENT_MIN_GROUPS = 500


def ols_coefficients(xy_cross: np.ndarray, n_obs: float) -> tuple[np.ndarray, float]:
    """``c = [-beta_ols; 1]`` and the OLS residual variance ``c'Kc / (n - p)``."""
    p = xy_cross.shape[0] - 1
    beta = np.linalg.solve(xy_cross[:p, :p], xy_cross[:p, p]) if p else np.zeros(0)
    coef = np.concatenate([-beta, [1.0]])
    return coef, float(coef @ xy_cross @ coef) / max(n_obs - p, 1.0)


def within_scale(pieces: MomentPieces, sigma2: float, dof: float) -> float:
    """The residual variance of the moment equations: within groups where the data
    allow it, else ``sigma2``.

    The OLS residual variance ``sigma2`` (on ``dof = n - p`` degrees of freedom) holds
    the random effects' variance too, and the equations' ``lhs / sigma2`` then
    understate ``B = Psi / scale`` (by 2.3x for an intercept and a slope of variances
    1 and 0.25 beside a scale of 1: six Newton steps from there). Without the part of
    the residuals in each group's random-effect columns (``pieces.explained``, on
    ``pieces.rank`` degrees of freedom) what is left estimates the scale:
    ``(sigma2 dof - explained) / (dof - rank)``; used when at least a tenth of the
    degrees of freedom are left and it is positive.
    """
    left = dof - pieces.rank
    if pieces.rank <= 0 or left < 0.1 * dof:
        return sigma2
    within = (sigma2 * dof - pieces.explained) / left
    return within if np.isfinite(within) and within > 0 else sigma2


def moment_estimate(pieces: MomentPieces, sigma2: float, k_re: int,
                    dof: float | None = None) -> MixedLMParams | None:
    """Method-of-moments profile parameters from the summed moment equations.

    Solves ``design theta = lhs / sigma2 - g`` by least squares (``theta``: the
    lower triangle of ``Psi``, then ``vcomp / scale``), then moves the result
    inside the parameter space: eigenvalues of ``Psi`` and the variances at
    least 0.01. ``sigma2`` is the OLS residual variance; given its degrees of
    freedom ``dof``, the scale within groups is used instead (:func:`within_scale`).
    None when the equations do not identify the parameters.
    """
    if dof is not None:
        sigma2 = within_scale(pieces, sigma2, dof)
    try:
        theta = np.linalg.lstsq(pieces.design, pieces.lhs / sigma2 - pieces.g, rcond=None)[0]
    except (np.linalg.LinAlgError, ValueError, ZeroDivisionError):
        return None
    if not np.all(np.isfinite(theta)) or sigma2 <= 0:
        return None
    k_re2 = k_re * (k_re + 1) // 2
    tri = np.zeros((k_re, k_re))
    tri[np.tril_indices(k_re)] = theta[:k_re2]
    psi = tri + tri.T - np.diag(np.diag(tri))
    if k_re:
        w, v = np.linalg.eigh(psi)
        psi = (v * np.maximum(w, 0.01)) @ v.T
    vc = np.maximum(theta[k_re2:], 0.01)
    return MixedLMParams.from_components(cov_re=psi, vcomp=vc)


def default_start(k_re: int, k_vc: int) -> MixedLMParams:
    """statsmodels' start: ``Psi = I``, ``vcomp / scale = 1``."""
    return MixedLMParams.from_components(cov_re=np.eye(k_re), vcomp=np.ones(k_vc))
