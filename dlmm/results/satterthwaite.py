"""Satterthwaite degrees of freedom for the fixed effects (lmerTest's ``summary``).

For a contrast ``c`` of the fixed effects, the variance of ``c' beta`` is
``v(phi) = c' Sigma(phi) c`` with ``Sigma = sigma^2 S_XX(theta)^{-1}``
(``S_XX = X' V^{-1} X`` at the relative covariance factor, lme4's ``vcov``)
and ``phi = (theta, sigma^2)`` the variance parameters: ``theta`` the packed
square-root parameterization the optimizer uses (the Cholesky factor of
``Psi``, ``sqrt(vcomp / scale)``; lme4's ``theta``). Satterthwaite's
approximation matches ``v`` to a scaled chi-square:

    df = 2 v^2 / (g' A g),   g = d v / d phi,   A = cov(phi_hat) = inv(-L''(phi_hat))

with ``L`` the fit's (REML or ML) log-likelihood, not profiled. The answer
does not depend on how ``phi`` is parameterized (``g`` and ``A`` transform
together); lmerTest uses ``(theta, sigma)``.

Every piece comes from exact evaluations at the optimum, one map-reduce over
the persisted statistics each (never a pass over rows): at ``theta +- h e_j``
the engine's pieces give the analytic gradient of the profiled
log-likelihood ``l_p(theta)`` (``sigma^2`` profiled out), ``S_XX`` and the
weighted residual sum ``qf``. Central differences of those give

* ``H_p = d^2 l_p / d theta^2`` (differences of the analytic gradient),
* ``dqf / d theta`` and ``d S_XX^{-1} / d theta``,

and the full Hessian follows from the profiled one: with ``s2 = qf / fac``
(``fac = n - p`` for REML, ``n`` for ML), ``L_ss = -fac / (2 s2^2)``,
``L_ts = (dqf / d theta) / (2 s2^2)`` and ``L_tt = H_p + L_ts L_ts' / L_ss``
(the profile identity ``H_p = L_tt - L_ts L_ss^{-1} L_st`` read backwards).
The gradient is ``g_theta = s2 c' dS_XX^{-1} c``, ``g_sigma2 = c' S_XX^{-1} c``.
All of it is evaluated in the coordinates of the fit's optimizer (the one pass's
shifted and scaled columns, :mod:`dlmm.objective.shift`), then ``S_XX^{-1}``,
``sigma^2`` and ``A`` are mapped to the model's units.
As lmerTest, ``A`` is inverted over the positive eigenvalues of ``-L''``.
2k evaluations for k covariance parameters, whatever the number of rows.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from ..exceptions import InputError
from ..objective.params import MixedLMParams
from ..objective.residual_map import ResidualMap, with_residual_model
from ..objective.shift import fixed_effects_map
from .distributions import t_sf

#: relative step of the central differences (``h_j = STEP max(|theta_j|, 0.01)``)
STEP = 1e-4


@dataclass(frozen=True)
class VarianceDerivatives:
    """The pieces of Satterthwaite's formula at the optimum: the model's coordinates
    of the fixed effects, the variance parameters ``(theta, sigma^2)`` of the one
    pass (its response ``y / d_y`` and random-effect columns,
    :mod:`dlmm.objective.shift`), where their magnitudes are moderate whatever the
    data's units.

    Attributes
    ----------
    sxx_inv : ndarray (p, p)
        ``A_fe S_XX^{-1} A_fe'`` (``Sigma / sigma^2``).
    d_sxx_inv : ndarray (k, p, p)
        Its derivative along each ``theta_j``.
    scale : float
        ``sigma^2`` of the pass's response.
    cov_varpar : ndarray (k + 1, k + 1)
        Asymptotic covariance of ``(theta, sigma^2)``.
    """

    sxx_inv: np.ndarray
    d_sxx_inv: np.ndarray
    scale: float
    cov_varpar: np.ndarray

    @property
    def vcov(self) -> np.ndarray:
        """``Sigma = sigma^2 S_XX^{-1}``: lme4's ``vcov`` of the fixed effects."""
        return self.scale * self.sxx_inv

    def contrast(self, c: np.ndarray) -> tuple[float, float]:
        """``(c' Sigma c, df)`` for one contrast (df from ``c`` rescaled to unit
        variance, which does not change it, so that no fourth power of a small
        variance underflows)."""
        var = float(c @ self.vcov @ c)
        if not var > 0:
            return var, np.inf
        w = np.asarray(c, dtype=float) / np.sqrt(var)
        grad = np.concatenate([self.scale * np.einsum("jab,a,b->j", self.d_sxx_inv, w, w),
                               [w @ self.sxx_inv @ w]])
        denom = float(grad @ self.cov_varpar @ grad)
        return var, (2.0 / denom if denom > 0 else np.inf)


