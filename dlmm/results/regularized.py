"""The result of ``MixedLM.fit_regularized`` (statsmodels' L1 fit of the fixed effects).

From an unpenalized fit: the covariance stays at its estimate; the fixed
effects come from :func:`dlmm.objective.penalty.l1_shooting` on
``M = X'V^{-1}X`` (minus the fixed-effects block of the Hessian) and the GLS
estimate. As statsmodels:

* ``params`` keeps the profile covariance parameters of the fit; ``cov_re``
  and ``vcomp`` are the fit's (data scale);
* ``scale`` is re-estimated at the penalized fixed effects,
  ``qf(beta) / fac = scale_hat (1 + (beta - b)' M (beta - b) / fac)`` with
  ``fac = n - p`` (REML) or ``n`` (ML), exact because ``qf`` is quadratic in beta;
* ``cov_params`` inverts minus the Hessian at the penalized point over the
  fixed effects above ``ceps`` in magnitude and the covariance parameters,
  NaN elsewhere.

``llf`` is the log-likelihood at the penalized fixed effects (scale profiled):
``llf_hat - fac/2 log(scale / scale_hat)``.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..objective.penalty import l1_shooting
from ..objective.shift import centred_fixed_effects, fixed_effects_map
from .effects import DistributedEffects
from .estimates import Estimates, Inference


def regularized_result(model, fit, alpha, ceps: float, ptol: float, maxit: int):
    """The L1-penalized result from the unpenalized ``fit`` of ``model``."""
    from .results import MixedLMResults, effect_names_of

    k = fit.k_fe
    xtvx = -np.asarray(fit.hessian, dtype=float)[:k, :k]
    beta_gls = np.asarray(fit.fe_params, dtype=float)
    beta = l1_shooting(xtvx, beta_gls, alpha, ceps, ptol, maxit)
    n = fit.nobs
    fac = n - k if fit.reml else n
    d = beta - beta_gls
    scale = fit.scale * (1.0 + float(d @ xtvx @ d) / fac)
    e = fit.estimates
    params = np.array(fit.params, dtype=float)
    params[:k] = beta
    hess, _ = model.hessian(params)
    keep = np.abs(params) > ceps
    keep[k:] = True
    idx = np.flatnonzero(keep)
    cov = np.full(hess.shape, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        cov[np.ix_(idx, idx)] = np.linalg.inv(-hess[np.ix_(idx, idx)])
    estimates = Estimates(
        exog_names=list(e.exog_names), exog_re_names=list(e.exog_re_names),
        vc_names=list(e.vc_names), fe_params=beta, cov_re_unscaled=e.cov_re_unscaled,
        vcomp_unscaled=e.vcomp_unscaled, scale=scale,
        llf=fit.llf - fac / 2 * np.log(scale / fit.scale), reml=e.reml)
    inference = Inference(hessian=hess, cov_params=cov, freepat=fit.freepat,
                          hessian_singular=False)
    effects = fit.effects
    stats = fit._stats
    if stats is not None:
        centering = model.spec.centering
        a_mat, offset = fixed_effects_map(centering.xy_shift, centering.x_intercept,
                                          centering.xy_scale)
        coef = np.concatenate([-centred_fixed_effects(beta, a_mat, offset), [1.0]])
        effects = DistributedEffects(stats, fit._chol, fit._sd, coef, scale,
                                     effect_names_of(model.spec, list(e.vc_names)),
                                     y_scale=centering.y_scale)
    out = MixedLMResults(model, estimates, inference, fit.facts, effects, statistics=stats,
                         theta=(fit._chol, fit._sd), optimization_log=fit.optimization_log)
    out._cov_re = fit._cov_re.copy()  # statsmodels keeps the fit's covariance (data scale)
    out.vcomp = np.array(fit.vcomp, dtype=float)
    return out
