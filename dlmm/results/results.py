"""Fit results with statsmodels' names and conventions (``MixedLMResults``).

Standard errors come from the analytic Hessian of the log-likelihood in
(fixed effects, profile covariance parameters), as statsmodels computes it:
``cov_params = inv(-H)``; the variance parameters in ``params`` are on the
profile scale (divided by ``scale``) and tests are z tests. The Hessian is one
more map-reduce over the persisted cross-products at the optimum.
"""

from __future__ import annotations

import warnings
from functools import cached_property

import numpy as np
import pandas as pd
from scipy import stats as sps

from .exceptions import InputError
from .kernels.block import block_effects
from .objective.hessian import profiled_hessian
from .objective.params import packed_names
from .objective.profiled import ProfiledValue
from .optimize.driver import OptimizeResult
from .random_effects import (
    EffectsLookup,
    effect_names,
    modes_only,
    re_frame,
    table_index_name,
    vc_frame,
)
from .statistics import SufficientStatistics


def _diagnostics(outcome: OptimizeResult, singular: bool) -> dict:
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
        try:
            np.linalg.cholesky(-hess)
        except np.linalg.LinAlgError:
            out["hessian_negative_definite"] = False
        try:
            out["scaled_grad_max"] = float(np.max(np.abs(np.linalg.solve(hess, grad))))
        except np.linalg.LinAlgError:
            pass
    return out


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
        Seconds in the data pass, the optimizer and the Hessian.
    freepat : ndarray or None
        0/1 mask over ``params`` of the free parameters (``fit(free=...)``).
    singular : bool
        A variance on the boundary (lme4's ``isSingular``).
    diagnostics : dict
        lme4-style convergence checks (gradient, scaled gradient, Hessian).
    """

    def __init__(self, model, value: ProfiledValue, chol_re: np.ndarray, sd_vc: np.ndarray,
                 outcome: OptimizeResult, stats: SufficientStatistics,
                 freepat: np.ndarray | None = None):
        import time

        spec = model.spec
        self.model = model
        self._stats = stats
        self._chol = np.asarray(chol_re, dtype=float)
        self._sd = np.asarray(sd_vc, dtype=float)
        self._set_estimates(
            exog_names=spec.exog_names, exog_re_names=spec.exog_re_names,
            vc_names=spec.vc_names, fe=value.fe_params, psi=chol_re @ chol_re.T,
            v=np.asarray(sd_vc, dtype=float) ** 2, scale=value.scale, llf=value.llf,
            reml=model.reml,
        )
        self.group_name = spec.group_name
        self.endog_name = spec.response
        self.nobs = int(stats.totals.n_rows)
        self.n_groups = stats.n_groups
        self.n_dropped = int(stats.totals.n_dropped)
        self.group_size_min = stats.group_size_min
        self.group_size_max = stats.group_size_max
        self.freepat = None if freepat is None else np.asarray(freepat, dtype=float)
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
        start = time.perf_counter()
        hessian = self._compute_hessian()
        self.timings = {
            "data_pass": stats.seconds,
            "optimizer": outcome.log.seconds,
            "hessian": time.perf_counter() - start,
            "evaluations": outcome.log.evaluations,
        }
        self._set_covariance(hessian)
        self.backend = stats.backend.name
        self.groups_shuffled = stats.shuffled
        self.diagnostics = _diagnostics(outcome, self.singular)
        self.mle_retvals["diagnostics"] = self.diagnostics

    # -- construction helpers ------------------------------------------------------

    def _set_estimates(self, exog_names, exog_re_names, vc_names, fe, psi, v, scale, llf, reml):
        self.exog_names = list(exog_names)
        self.exog_re_names = list(exog_re_names)
        self.vc_names = list(vc_names)
        self.k_fe = len(self.exog_names)
        self.k_re = len(self.exog_re_names)
        self.k_re2 = self.k_re * (self.k_re + 1) // 2
        self.k_vc = len(self.vc_names)
        self.reml = bool(reml)
        self.method = "REML" if self.reml else "ML"
        self.llf = float(llf)
        self.scale = float(scale)
        psi = np.asarray(psi, dtype=float).reshape(self.k_re, self.k_re)
        v = np.asarray(v, dtype=float)
        self.fe_params = pd.Series(np.asarray(fe, dtype=float), index=self.exog_names,
                                   name="fe_params")
        self.cov_re_unscaled = psi
        self.cov_re = pd.DataFrame(psi * self.scale, index=self.exog_re_names,
                                   columns=self.exog_re_names)
        self.vcomp = v * self.scale
        packed = np.concatenate([self.fe_params.to_numpy(), psi[np.tril_indices(self.k_re)], v])
        self.param_names = self.exog_names + packed_names(self.exog_re_names, self.vc_names)
        self.params = pd.Series(packed, index=self.param_names)

    def _compute_hessian(self) -> np.ndarray:
        stats = self._stats
        pieces = stats.newton_pieces(self._chol, self._sd).hess
        return profiled_hessian(pieces, stats.totals.xy_cross, stats.totals.n_rows, self.reml,
                                self.fe_params.to_numpy())

    def _set_covariance(self, hessian: np.ndarray) -> None:
        self.hessian = hessian
        k = hessian.shape[0]
        free = np.arange(k) if self.freepat is None else np.flatnonzero(self.freepat)
        cov = np.zeros((k, k))
        sub = -hessian[np.ix_(free, free)]
        self.hessian_singular = False
        try:
            inv = np.linalg.inv(sub)
            if not np.all(np.isfinite(inv)):
                raise np.linalg.LinAlgError("non-finite inverse")
        except np.linalg.LinAlgError:
            inv = np.linalg.pinv(sub)
            self.hessian_singular = True
            warnings.warn("the Hessian is singular: standard errors use a pseudo-inverse",
                          RuntimeWarning, stacklevel=3)
        cov[np.ix_(free, free)] = inv
        if np.any(np.diag(sub) <= 0):
            warnings.warn("the Hessian at the estimate is not negative definite",
                          RuntimeWarning, stacklevel=3)
        self._cov = cov

    @property
    def singular(self) -> bool:
        """Whether the fit is on the boundary (lme4's ``isSingular``): a diagonal
        entry of the relative covariance factor (the Cholesky factor of
        ``cov_re / scale``, and ``sqrt(vcomp / scale)``) below 1e-4, i.e. a zero
        variance or perfectly correlated random effects."""
        tol = 1e-4
        psi = self.cov_re_unscaled
        if psi.size:
            w = np.linalg.eigvalsh(psi)
            if w.min() <= tol**2 * max(1.0, w.max()):
                return True
            if np.min(np.diag(np.linalg.cholesky(psi))) < tol:
                return True
        v = self.vcomp / self.scale
        return bool(v.size and np.min(np.sqrt(np.clip(v, 0, None))) < tol)

    # -- inference ----------------------------------------------------------------

    def cov_params(self) -> pd.DataFrame:
        """Covariance of ``params``: ``inv(-H)`` (zero rows for fixed parameters)."""
        return pd.DataFrame(self._cov.copy(), index=self.param_names, columns=self.param_names)

    @property
    def bse(self) -> pd.Series:
        """Standard errors of ``params``."""
        return pd.Series(np.sqrt(np.clip(np.diag(self._cov), 0, None)), index=self.param_names)

    @property
    def bse_fe(self) -> pd.Series:
        """Standard errors of the fixed effects."""
        return self.bse.iloc[: self.k_fe]

    @property
    def bse_re(self) -> pd.Series:
        """Standard errors of ``cov_re`` (lower triangle) and ``vcomp``, on the data scale
        (``sqrt(scale)`` times those of the profile parameters, as statsmodels)."""
        return pd.Series(np.sqrt(self.scale * np.clip(np.diag(self._cov)[self.k_fe:], 0, None)),
                         index=self.param_names[self.k_fe:])

    @property
    def tvalues(self) -> pd.Series:
        """``params / bse``."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.params / self.bse

    @property
    def pvalues(self) -> pd.Series:
        """Two-sided normal p-values of ``tvalues``."""
        return pd.Series(2 * sps.norm.sf(np.abs(self.tvalues.to_numpy())), index=self.param_names)

    def conf_int(self, alpha: float = 0.05) -> pd.DataFrame:
        """Wald confidence intervals ``params -/+ z_{1-alpha/2} bse``."""
        z = sps.norm.ppf(1 - alpha / 2)
        bse = self.bse
        return pd.DataFrame({0: self.params - z * bse, 1: self.params + z * bse})

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

    def _fe_contrast(self, r_matrix, q=None):
        from formulaic.utils.constraints import LinearConstraints

        if isinstance(r_matrix, str):
            lc = LinearConstraints.from_spec(r_matrix, variable_names=self.exog_names)
            r = np.asarray(lc.constraint_matrix, dtype=float)
            q = np.asarray(lc.constraint_values, dtype=float)
        else:
            r = np.atleast_2d(np.asarray(r_matrix, dtype=float))
            if r.shape[1] == len(self.param_names):
                if np.any(r[:, self.k_fe:] != 0):
                    raise InputError("t_test and wald_test apply to fixed effects only")
                r = r[:, : self.k_fe]
            if r.shape[1] != self.k_fe:
                raise InputError(
                    f"r_matrix has {r.shape[1]} columns; expected {self.k_fe} (fixed effects)")
            q = np.zeros(r.shape[0]) if q is None else np.atleast_1d(np.asarray(q, dtype=float))
        cov = self._cov[: self.k_fe, : self.k_fe]
        effect = r @ self.fe_params.to_numpy() - q
        return r, q, effect, r @ cov @ r.T

    def t_test(self, r_matrix, q=None) -> pd.DataFrame:
        """z tests of linear hypotheses on the fixed effects ``R beta = q``.

        ``r_matrix`` is an array (rows over fixed effects, or over all of
        ``params`` with zeros beyond them) or a string such as ``"x1 = x2, x3 = 0"``.
        Returns a frame with effect, standard error, z, p-value and a 95% interval.
        """
        r, q, effect, cov = self._fe_contrast(r_matrix, q)
        se = np.sqrt(np.diag(cov))
        z = effect / se
        crit = sps.norm.ppf(0.975)
        return pd.DataFrame({
            "coef": effect + q, "std err": se, "z": z, "P>|z|": 2 * sps.norm.sf(np.abs(z)),
            "Conf. Int. Low": effect + q - crit * se, "Conf. Int. Upp.": effect + q + crit * se,
        })

    def wald_test(self, r_matrix, q=None) -> dict:
        """Joint chi-square test of ``R beta = q``: statistic, df and p-value."""
        r, q, effect, cov = self._fe_contrast(r_matrix, q)
        stat = float(effect @ np.linalg.solve(cov, effect))
        df = r.shape[0]
        return {"statistic": stat, "df": df, "pvalue": float(sps.chi2.sf(stat, df))}

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

    def _require_stats(self, what: str) -> SufficientStatistics:
        if self._stats is None:
            raise InputError(f"{what} needs the fitted data; a loaded result has only the "
                             "random-effects tables it was saved with")
        return self._stats

    @cached_property
    def _effect_handles(self) -> list:
        stats = self._require_stats("random effects")
        coef = np.concatenate([-self.fe_params.to_numpy(), [1.0]])
        return stats.backend.map(block_effects, stats.blocks, self._chol, self._sd, coef,
                                 self.scale)

    @cached_property
    def _effects(self) -> list:
        stats = self._require_stats("random effects")
        return stats.backend.gather(self._effect_handles)

    def _slot_info(self):
        spec = self.model.spec
        slot_names = [n for names in spec.vc_column_names for n in names]
        return slot_names, spec.slot_component

    @cached_property
    def random_effects(self) -> dict:
        """group -> Series of the predicted random effects (statsmodels' names:
        the random-effect names, then ``component[column]`` for each variance
        component column the group uses)."""
        slot_names, slot_component = self._slot_info()
        out = {}
        for part in self._effects:  # gathers every group, as statsmodels' dict does
            vc_by_group = pd.Series(part.vc_modes).groupby(part.vc_group)
            vc_lists = {g: s.to_numpy() for g, s in vc_by_group}
            slot_lists = {g: s.to_numpy()
                          for g, s in pd.Series(part.vc_slot).groupby(part.vc_group)}
            for i, label in enumerate(part.labels):
                slots = slot_lists.get(i, np.zeros(0, dtype=np.int64))
                names = effect_names(self.exog_re_names, self.vc_names, slot_names,
                                     slot_component, slots)
                values = np.concatenate([part.re_modes[i], vc_lists.get(i, np.zeros(0))])
                out[label] = pd.Series(values, index=names)
        return dict(sorted(out.items(), key=lambda kv: kv[0]))

    @cached_property
    def random_effects_cov(self) -> dict:
        """group -> DataFrame: conditional covariance of the group's random effects."""
        slot_names, slot_component = self._slot_info()
        out = {}
        for part in self._effects:
            for index, slots, cov in part.batches:
                for row, pos in enumerate(index):
                    keep = np.concatenate([np.ones(self.k_re, dtype=bool), slots[row] >= 0])
                    names = effect_names(self.exog_re_names, self.vc_names, slot_names,
                                         slot_component, slots[row])
                    out[part.labels[pos]] = pd.DataFrame(cov[row][np.ix_(keep, keep)],
                                                         index=names, columns=names)
        return dict(sorted(out.items(), key=lambda kv: kv[0]))

    def random_effects_table(self, with_se: bool = False):
        """One row per group (index: group label), one column per random effect,
        and with ``with_se`` their conditional standard deviations (``<name> SE``).

        pandas for in-process fits; a lazy Dask DataFrame for Dask fits, whose
        partitions are computed on the workers from the persisted blocks.
        """
        loaded = getattr(self, "_loaded_tables", None)
        if loaded is not None:
            if with_se:
                raise InputError("a loaded result keeps the random effects without their SEs")
            return loaded[0].copy()
        stats = self._require_stats("random_effects_table")
        columns = list(self.exog_re_names)
        if with_se:
            columns += [f"{n} SE" for n in self.exog_re_names]
        meta = pd.DataFrame({n: pd.Series(dtype=float) for n in columns})
        meta.index.name = table_index_name(self.group_name, self.exog_re_names)
        handles = stats.backend.map(re_frame, self._effect_handles, self.group_name,
                                    self.exog_re_names, with_se)
        return stats.backend.to_frame(handles, meta)

    def vc_effects_table(self):
        """One row per variance-component effect: group, component, column, effect,
        conditional variance (pandas, or lazy Dask for Dask fits)."""
        loaded = getattr(self, "_loaded_tables", None)
        if loaded is not None:
            return None if loaded[1] is None else loaded[1].copy()
        stats = self._require_stats("vc_effects_table")
        slot_names, slot_component = self._slot_info()
        meta = pd.DataFrame({
            self.group_name: pd.Series(dtype=object), "component": pd.Series(dtype=object),
            "column": pd.Series(dtype=object), "effect": pd.Series(dtype=float),
            "variance": pd.Series(dtype=float),
        })
        handles = stats.backend.map(vc_frame, self._effect_handles, self.group_name,
                                    self.vc_names, slot_names, slot_component)
        return stats.backend.to_frame(handles, meta)

    def write_random_effects(self, path) -> None:
        """Write :meth:`random_effects_table` to Parquet (a folder for Dask fits)."""
        self.random_effects_table().to_parquet(str(path))

    # -- predictions --------------------------------------------------------------

    @cached_property
    def _lookup(self) -> EffectsLookup:
        slot_names, _ = self._slot_info()
        if "_effects" in self.__dict__:  # already on the driver
            parts = self._effects
        else:  # only the modes travel, not the conditional covariances
            stats = self._require_stats("predictions")
            parts = stats.backend.gather(stats.backend.map(modes_only, self._effect_handles))
        return EffectsLookup.from_blocks(parts, len(slot_names))

    def _predict_frame(self, backend, random_effects: bool, response: bool):
        from .prediction import predict_chunk

        spec = self.model.spec
        lookup = self._lookup if random_effects else None
        fe = self.fe_params.to_numpy()

        def run(frame, lookup):
            return predict_chunk(frame, spec, fe, lookup, response)

        name = "fitted" if response else "predicted"
        meta = pd.Series(dtype=float, name=name)
        # The predicted effects of every group go to each worker once.
        return backend.map_frame(run, meta, lookup)

    @cached_property
    def fittedvalues(self):
        """Fixed part plus the group's predicted random effects, for the rows used in
        the fit (pandas Series indexed like the data; lazy Dask for Dask input)."""
        stats = self._require_stats("fittedvalues")
        return self._predict_frame(stats.backend, True, True)

    @cached_property
    def resid(self):
        """Response minus :attr:`fittedvalues`."""
        from .prediction import response_of

        stats = self._require_stats("resid")
        spec = self.model.spec
        y = stats.backend.map_frame(lambda f: response_of(f, spec),
                                    pd.Series(dtype=float, name="fitted"))
        out = y - self.fittedvalues
        return out.rename("resid")

    def predict(self, exog=None, random_effects: bool = True, client=None):
        """Predictions for new data (or the fitted data when ``exog`` is None).

        Rows of groups seen in the fit get their predicted random effects (with
        ``random_effects=True``); rows of unseen groups get the fixed part only.
        statsmodels' ``predict`` ignores random effects altogether (its issue
        #7065); ``random_effects=False`` does that too.

        ``exog`` is a pandas DataFrame (result: pandas Series), a Dask DataFrame
        or Parquet path (result: a lazy Dask Series that can be written with
        ``.to_frame().to_parquet(...)``). Rows with a missing model value predict NaN.
        """
        from .distributed.sources import open_backend

        if self.model.spec is None:
            raise InputError("this loaded result was fitted from arrays and cannot predict "
                             "from a data frame")
        if getattr(self.model.spec, "stateful", False) and self._stats is None:
            raise InputError("the formula uses a stateful transform (center, scale...) whose "
                             "state is not saved; refit to predict")
        if exog is None:
            stats = self._require_stats("predict()")
            return self._predict_frame(stats.backend, random_effects, False)
        backend = open_backend(exog, client)
        spec = self.model.spec
        spec.check_prediction_columns(backend.columns, random_effects)
        return self._predict_frame(backend.select([c for c in spec.columns
                                                   if c in backend.columns]),
                                   random_effects, False)

    # -- plots -------------------------------------------------------------------

    def plot_random_effects(self, effect: str | None = None, **kwargs):
        """Caterpillar plot of one random effect (see :func:`dlmm.plotting.caterpillar`)."""
        from .plotting import caterpillar

        return caterpillar(self, effect=effect, **kwargs)

    def plot_optimization(self, **kwargs):
        """llf and gradient norm per evaluation (see :func:`dlmm.plotting.optimization_trace`)."""
        from .plotting import optimization_trace

        return optimization_trace(self, **kwargs)

    # -- persistence --------------------------------------------------------------

    def save(self, path) -> None:
        """Write the result to a folder: JSON estimates and metadata, Parquet random
        effects, never pickle (see :mod:`dlmm.io.saved_result`); read it with
        :func:`dlmm.load_result`."""
        from .io.saved_result import save_result

        save_result(self, path)

    # -- presentation -------------------------------------------------------------

    @property
    def group_size_mean(self) -> float:
        return self.nobs / self.n_groups if self.n_groups else float("nan")

    def summary(self, alpha: float = 0.05):
        """A summary in statsmodels' layout (see :mod:`dlmm.summary`)."""
        from .summary import Summary

        return Summary(self, alpha=alpha)

    def _repr_html_(self) -> str:
        return self.summary()._repr_html_()

    def __repr__(self) -> str:
        return (f"<dlmm.MixedLMResults {self.method} llf={self.llf:.6g} nobs={self.nobs} "
                f"groups={self.n_groups} converged={self.converged}>")
