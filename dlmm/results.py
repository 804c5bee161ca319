"""Fit results with statsmodels' names and conventions (``MixedLMResults``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .objective.params import packed_names
from .objective.profiled import ProfiledValue
from .optimize.driver import OptimizeResult
from .statistics import SufficientStatistics


class MixedLMResults:
    """Estimates of a :class:`~dlmm.model.MixedLM` fit.

    Attributes
    ----------
    fe_params : pandas.Series
        GLS fixed effects at the optimum.
    cov_re : pandas.DataFrame
        Random-effects covariance on the data's scale.
    cov_re_unscaled : ndarray
        ``cov_re / scale`` (``Psi``).
    vcomp : ndarray
        Variance components on the data's scale, sorted by name.
    scale : float
        Residual variance.
    llf : float
        Maximized REML or ML log-likelihood.
    params : pandas.Series
        statsmodels' vector: fixed effects, the lower triangle of ``Psi`` row by
        row, then ``vcomp / scale``.
    converged : bool
        The convergence test on the gradient passed (see
        :mod:`dlmm.optimize.driver`).
    mle_retvals : dict
        The optimizer's own report (method, messages, evaluations, gradient).
    optimization_log : OptimizationLog
        Every evaluation (llf, gradient norm, time).
    timings : dict
        Seconds in the data pass and in the optimizer.
    """

    def __init__(self, model, value: ProfiledValue, chol_re: np.ndarray, sd_vc: np.ndarray,
                 outcome: OptimizeResult, stats: SufficientStatistics):
        self.model = model
        spec = model.spec
        self.k_fe = spec.k_fe
        self.k_re = spec.k_re
        self.k_re2 = self.k_re * (self.k_re + 1) // 2
        self.k_vc = spec.k_vc
        self.reml = model.reml
        self.method = "REML" if self.reml else "ML"
        self.nobs = int(stats.totals.n_rows)
        self.n_groups = stats.n_groups
        self.n_dropped = int(stats.totals.n_dropped)
        self.group_size_min = stats.group_size_min
        self.group_size_max = stats.group_size_max
        self.llf = value.llf
        self.scale = value.scale
        self.exog_names = list(spec.exog_names)
        self.exog_re_names = list(spec.exog_re_names)
        self.vc_names = list(spec.vc_names)
        self.fe_params = pd.Series(value.fe_params, index=self.exog_names, name="fe_params")
        psi = chol_re @ chol_re.T
        self.cov_re_unscaled = psi
        self.cov_re = pd.DataFrame(psi * self.scale, index=self.exog_re_names,
                                   columns=self.exog_re_names)
        self.vcomp = np.asarray(sd_vc, dtype=float) ** 2 * self.scale
        self.cov_re_sqrt = chol_re
        packed = np.concatenate([value.fe_params, psi[np.tril_indices(self.k_re)], sd_vc**2])
        self.param_names = self.exog_names + packed_names(self.exog_re_names, self.vc_names)
        self.params = pd.Series(packed, index=self.param_names)
        self.converged = bool(outcome.converged)
        self.optimization_log = outcome.log
        self.mle_retvals = {
            "converged": self.converged,
            "method": outcome.method,
            "message": outcome.message,
            "methods": outcome.log.methods,
            "evaluations": outcome.log.evaluations,
            "newton_steps": outcome.log.newton_steps,
            "grad": outcome.grad,
            "grad_norm": float(np.sqrt(np.sum(outcome.grad**2))),
            "decrement": outcome.decrement,
        }
        self.timings = {
            "data_pass": stats.seconds,
            "optimizer": outcome.log.seconds,
            "evaluations": outcome.log.evaluations,
        }
        self.backend = stats.backend.name
        self.groups_shuffled = stats.shuffled

    @property
    def df_modelwc(self) -> int:
        return self.k_fe + self.k_re2 + self.k_vc

    @property
    def group_size_mean(self) -> float:
        return self.nobs / self.n_groups if self.n_groups else float("nan")

    def summary(self):
        """A text summary in statsmodels' layout (see :mod:`dlmm.summary`)."""
        from .summary import Summary

        return Summary(self)

    def __repr__(self) -> str:
        return (f"<dlmm.MixedLMResults {self.method} llf={self.llf:.6g} nobs={self.nobs} "
                f"groups={self.n_groups} converged={self.converged}>")
