"""Fit results with statsmodels' names and conventions (``MixedLMResults``).

A result is made of plain data (:mod:`dlmm.results.estimates`), an effects
store (:mod:`dlmm.results.effects`) and, for a fit made in this process, the
engine's statistics (:mod:`dlmm.structure`), which later questions (fitted
values, profiles) reuse. Standard errors come from the analytic Hessian of
the log-likelihood in (fixed effects, profile covariance parameters), as
statsmodels computes it (see :mod:`dlmm.results.inference`); the variance
parameters in ``params`` are on the profile scale (divided by ``scale``) and
tests are z tests. The Hessian is one more map-reduce at the optimum; for an
engine without Hessian pieces (crossed designs) its fixed-effects blocks are
exact and the rest comes from central differences of the analytic gradient: the
optimizer's at the optimum (:func:`dlmm.objective.hessian.hessian_from_profiled`),
or new ones near a zero variance (:func:`~dlmm.objective.hessian.hessian_from_gradients`).
"""

from __future__ import annotations

import copy
import time
import warnings
from functools import cached_property

import numpy as np
import pandas as pd

from ..exceptions import InputError, convergence_warning
from ..objective.hessian import (
    hessian_from_profiled,
)
from ..objective.params import MixedLMParams
from ..objective.profiled import ProfiledValue
from ..objective.shift import (
    fixed_effects_map,
    parameter_jacobian,
    raw_covariance,
    raw_hessian,
)
from ..optimize.driver import OptimizeResult
from ..structure.base import RandomEffectsStatistics
from .distributions import normal_quantile, normal_sf
from .effects import DistributedEffects, EffectNames, EffectsStore
from .estimates import Estimates, FitFacts, Inference
from .inference import (
    convergence_diagnostics,
    convergence_failures,
    covariance_from_hessian,
    is_singular,
)
from .lme4_methods import Lme4Methods, check_ddf
from .residual_estimates import ResidualEstimates
from .statsmodels_compat import StatsmodelsResults


def pandas_output(model) -> bool:
    """statsmodels' wrapper convention: a model made from pandas (or Dask) objects, or
    from formulas, gives pandas results (``params``, ``bse``, ``cov_params()``, ...);
    one made from arrays gives ndarrays. The arrays form's specification says which
    it was given (``pandas_input``); formulas and loaded results have names."""
    return bool(getattr(getattr(model, "spec", None), "pandas_input", True))


def effect_names_of(spec, vc_names: list[str]) -> EffectNames:
    """The labels of a model's effects tables, from its specification."""
    return EffectNames(
        group_name=spec.group_name, exog_re_names=list(spec.exog_re_names),
        vc_names=list(vc_names),
        slot_names=[n for names in spec.vc_column_names for n in names],
        slot_component=np.asarray(spec.slot_component, dtype=np.int64),
    )