def _positive_inverse(info: np.ndarray) -> np.ndarray:
    """Inverse of a symmetric matrix over its positive eigenvalues (lmerTest's
    ``vcov_varpar``; a non-positive one is a direction along which the fit sits on a
    boundary), those within 1e-12 of the largest taken as zero (rounding). A boundary
    fit's small positive curvature is kept, as lmerTest keeps it (kb07's maximal model:
    4e-9 against 450)."""
    vals, vecs = np.linalg.eigh(0.5 * (info + info.T))
    keep = vals > 1e-12 * max(1.0, float(np.abs(vals).max()))
    return (vecs[:, keep] / vals[keep]) @ vecs[:, keep].T


def variance_derivatives(result) -> VarianceDerivatives:
    """Evaluate the pieces (2k map-reduces; cached on the result)."""
    cached = result.__dict__.get("_variance_derivatives")
    if cached is not None:
        return cached
    stats = result._stats
    if stats is None:
        raise InputError("Satterthwaite degrees of freedom need the fitted data; a loaded "
                         "result has only its estimates")
    if result.freepat is not None:
        raise InputError("Satterthwaite degrees of freedom are not available for fits with "
                         "free=")
    tri = np.tril_indices(result.k_re)
    # In the coordinates the fit's optimizer worked in (shifted, scaled random-effect
    # columns, Psi_c = U Psi U'), where steps relative to theta are steps of like size
    # for every parameter; the answer does not depend on them.
    stats, u = stats.centred()
    psi = result.estimates.cov_re_unscaled
    chol0 = np.asarray(result._chol) if u is None else \
        MixedLMParams.from_components(cov_re=u @ psi @ u.T).cov_re_sqrt
    theta0 = np.concatenate([np.asarray(chol0)[tri], np.asarray(result._sd)])
    # llf and scale in the units the pass summed
    objective = with_residual_model(replace(result.model.objective(stats, result.reml),
                                            xy_scale=None))
    if isinstance(objective.theta_map, ResidualMap):  # φ are variance parameters too
        theta0 = np.concatenate([theta0, stats.phi])
    centering = result.model.spec.centering
    a_mat, _ = fixed_effects_map(centering.xy_shift, centering.x_intercept, centering.xy_scale)
    out = derivatives_at(objective, theta0, a_mat)
    result.__dict__["_variance_derivatives"] = out
    return out