class MixedLMResults(Lme4Methods, StatsmodelsResults):
    """Estimates of a :class:`~dlmm.model.MixedLM` fit.

    Build one with :meth:`from_fit` (after a fit) or from saved data
    (:func:`dlmm.load_result`); both go through the one constructor.

    Parameters
    ----------
    model : MixedLM or a loaded model
        Anything with a ``spec`` (the model specification).
    estimates : Estimates
    inference : Inference
    facts : FitFacts
    effects : EffectsStore
    statistics : RandomEffectsStatistics, optional
        The engine's statistics of the fitted data (None for a loaded result).
    theta : tuple of ndarray, optional
        ``(chol_re, sd_vc)``: the estimate in the square-root parameterization.
    optimization_log : OptimizationLog, optional

    Attributes
    ----------
    fe_params : pandas.Series
        GLS fixed effects at the optimum. This and the other labelled outputs
        (``params``, ``bse``, ``bse_fe``, ``bse_re``, ``tvalues``, ``pvalues``,
        ``cov_re``, ``cov_re_unscaled``, ``cov_params()``, ``conf_int()``,
        ``normalized_cov_params``, ``fittedvalues``, ``resid``) are ndarrays for
        a model made from arrays, as statsmodels' results wrapper has them.
    cov_re : pandas.DataFrame
        Random-effects covariance on the data's scale.
    cov_re_unscaled : pandas.DataFrame
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
        The optimizer's convergence test passed (see :mod:`dlmm.optimize.driver`).
    mle_retvals : dict
        The optimizer's own report (method, messages, evaluations, gradient,
        ``diagnostics``).
    optimization_log : OptimizationLog
        Every evaluation (llf, gradient norm, time).
    timings : dict
        Seconds in the data pass, the optimizer and the Hessian; ``evaluations``
        logged by the optimizer and ``engine_evaluations`` made by the engine (the
        same for the grouped engine; for the crossed engine also the gradients a
        Hessian by differences took); ``coarse_evaluations``: those of the
        optimizer's coarse phase (the crossed engine's Schur complement in float32).
    freepat : ndarray or None
        0/1 mask over ``params`` of the free parameters (``fit(free=...)``).
    singular : bool
        A variance on the boundary (lme4's ``isSingular``).
    diagnostics : dict
        lme4-style convergence checks (gradient, scaled gradient, Hessian).
    backend : str
        Where the one pass ran: ``"local"`` or ``"dask"``.
    engine : str
        Which engine held the statistics: ``"grouped"`` (groups of rows, nested
        effects) or ``"crossed"`` (one group with crossed factors, see
        :mod:`dlmm.structure.crossed`).
    """

    def __init__(self, model, estimates: Estimates, inference: Inference, facts: FitFacts,
                 effects: EffectsStore, statistics: RandomEffectsStatistics | None = None,
                 theta: tuple[np.ndarray, np.ndarray] | None = None,
                 optimization_log=None):
        self.model = model
        self.estimates = estimates
        self.inference = inference
        self.facts = facts
        self.effects = effects
        self._stats = statistics
        self._chol, self._sd = theta if theta is not None else (None, None)
        self.optimization_log = optimization_log
        self._pandas = pandas_output(model)

        e = estimates
        self.exog_names = list(e.exog_names)
        self.exog_re_names = list(e.exog_re_names)
        self.vc_names = list(e.vc_names)
        self.k_fe = len(self.exog_names)
        self.k_re = len(self.exog_re_names)
        self.k_re2 = self.k_re * (self.k_re + 1) // 2
        self.k_vc = len(self.vc_names)
        self.reml = e.reml
        self.method = "REML" if self.reml else "ML"
        self.llf = e.llf
        self.scale = e.scale
        # The labelled values; the public names shape them (:meth:`_shaped`).
        self._fe_params = pd.Series(e.fe_params, index=self.exog_names, name="fe_params")
        self._cov_re_unscaled = pd.DataFrame(e.cov_re_unscaled, index=self.exog_re_names,
                                             columns=self.exog_re_names)
        self._cov_re = pd.DataFrame(e.cov_re_unscaled * self.scale, index=self.exog_re_names,
                                    columns=self.exog_re_names)
        self.vcomp = e.vcomp_unscaled * self.scale
        self.param_names = e.param_names
        self._params = e.params_series()

        self.hessian = inference.hessian
        self.hessian_singular = inference.hessian_singular
        self.freepat = inference.freepat
        self._cov = inference.cov_params

        f = facts
        self.group_name, self.endog_name = f.group_name, f.endog_name
        self.nobs, self.n_groups, self.n_dropped = f.nobs, f.n_groups, f.n_dropped
        self.group_size_min, self.group_size_max = f.group_size_min, f.group_size_max
        self.converged = f.converged
        self.mle_retvals = f.mle_retvals
        self.diagnostics = f.mle_retvals.get("diagnostics", {})
        self.timings = f.timings
        self.backend = f.backend
        self.engine = f.engine
        self.groups_shuffled = f.groups_shuffled
        self.weights = f.weights  # the precision weights' column, or None
        #: the residual parameters (``residual_by``, ``residual_ar1``; None without)
        self.residual = ResidualEstimates.from_dict(f.residual)

    @classmethod
    def from_fit(cls, model, value: ProfiledValue, chol_re: np.ndarray, sd_vc: np.ndarray,
                 outcome: OptimizeResult, stats: RandomEffectsStatistics,
                 engine: RandomEffectsStatistics | None = None, u: np.ndarray | None = None,
                 freepat: np.ndarray | None = None,
                 evaluations_before: int = 0, residual=None) -> MixedLMResults:
        """The result of a fit: estimates at the optimum mapped to the model's own
        parameters, the Hessian there (the optimizer's last map-reduce, or one more)
        and the lme4-style checks.

        ``value``, ``chol_re``, ``sd_vc`` and ``outcome`` are in the coordinates of
        ``engine`` (default ``stats``): centred, scaled ``[X y]`` always (but the
        log-likelihood and scale of ``value`` in the model's units,
        :func:`~dlmm.objective.shift.log_jacobian`), and shifted, scaled
        random-effect columns ``Z = Z_c U`` when ``u`` is given
        (:mod:`dlmm.objective.shift`). ``evaluations_before``: the engine's count of
        evaluations when the fit started (the timings count this fit's). ``residual``: the
        residual parameters (:class:`~dlmm.results.residual_estimates.ResidualEstimates`),
        which ``stats`` and ``engine`` are at.
        """
        spec = model.spec
        engine = stats if engine is None else engine
        chol_re = np.asarray(chol_re, dtype=float)
        sd_vc = np.asarray(sd_vc, dtype=float)
        centering = spec.centering
        a_mat, offset = fixed_effects_map(centering.xy_shift, centering.x_intercept,
                                          centering.xy_scale)
        jac = parameter_jacobian(a_mat, u, len(spec.exog_re_names),
                                 len(spec.vc_names))
        psi_c = chol_re @ chol_re.T
        u_inv = None if u is None else np.linalg.inv(u)
        psi = psi_c if u is None else u_inv @ psi_c @ u_inv.T
        estimates = Estimates(
            exog_names=list(spec.exog_names), exog_re_names=list(spec.exog_re_names),
            vc_names=list(spec.vc_names), fe_params=a_mat @ value.fe_params + offset,
            cov_re_unscaled=psi, vcomp_unscaled=sd_vc**2, scale=value.scale,
            llf=value.llf, reml=model.reml,
        )
        start = time.perf_counter()
        objective = model.objective(engine, estimates.reml)
        theta = objective.theta_map.pack(chol_re, sd_vc)
        hessian_c = None
        m = theta.size
        # with residual parameters (last), the covariance block of the optimizer's
        # Hessian over both is the Hessian at the fitted residual parameters
        m_opt = m + (0 if residual is None else residual.n_params)
        if not objective.has_hessian and freepat is None and outcome.hessian is not None \
                and outcome.hessian.shape == (m_opt, m_opt):
            # The optimizer's Hessian (differences of the analytic gradient at the
            # optimum) with the exact fixed-effects blocks: no more evaluations.
            hessian_c = hessian_from_profiled(
                outcome.hessian[:m, :m], objective.pieces(theta), engine.totals.xy_cross,
                engine.totals.n_rows, estimates.reml, sd_vc, chol_re=chol_re)
        if hessian_c is None:  # exact pieces, or a variance near 0, or a free pattern
            hessian_c = objective.psi_hessian(theta, value.fe_params)
        hessian_seconds = time.perf_counter() - start
        freepat = None if freepat is None else np.asarray(freepat, dtype=float)
        # Inverted where it is well conditioned (the engine's coordinates; a free
        # pattern keeps the model's own covariance coordinates), then mapped.
        centred = covariance_from_hessian(hessian_c, freepat)
        inference = Inference(hessian=raw_hessian(hessian_c, jac),
                              cov_params=raw_covariance(centred.cov_params, jac),
                              freepat=freepat, hessian_singular=centred.hessian_singular)
        singular = is_singular(psi_c, estimates.vcomp_unscaled)  # on the engine's factor
        diagnostics = convergence_diagnostics(outcome, singular)
        failures = convergence_failures(diagnostics)
        if outcome.converged and failures:
            warnings.warn(f"the fit is not converged: {'; '.join(failures)}",
                          convergence_warning(), stacklevel=3)
        converged = bool(outcome.converged) and not failures
        # A Newton decrement that is not finite comes from a Hessian that cannot be
        # inverted: where the Hessian check already failed, its reason says why.
        unidentified = not (diagnostics["hessian_negative_definite"] or singular)
        if not outcome.converged and not (unidentified
                                          and not np.isfinite(outcome.decrement)):
            failures.insert(0, "the optimizer's convergence test did not pass (Newton "
                            f"decrement {outcome.decrement:.3g}; {outcome.message})")
        mle_retvals = {
            "converged": converged,
            "convergence_failures": failures,
            "method": outcome.method,
            "message": outcome.message,
            "methods": outcome.log.methods,
            "evaluations": outcome.log.evaluations,
            "newton_steps": outcome.log.newton_steps,
            "grad": outcome.grad,
            "grad_norm": float(np.sqrt(np.sum(outcome.grad**2))),
            "decrement": outcome.decrement,
            "diagnostics": diagnostics,
        }
        facts = FitFacts(
            group_name=spec.group_name, endog_name=spec.response,
            nobs=int(stats.totals.n_rows), n_groups=stats.n_groups,
            n_dropped=int(stats.totals.n_dropped), group_size_min=stats.group_size_min,
            group_size_max=stats.group_size_max, converged=converged,
            mle_retvals=mle_retvals,
            timings={"data_pass": stats.seconds, "optimizer": outcome.log.seconds,
                     "hessian": hessian_seconds, "evaluations": outcome.log.evaluations,
                     # every evaluation the engine made (with the optimizer's, those of
                     # Hessians taken by differences of gradients)
                     "engine_evaluations": int(engine.evaluations - evaluations_before),
                     # of them, asked at reduced precision (the crossed engine's float32)
                     "coarse_evaluations": outcome.log.coarse_evaluations},
            backend=stats.backend_name, groups_shuffled=stats.shuffled,
            engine=stats.engine_name,
            weights=getattr(getattr(spec, "residual", None), "display_name", None),
            residual=None if residual is None else residual.to_dict(),
        )
        coef = np.concatenate([-value.fe_params, [1.0]])  # centred, as the statistics
        effects = DistributedEffects(engine, chol_re, sd_vc, coef, estimates.scale,
                                     effect_names_of(spec, estimates.vc_names), u_inv,
                                     centering.y_scale)
        chol_model = chol_re if u is None else \
            MixedLMParams.from_components(cov_re=psi, vcomp=sd_vc**2).cov_re_sqrt
        return cls(model, estimates, inference, facts, effects, statistics=stats,
                   theta=(chol_model, sd_vc), optimization_log=outcome.log)

    # -- statsmodels' output types ------------------------------------------------

    def _shaped(self, value):
        """``value`` (a Series or DataFrame) as statsmodels' wrapper returns it: itself
        for pandas models, its ndarray for array models (see :func:`pandas_output`)."""
        if not self._pandas and (isinstance(value, (pd.Series, pd.DataFrame))
                                 or hasattr(value, "npartitions")):
            return np.asarray(value)
        return value

    def labelled(self) -> MixedLMResults:
        """This result with pandas outputs whatever the model's input (a shallow copy:
        the same estimates, effects and statistics); a pandas model's result is
        returned as it is."""
        if self._pandas:
            return self
        out = copy.copy(self)
        out._pandas = True
        return out

    @property
    def fe_params(self):
        """GLS fixed effects at the optimum (a Series named by ``exog_names``)."""
        return self._shaped(self._fe_params)

    @property
    def cov_re(self):
        """Random-effects covariance on the data's scale."""
        return self._shaped(self._cov_re)

    @property
    def cov_re_unscaled(self):
        """``cov_re / scale`` (``Psi``)."""
        return self._shaped(self._cov_re_unscaled)

    @property
    def params(self):
        """statsmodels' vector: fixed effects, the lower triangle of ``Psi`` row by row,
        then ``vcomp / scale``."""
        return self._shaped(self._params)

    @property
    def singular(self) -> bool:
        """Whether the fit is on the boundary (lme4's ``isSingular``; see
        :func:`dlmm.results.inference.is_singular`), judged where the optimizer
        worked (centred random-effect columns) when the fit says so."""
        if "singular" in self.diagnostics:
            return bool(self.diagnostics["singular"])
        return is_singular(self.estimates.cov_re_unscaled, self.vcomp / self.scale)

    # -- inference ----------------------------------------------------------------

    def cov_params(self) -> pd.DataFrame:
        """Covariance of ``params``: ``inv(-H)`` (zero rows for fixed parameters)."""
        return self._shaped(pd.DataFrame(self._cov.copy(), index=self.param_names,
                                         columns=self.param_names))

    @property
    def _bse(self) -> np.ndarray:
        return np.sqrt(np.clip(np.diag(self._cov), 0, None))

    @property
    def bse(self) -> pd.Series:
        """Standard errors of ``params``."""
        return self._shaped(pd.Series(self._bse, index=self.param_names))

    @property
    def bse_fe(self) -> pd.Series:
        """Standard errors of the fixed effects."""
        return self._shaped(pd.Series(self._bse[: self.k_fe], index=self.exog_names))

    @property
    def bse_re(self) -> pd.Series:
        """Standard errors of ``cov_re`` (lower triangle) and ``vcomp``, on the data scale
        (``sqrt(scale)`` times those of the profile parameters, as statsmodels)."""
        return self._shaped(pd.Series(
            np.sqrt(self.scale * np.clip(np.diag(self._cov)[self.k_fe:], 0, None)),
            index=self.param_names[self.k_fe:]))

    @property
    def _tvalues(self) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return self._params.to_numpy() / self._bse

    @property
    def tvalues(self) -> pd.Series:
        """``params / bse``."""
        return self._shaped(pd.Series(self._tvalues, index=self.param_names))

    @property
    def pvalues(self) -> pd.Series:
        """Two-sided normal p-values of ``tvalues``."""
        return self._shaped(pd.Series(2 * normal_sf(np.abs(self._tvalues)),
                                      index=self.param_names))

    def conf_int(self, alpha: float = 0.05) -> pd.DataFrame:
        """Wald confidence intervals ``params -/+ z_{1-alpha/2} bse``."""
        z = normal_quantile(1 - alpha / 2)
        params = self._params.to_numpy()
        return self._shaped(pd.DataFrame({0: params - z * self._bse, 1: params + z * self._bse},
                                         index=self.param_names))

    @property
    def df_modelwc(self) -> int:
        """Number of estimated parameters (free ones under ``free``)."""
        if self.freepat is not None:
            return int(self.freepat.sum())
        return self.k_fe + self.k_re2 + self.k_vc

    @property
    def aic(self) -> float:
        """AIC of an ML fit; NaN under REML (the REML likelihood does not compare
        models with different fixed effects), as statsmodels."""
        if self.reml:
            return np.nan
        return -2 * (self.llf - (self.df_modelwc + 1))

    @property
    def bic(self) -> float:
        """BIC of an ML fit; NaN under REML, as statsmodels."""
        if self.reml:
            return np.nan
        return -2 * self.llf + np.log(self.nobs) * (self.df_modelwc + 1)

    def profile_conf_int(self, alpha: float = 0.05) -> pd.DataFrame:
        """Profile-likelihood intervals, as lme4's ``confint(method="profile")``:
        random-effect SDs and correlations, component SDs, the residual SD and the
        fixed effects (ML likelihood, also for REML fits, as lme4). See
        :mod:`dlmm.profile`."""
        from .profile import profile_conf_int

        return profile_conf_int(self, alpha)

    def profile_re(self, re_ix, vtype: str, num_low: int = 5, dist_low: float = 1.0,
                   num_high: int = 5, dist_high: float = 1.0) -> np.ndarray:
        """statsmodels' ``profile_re`` (see :func:`dlmm.profile.profile_re`)."""
        from .profile import profile_re

        return profile_re(self, re_ix, vtype, num_low, dist_low, num_high, dist_high)

    # -- random effects -----------------------------------------------------------

    def _require_stats(self, what: str) -> RandomEffectsStatistics:
        if self._stats is None:
            raise InputError(f"{what} needs the fitted data; a loaded result has only the "
                             "random-effects tables it was saved with")
        return self._stats

    @cached_property
    def random_effects(self) -> dict:
        """group -> Series of the predicted random effects (statsmodels' names:
        the random-effect names, then ``component[column]`` for each variance
        component column the group uses)."""
        return self.effects.as_dict()

    @cached_property
    def random_effects_cov(self) -> dict:
        """group -> DataFrame: conditional covariance of the group's random effects
        (not for crossed fits, which keep each effect's conditional variance only:
        :meth:`vc_effects_table`)."""
        return self.effects.cov_dict()

    def random_effects_table(self, with_se: bool = False):
        """One row per group (index: group label), one column per random effect,
        and with ``with_se`` their conditional standard deviations (``<name> SE``).

        pandas for in-process fits; a lazy Dask DataFrame for Dask fits, whose
        partitions are computed on the workers from the persisted statistics
        (pandas for crossed fits, whose statistics are on the driver).
        """
        return self.effects.table(with_se)

    def vc_effects_table(self):
        """One row per variance-component effect: group, component, column, effect,
        conditional variance (pandas, or lazy Dask for grouped Dask fits). For a
        crossed fit: one row per level of every factor."""
        return self.effects.vc_table()

    def write_random_effects(self, path) -> None:
        """Write :meth:`random_effects_table` to Parquet (a folder for Dask fits), all
        or nothing: a failed write leaves no file or folder behind
        (:func:`dlmm.results.table_output.write_table`)."""
        from .table_output import write_table

        write_table(self.random_effects_table(), path)

    # -- predictions --------------------------------------------------------------

    @cached_property
    def _fitted(self):
        from .prediction import fitted_values

        return fitted_values(self, self._require_stats("fittedvalues"))

    @cached_property
    def _resid(self):
        from .prediction import responses

        y = responses(self.model.spec, self._require_stats("resid"))
        return (y - self._fitted).rename("resid")

    @property
    def fittedvalues(self):
        """Fixed part plus the group's predicted random effects, for the rows used in
        the fit (pandas Series indexed like the data; lazy Dask for Dask input; an
        ndarray for a model made from arrays)."""
        return self._shaped(self._fitted)

    @property
    def resid(self):
        """Response minus :attr:`fittedvalues`."""
        return self._shaped(self._resid)

    def predict(self, exog=None, random_effects: bool = False, client=None):
        """Predictions: statsmodels' meaning by default, the fixed part ``X beta``.

        ``exog=None``: the rows used in the fit, as an ndarray (statsmodels'
        ``predict()``; a lazy Dask Series for Dask or Parquet fits, whose rows are
        not on the driver). ``exog`` a pandas DataFrame: a Series indexed like it;
        a Dask DataFrame or Parquet path: a lazy Dask Series (write it with
        ``.to_frame().to_parquet(...)``); a 2-D array of fixed-effects columns:
        ``exog @ fe_params``. Rows with a missing model value predict NaN.

        ``random_effects=True`` asks for conditional predictions: rows of groups seen
        in the fit also get their predicted random effects (unseen groups the fixed
        part only). See :mod:`dlmm.results.prediction`.
        """
        from .prediction import predict

        return predict(self, exog, random_effects, client)

    # -- plots -------------------------------------------------------------------

    def plot_random_effects(self, effect: str | None = None, **kwargs):
        """Caterpillar plot of the random effects, lme4's ``dotplot(ranef(fit))``; returns
        the matplotlib Figure (see :func:`dlmm.results.plotting.caterpillar`)."""
        from .plotting import caterpillar

        return caterpillar(self, effect=effect, **kwargs)

    def plot_optimization(self, **kwargs):
        """llf and gradient norm per evaluation; returns the matplotlib Figure (see
        :func:`dlmm.results.plotting.optimization_trace`)."""
        from .plotting import optimization_trace

        return optimization_trace(self, **kwargs)

    # -- persistence --------------------------------------------------------------

    def save(self, path) -> None:
        """Write the result to a folder: JSON estimates and metadata, Parquet random
        effects, never pickle (see :mod:`dlmm.io.saved_result`); read it with
        :func:`dlmm.load_result`."""
        from ..io.saved_result import save_result

        save_result(self.labelled(), path)

    # -- presentation -------------------------------------------------------------

    @property
    def group_size_mean(self) -> float:
        return self.nobs / self.n_groups if self.n_groups else float("nan")

    def summary(self, yname=None, xname_fe=None, xname_re=None, title=None,
                alpha: float = 0.05, ddf: str | None = None):
        """A summary in statsmodels' layout and signature (see :mod:`dlmm.results.summary`),
        with lme4's VarCorr and, for ``ddf="Satterthwaite"``, lmerTest's table."""
        from .summary import make_summary

        return make_summary(self, alpha=alpha, yname=yname, xname_fe=xname_fe,
                            xname_re=xname_re, title=title, ddf=check_ddf(ddf))

    def _repr_html_(self) -> str:
        return self.summary()._repr_html_()

    def __repr__(self) -> str:
        return (f"<dlmm.MixedLMResults {self.method} llf={self.llf:.6g} nobs={self.nobs} "
                f"groups={self.n_groups} converged={self.converged}>")