def derivatives_at(objective, theta0: np.ndarray, a_mat: np.ndarray) -> VarianceDerivatives:
    """Satterthwaite's pieces of a fit whose optimum is ``theta0`` (any θ of
    ``objective``, a :class:`~dlmm.objective.objective.ProfiledObjective` in the units
    the pass summed): see the module docstring. ``a_mat`` maps the pass's fixed effects
    to the model's (``beta = A beta_c + a``; it holds the response's scale, so that
    ``Sigma = s2 A S_XX^{-1} A'`` with the pass's ``s2``)."""
    theta0 = np.asarray(theta0, dtype=float)
    n = objective.n_rows
    p = objective.xy_cross.shape[0] - 1
    fac = n - p if objective.reml else n

    def evaluate(theta):
        value = objective.value(theta)
        return value.grad_theta, np.linalg.inv(value.xvx), value.scale * fac

    _, sxx_inv_c, qf = evaluate(theta0)
    k = theta0.size
    hess = np.zeros((k, k))
    d_qf = np.zeros(k)
    d_inv = np.zeros((k, p, p))
    for j in range(k):  # k covariance parameters: a handful of map-reduces, not groups
        h = STEP * max(abs(theta0[j]), 1e-2)
        up, down = theta0.copy(), theta0.copy()
        up[j] += h
        down[j] -= h
        g_up, inv_up, qf_up = evaluate(up)
        g_dn, inv_dn, qf_dn = evaluate(down)
        hess[:, j] = (g_up - g_dn) / (2 * h)
        d_qf[j] = (qf_up - qf_dn) / (2 * h)
        d_inv[j] = (inv_up - inv_dn) / (2 * h)
    hess = 0.5 * (hess + hess.T)
    s2 = qf / fac
    l_ss = -fac / (2 * s2**2)
    l_ts = d_qf / (2 * s2**2)
    full = np.zeros((k + 1, k + 1))
    full[:k, :k] = hess + np.outer(l_ts, l_ts) / l_ss
    full[:k, k] = full[k, :k] = l_ts
    full[k, k] = l_ss
    return VarianceDerivatives(
        sxx_inv=a_mat @ sxx_inv_c @ a_mat.T,
        d_sxx_inv=np.einsum("ia,jab,kb->jik", a_mat, d_inv, a_mat),
        scale=float(s2), cov_varpar=_positive_inverse(-full))


def _contrast_matrix(result, contrasts) -> tuple[np.ndarray, list[str]]:
    if contrasts is None:
        return np.eye(result.k_fe), list(result.exog_names)
    if isinstance(contrasts, dict):
        names = list(contrasts)
        rows = [contrasts[n] for n in names]
    else:
        rows = np.atleast_2d(np.asarray(contrasts, dtype=float))
        names = [f"c{i}" for i in range(len(rows))]
    out = []
    for name, row in zip(names, rows):
        if isinstance(row, dict):  # {"Diet2": 1, "Diet3": -1}
            unknown = [k for k in row if k not in result.exog_names]
            if unknown:
                raise InputError(f"contrast {name!r} names {unknown[0]!r}, which is not a fixed "
                                 f"effect ({', '.join(result.exog_names)})")
            row = [float(row.get(n, 0.0)) for n in result.exog_names]
        row = np.asarray(row, dtype=float)
        if row.shape != (result.k_fe,):
            raise InputError(f"contrast {name!r} has {row.size} entries; expected {result.k_fe} "
                             "(one per fixed effect)")
        out.append(row)
    return np.asarray(out), names


def satterthwaite_table(result, contrasts=None) -> pd.DataFrame:
    """lmerTest's coefficient table: ``Estimate``, ``Std. Error`` (lme4's ``vcov``),
    ``df`` (Satterthwaite), ``t value`` and ``Pr(>|t|)`` for each fixed effect, or
    for each contrast in ``contrasts`` (an array with one row per contrast, or
    ``{name: row}`` with rows as arrays or ``{fixed effect: weight}``; lmerTest's
    ``contest1D``)."""
    derivs = variance_derivatives(result)
    c_mat, names = _contrast_matrix(result, contrasts)
    beta = np.asarray(result.fe_params, dtype=float)
    rows = []
    for c in c_mat:
        var, df = derivs.contrast(c)
        est = float(c @ beta)
        se = float(np.sqrt(var))
        t = est / se
        rows.append((est, se, df, t, 2 * t_sf(abs(t), df)))
    return pd.DataFrame(rows, index=names,
                        columns=["Estimate", "Std. Error", "df", "t value", "Pr(>|t|)"])
