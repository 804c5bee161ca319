"""The statsmodels-shaped model: ``MixedLM`` and ``MixedLM.from_formula`` (``mixedlm``, its
formula.api spelling, is in :mod:`dlmm.formula_api`).

A model holds its data and specification. The first call that needs numbers
(``fit``, ``loglike``, ``score``, ``nobs``...) learns the specification over
the whole data set and makes the one pass; every later call reuses the
persisted cross-products.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from .distributed import sources
from .distributed.embedded import cluster_start_timer
from .distributed.sources import check_parquet_columns, is_path_like, open_backend, reading_errors
from .exceptions import CollinearityWarning, InputError, convergence_warning
from .model_compat import StatsmodelsModel, as_params_object, statsmodels_fit_options
from .objective.free import free_mask, restricted
from .objective.hessian import GradientHessian
from .objective.identifiable import check_identifiable
from .objective.objective import ProfiledObjective
from .objective.params import MixedLMParams, SqrtMap, packed_names
from .objective.penalty import (
    check_covariance_penalty,
    covariance_penalty,
    penalized,
    pop_penalties,
)
from .objective.rank import check_full_rank, independent_columns
from .objective.residual_map import fitted_statistics, residual_start, with_residual_model
from .objective.start import (
    MOMENT_MIN_GROUPS,
    default_start,
    moment_estimate,
    ols_coefficients,
)
from .objective.totals import check_response_varies, check_rows, check_values, check_weights
from .optimize.driver import maximize
from .optimize.methods import default_methods, polish_differences, qnewton_options
from .spec.arrays import ArraySpec
from .spec.eval_env import capture
from .spec.formula import FormulaSpec
from .spec.residual import ResidualModel
from .spec.statsmodels_inputs import (
    DEPRECATED_VC_DICT,
    attach_groups,
    is_vc_dict_of_groups,
    is_vcspec,
    vcspec_column_names,
    vcspec_to_dict,
)
from .structure import RandomEffectsStatistics, collect_statistics
from .structure.driver_memory import driver_memory as driver_memory_limit
from .structure.threads import optimizer_threads

logger = logging.getLogger("dlmm")

_MISSING = ("none", "drop", "raise")
_METHODS = {"newton", "qnewton", "bfgs", "lbfgs", "l-bfgs-b", "cg", "nelder-mead", "nm", "powell"}
_SAMPLE_ROWS = 2000


class MissingDataWarning(UserWarning):
    """Rows with missing values were dropped (``missing="drop"``)."""


class MixedLM(StatsmodelsModel):
    """Linear mixed-effects model, as statsmodels' ``MixedLM``.

    Parameters
    ----------
    endog : array_like
        Response.
    exog : array_like
        Fixed-effects design (include a constant column for an intercept).
    groups : array_like or None
        Group labels, one per row; None puts all rows in one group.
    exog_re : array_like, optional
        Random-effects design; default a random intercept (when ``exog_vc`` is
        also None).
    exog_vc : dict or VCSpec, optional
        Variance components: statsmodels' ``VCSpec`` or ``{name: {group: matrix}}`` (which
        statsmodels deprecates: a ``FutureWarning``, as there), or ``{name: (n, L)
        array}`` aligned with the rows (a group's effects are its nonzero columns).
    use_sqrt : bool
        Whether packed parameters of ``loglike``/``score``/``start_params`` are
        in the square-root parameterization (statsmodels' default).
    missing : {"none", "drop", "raise"}
        Rows with a missing value in a model column: an error naming the
        column (``"none"``, ``"raise"``), or dropped and counted (``"drop"``).
    drop_collinear : bool
        Collinear fixed effects: an error naming the columns (default), or,
        with True, drop each column that is a linear combination of earlier
        ones (as lme4 does), with a ``CollinearityWarning``.
    weights : array_like, optional
        Precision weights, one positive value per row: row i's residual variance is
        ``scale / weights[i]``; ``llf`` includes ½ Σ log w_i, as lme4's ``logLik``
        (lme4's ``weights=``; :mod:`dlmm.spec.residual`). statsmodels' has none.
    """

    def __init__(self, endog, exog, groups, exog_re=None, exog_vc=None, use_sqrt=True,
                 missing="none", drop_collinear=False, weights=None, **kwargs):
        if is_vc_dict_of_groups(exog_vc):  # statsmodels deprecates it, and says so
            warnings.warn(DEPRECATED_VC_DICT, FutureWarning, stacklevel=2)
        vc_names = vcspec_column_names(exog_vc) if is_vcspec(exog_vc) else None
        if vc_names is not None:  # statsmodels' VCSpec
            exog_vc = vcspec_to_dict(exog_vc, np.zeros(len(endog)) if groups is None else groups)
        spec = ArraySpec(endog, exog, groups, exog_re=exog_re, exog_vc=exog_vc, weights=weights)
        spec.vc_column_names = vc_names or spec.vc_column_names
        self._setup(spec, spec.frame, use_sqrt, missing, kwargs.pop("client", None),
                    drop_collinear)
        # statsmodels' model data: PandasData (pandas outputs) for pandas input
        given = [v for v in (endog, exog) if isinstance(v, (pd.Series, pd.DataFrame))]
        self._wraps_pandas = bool(given)
        self._input_index = given[0].index if given else None
        self._default_re = exog_re is None and not exog_vc
        if kwargs:
            raise InputError(f"unknown option {next(iter(kwargs))!r} for MixedLM")
        self._check_values_now(spec.frame, spec.columns, spec.column_labels)

    def _setup(self, spec, data, use_sqrt, missing, client, drop_collinear=False):
        if missing not in _MISSING:
            raise InputError(f"missing must be one of {', '.join(_MISSING)}, got {missing!r}")
        self.spec = spec
        self._source = data  # the data as given; model.data is statsmodels' model data
        self._model_data = None
        self._wraps_pandas, self._input_index, self._default_re = True, None, False
        self.use_sqrt = use_sqrt
        self.missing = missing
        self.drop_collinear = bool(drop_collinear)
        self.reml = True
        self._client = client
        self._stats: RandomEffectsStatistics | None = None
        self._stats_client: Any = None
        self._backend = None
        self._learned = isinstance(spec, ArraySpec)
        self.group_values_name: str | None = None  # groups=Series: the Series' name
        self.cache, self.cache_report = None, None
        self.cluster_start = 0.0  # seconds waited for the embedded cluster to start

    @classmethod
    def from_formula(cls, formula: str, data, re_formula: str | None = None,
                     vc_formula: dict | None = None, subset=None, use_sparse=False,
                     missing: str = "none", *args, groups: str | None = None,
                     client=None, drop_collinear: bool = False, use_sqrt: bool = True,
                     cache=None, eval_env=None, weights: str | None = None,
                     residual_by: str | None = None, residual_ar1: str | None = None,
                     **kwargs) -> MixedLM:
        """Model from formulas (statsmodels' ``MixedLM.from_formula``).

        Parameters
        ----------
        formula : str
            ``"y ~ x1 + x2"``.
        data : pandas.DataFrame, dask DataFrame, or Parquet path(s) / URL
        re_formula : str, optional
            Standard random effects, e.g. ``"~x1"``; ``"0"`` for none.
        vc_formula : dict, optional
            Variance components, ``{name: formula}``.
        subset : array_like of bool, optional
            Rows to use (pandas or Dask input). statsmodels ignores it; dlmm
            applies it.
        groups : str or None
            Name of the group column; None means a single group.
        use_sparse : bool
            statsmodels' switch to sparse random-effects matrices; accepted either
            way: dlmm's engines always work on per-group or keyed sparse sums.
        missing : {"none", "drop", "raise"}
        client : distributed.Client, optional
            Cluster for Dask or Parquet input (else the current client, else small
            local Parquet input in process, else an embedded local cluster).
        drop_collinear : bool
            Drop fixed-effect columns that are linear combinations of earlier
            ones, lme4-style, instead of refusing them.
        use_sqrt : bool
            As for :class:`MixedLM` (packed parameters of ``loglike``/``score``).
        cache : str or PathLike, optional
            Statistics cache folder for Parquet input: only new or changed files are
            read (:mod:`dlmm.structure.cached`); ``model.cache_report`` says what was.
        eval_env : int, dict or None
            Where the formulas find names the data do not have (functions such as
            ``y ~ f(x)``), as statsmodels: None or 0 the calling code's namespace,
            ``k`` the code ``k`` frames above it, -1 none, or a dict of names. Only
            the names the formulas use are kept; on Dask workers they arrive pickled
            (see :mod:`dlmm.spec.eval_env`).
        weights : str, optional
            The column of precision weights, as :class:`MixedLM`'s ``weights``.
        residual_by, residual_ar1 : str, optional
            A column whose levels each have a residual variance (nlme's ``varIdent(form
            = ~ 1 | column)``); a time column of AR(1) errors within groups (``corAR1(
            form = ~ time | groups)``, consecutive integers): ``result.residual``.
        """
        if args:
            raise InputError(f"from_formula takes no positional arguments after missing (got "
                             f"{len(args)}); pass groups=, client=... by name")
        if kwargs:
            raise InputError(f"unknown option {next(iter(kwargs))!r} for from_formula")
        group_label = values_name = None
        if groups is not None and not isinstance(groups, str):
            # statsmodels also takes the labels themselves (an array or Series with
            # one label per row): the data's column when it is one, else a new column;
            # the name is "Group".
            data, groups, values_name = attach_groups(data, groups, is_path_like(data))
            group_label = "Group"
        if subset is not None:
            if is_path_like(data):
                raise InputError("subset needs a DataFrame; filter the Parquet data instead")
            data = data[subset]
        texts = [formula, re_formula or "0", *(vc_formula or {}).values()]
        context = capture([t for t in texts if isinstance(t, str)], eval_env)
        spec = FormulaSpec(formula, groups, re_formula=re_formula, vc_formula=vc_formula,
                           context=context, residual=ResidualModel(
                               weights=weights, strata=residual_by, ar1=residual_ar1))
        if group_label is not None:
            spec.group_name = group_label
        model = cls.__new__(cls)
        model._setup(spec, data, use_sqrt, missing, client, drop_collinear)
        if isinstance(data, pd.DataFrame):  # in memory: found now, as statsmodels does
            columns = spec.required_columns(data.columns)
            model._check_values_now(data, columns, columns)
        model.group_values_name = values_name
        model.cache = cache
        return model

    # -- preparing ------------------------------------------------------------

    def _backend_for(self, client):
        if self._backend is None or (client is not None and client is not self._stats_client):
            self._backend = open_backend(self._source, client)
            self._stats_client = client
        return self._backend

    def _learn(self, client=None) -> None:
        if self._learned:
            return
        with cluster_start_timer(self):
            self._learn_now(client)

    def _learn_now(self, client) -> None:
        backend = self._backend_for(client)
        spec: FormulaSpec = self.spec
        columns = spec.required_columns(backend.columns)
        if is_path_like(self._source):
            check_parquet_columns(self._source, columns)
        backend = self._backend = sources.in_process_backend(  # small Parquet, no client
            self._source, columns, client if client is not None else self._client) or \
            backend.select(columns)
        sample = backend.sample(_SAMPLE_ROWS)
        if len(sample) == 0:
            raise InputError("the data have no rows")
        spec.check_response(sample)
        levels = backend.distinct(spec.categorical_columns(sample))
        spec.learn_levels(sample, levels)
        if spec.stateful:
            if backend.name != "local":
                raise InputError(
                    "formula uses a stateful transform (such as center or scale) that must "
                    "see all the data; compute that column before fitting Dask or Parquet data"
                )
            spec.learn(backend.frame.dropna(subset=columns))
        self._learned = True

    def prepare(self, client=None, progress=None) -> MixedLM:
        """Learn the specification and make the one pass now (``fit`` does it
        otherwise); ``progress(done, total)`` is called as partitions are done."""
        self._ensure_stats(client, progress)
        return self

    def _ensure_stats(self, client=None, progress=None) -> RandomEffectsStatistics:
        client = client if client is not None else self._client
        if self._stats is not None and (client is None or client is self._stats_client):
            return self._stats
        if self.cache is not None:  # only new or changed files are read
            from .structure.cached import cached_statistics

            with self._reading_errors(), cluster_start_timer(self):
                self.spec, stats, self.cache_report = cached_statistics(
                    self.spec, self._source, self.cache, client, progress,
                    full_pass=lambda: self._collect(client, progress))
            self._learned, self._stats_client = True, client
        else:
            with cluster_start_timer(self):
                stats = self._collect(client, progress)
        self._check_stats(stats)
        self._stats = stats
        return stats

    def _collect(self, client, progress) -> RandomEffectsStatistics:
        with self._reading_errors():
            self._learn(client)
        backend = self._backend_for(client)
        if isinstance(self.spec, FormulaSpec):
            backend = backend.select(self.spec.columns) if backend.columns != self.spec.columns \
                else backend
        with self._reading_errors():
            return collect_statistics(self.spec, backend, progress)

    def _drop_collinear(self, stats: RandomEffectsStatistics) -> None:
        """Drop fixed-effect columns that depend on earlier ones (lme4's way), from
        the statistics and from the specification (for predictions)."""
        p = self.spec.k_fe
        keep = independent_columns(stats.totals.xy_cross[:p, :p])
        if keep.all():
            return
        dropped = [n for n, k in zip(self.exog_names, keep) if not k]
        stats.drop_fixed_columns(np.concatenate([keep, [True]]))
        self.spec.drop_fixed_columns(keep)
        msg = (f"fixed effects are rank deficient: dropped {len(dropped)} column(s) "
               f"{', '.join(map(repr, dropped))} (drop_collinear=True)")
        logger.warning(msg)
        warnings.warn(msg, CollinearityWarning, stacklevel=5)

    def _reading_errors(self):
        """Errors of the Parquet reader as an InputError naming the data."""
        return reading_errors(self._source)

    def _check_stats(self, stats: RandomEffectsStatistics) -> None:
        totals = stats.totals
        check_values(totals, self.spec.column_labels, self.missing)
        check_weights(totals, self.spec.residual)
        if totals.n_dropped:
            msg = f"dropped {int(totals.n_dropped)} rows with missing values"
            logger.info(msg)
            warnings.warn(msg, MissingDataWarning, stacklevel=4)
        check_rows(totals, self.spec.k_fe)
        if self.drop_collinear:
            self._drop_collinear(stats)
        check_full_rank(stats.totals.xy_cross[: self.spec.k_fe, : self.spec.k_fe],
                        self.exog_names)
        check_full_rank(totals.z_cross, self.exog_re_names, random=True)
        check_response_varies(stats.totals, self.spec.response, self.spec.centering)
        group = None if getattr(self.spec, "groups", "") is None else self.spec.group_name
        check_identifiable(int(totals.n_rows), group, stats.n_groups,
                           self.spec.exog_re_names, self.spec.vc_names, stats.vc_effect_counts())

    # -- statsmodels attributes -------------------------------------------------

    @property
    def exog_names(self) -> list[str]:
        self._learn(self._client)
        return list(self.spec.exog_names)

    @property
    def exog_re_names(self) -> list[str]:
        self._learn(self._client)
        return list(self.spec.exog_re_names)

    @property
    def endog_names(self) -> str:
        return self.spec.response

    @property
    def k_fe(self) -> int:
        self._learn(self._client)
        return self.spec.k_fe

    @property
    def k_re(self) -> int:
        self._learn(self._client)
        return self.spec.k_re

    @property
    def k_re2(self) -> int:
        return self.k_re * (self.k_re + 1) // 2

    @property
    def k_vc(self) -> int:
        return self.spec.k_vc

    @property
    def nobs(self) -> int:
        return int(self._ensure_stats().totals.n_rows)

    @property
    def n_groups(self) -> int:
        return self._ensure_stats().n_groups

    @property
    def param_names(self) -> list[str]:
        return self.exog_names + packed_names(self.exog_re_names, self.spec.vc_names)

    @property
    def random_terms(self):
        """The model's random-effects terms (:class:`~dlmm.spec.terms.RandomTerms`),
        statsmodels' spelling compiled (:func:`~dlmm.spec.terms.learned_terms`)."""
        from .spec.terms import learned_terms

        self._learn(self._client)
        return learned_terms(self.spec)

    # -- likelihood -------------------------------------------------------------

    def _params_object(self, params) -> MixedLMParams:
        if not isinstance(params, (np.ndarray, list, tuple)) and hasattr(params, "cov_re"):
            return as_params_object(params, self.k_fe, self.k_re, self.use_sqrt, False)
        params = np.asarray(params, dtype=float)
        has_fe = params.shape[0] == self.k_fe + self.k_re2 + self.k_vc
        if not has_fe and params.shape[0] != self.k_re2 + self.k_vc:
            raise InputError(
                f"params has length {params.shape[0]}; expected {self.k_re2 + self.k_vc} "
                f"covariance parameters (or {self.k_fe + self.k_re2 + self.k_vc} with the "
                "fixed effects first)"
            )
        return MixedLMParams.from_packed(params, self.k_fe, self.k_re, self.use_sqrt, has_fe)

    def objective(self, stats: RandomEffectsStatistics | None = None,
                  reml: bool | None = None) -> ProfiledObjective:
        """The profiled (RE)ML of this model as a function of statsmodels' packed sqrt
        vector θ (:class:`~dlmm.objective.objective.ProfiledObjective`), on ``stats``
        (default the model's; its centred form makes the optimizer's coordinates)."""
        stats = self._ensure_stats() if stats is None else stats
        return ProfiledObjective(stats, SqrtMap(self.k_re),
                                 self.reml if reml is None else bool(reml),
                                 self.spec.centering.xy_scale)

    def _value(self, chol_re: np.ndarray, sd_vc: np.ndarray, reml: bool, stats=None):
        return self.objective(stats, reml).value_at((np.asarray(chol_re, dtype=float),
                                                     np.asarray(sd_vc, dtype=float)))

    # -- fitting ----------------------------------------------------------------

    def _start(self, start_params, engine: RandomEffectsStatistics,
               u: np.ndarray | None, moments: bool = True) -> np.ndarray:
        """Start values in the engine's sqrt parameterization: ``start_params``
        (moved to the engine's coordinates, ``Psi_c = U Psi U'``), else moment
        estimates when there are enough groups for them to be informative (see
        :mod:`dlmm.objective.start`), else the engine's own proposal (the crossed
        engine: one-way moments per factor), else ``Psi = I``, ``vcomp / scale = 1``."""
        if start_params is not None:
            po = self._params_object(start_params)
            if u is not None:
                po = MixedLMParams.from_components(cov_re=u @ po.cov_re @ u.T, vcomp=po.vcomp)
        else:
            po = None
            if moments and engine.n_groups >= MOMENT_MIN_GROUPS and \
                    getattr(engine, "has_moment_pieces", True):
                try:
                    coef, sigma2 = ols_coefficients((t := engine.totals).xy_cross, t.n_rows)
                    po = moment_estimate(engine.moment_pieces(coef), sigma2, self.k_re,
                                         t.n_rows - coef.shape[0] + 1)  # n - p
                except (np.linalg.LinAlgError, ValueError, ZeroDivisionError):
                    po = None
            if po is None and moments:
                po = engine.start_params()
            if po is None:
                po = default_start(self.k_re, self.k_vc)
        return po.get_packed(use_sqrt=True, has_fe=False)

    def fit(self, start_params=None, reml: bool = True, method=None, client=None,
            maxiter: int = 2000, callback=None, progress: bool = False,
            newton_steps: int = 8, free=None, driver_memory=None, **kwargs):
        """Fit by maximizing the profiled REML (default) or ML log-likelihood.

        Parameters
        ----------
        start_params : array_like or MixedLMParams, optional
            Covariance parameters (packed as ``use_sqrt`` says, optionally with
            the fixed effects first, which are ignored) to start from.
        reml : bool
            REML (True) or ML.
        method : str or list of str, optional
            methods to try in order until one succeeds: ``"newton"`` (trust-region
            Newton on the analytic Hessian, one map-reduce per iteration), scipy's
            ``"bfgs"``, ``"lbfgs"``, ``"cg"``, ``"nelder-mead"``...; ``"qnewton"``
            (crossed designs: Newton steps from a Hessian of values at the start,
            :mod:`dlmm.optimize.qnewton`); default
            ``["newton", "bfgs", "lbfgs", "nelder-mead"]`` (crossed designs, whose
            engine has no Hessian pieces: ``["qnewton", "lbfgs", "bfgs",
            "nelder-mead"]``; see :func:`default_methods`), then Newton polishing.
        client : distributed.Client, optional
            Cluster to use (see :func:`dlmm.distributed.dask_backend.resolve_client`).
        maxiter : int
            Iterations per method.
        newton_steps : int
            Newton polishing steps after the scipy methods (0 to skip them).
        free : MixedLMParams or array_like, optional
            0/1 pattern of the covariance parameters to estimate (statsmodels'
            ``free``): a MixedLMParams (dlmm's or statsmodels') whose ``cov_re``
            and ``vcomp`` hold the pattern, or a packed vector (optionally with the fixed effects
            first). Entries marked 0 stay at their start values, in the square
            root parameterization; a diagonal ``cov_re`` pattern with the
            default start fits independent random effects.
        driver_memory : int, float or str, optional
            The driver's limit for the pass this fit makes (bytes or ``"8GB"``; 8 GB):
            a crossed dense part beyond it is factored by tiles on the Dask workers
            (:mod:`dlmm.structure.crossed_tiled`), or refused before any work.
        callback : callable, optional
            Called with each :class:`~dlmm.optimize.driver.LogEntry`.
        progress : bool
            A progress bar over the data pass (on a terminal or in a notebook) and
            one line per optimizer evaluation on stderr.
        **kwargs
            statsmodels' options: ``disp`` (one line per evaluation on stderr),
            ``gtol`` (the largest gradient component the convergence test accepts
            where the Hessian is not negative definite; see
            :mod:`dlmm.optimize.driver`), ``full_output`` (the result's ``hist`` is
            ``[mle_retvals]``, else None, as statsmodels), ``cov_pen`` (a statsmodels
            ``CovariancePenalty`` such as ``PSD(w)``, subtracted from the llf, which
            is then reported penalized, as statsmodels; see
            :mod:`dlmm.objective.penalty`). ``fe_pen`` is refused (use
            :meth:`fit_regularized`). Options statsmodels' ``fit`` ignores are ignored
            as there (``cov_type``, ``use_t``... with its FutureWarning, ``niter_sa``);
            scipy's ``eps``, ``maxcor``, ``ftol``, ``tol``, ``maxls`` with a warning;
            ``do_cg=False`` and other names are refused (see
            :func:`dlmm.model_compat.statsmodels_fit_options`).

        Returns
        -------
        MixedLMResults
        """
        from .results import MixedLMResults
        from .results.inference import log_diagnostics
        from .results.residual_estimates import residual_estimates

        disp = bool(kwargs.pop("disp", False))
        gtol = kwargs.pop("gtol", None)
        full_output = bool(kwargs.pop("full_output", False))
        cov_pen = pop_penalties(kwargs)  # checked once learned: no data read yet
        statsmodels_fit_options(kwargs)  # warns and drops what statsmodels ignores
        for name in [method] if isinstance(method, str) else list(method or []):
            if str(name).lower() not in _METHODS:
                raise InputError(f"unknown method {name!r}; choose from "
                                 f"{', '.join(sorted(_METHODS))}")
        with driver_memory_limit(driver_memory):  # checked here: no data read yet
            if progress and self._stats is None:
                from .progress import data_pass_progress

                with data_pass_progress() as bar:
                    self._ensure_stats(client, bar)
            stats = self._ensure_stats(client)
        if cov_pen is not None:
            check_covariance_penalty(cov_pen, self.k_re)
        self.reml = bool(reml)
        methods = [method] if isinstance(method, str) else list(method or default_methods(stats))
        if progress or disp:
            from .progress import printing_evaluations

            callback = printing_evaluations(callback)

        n = stats.totals.n_rows
        # The optimizer works in the coordinates the one pass summed (dlmm.spec.centering:
        # well conditioned); a free pattern is stated in the model's own, so it keeps them.
        engine, u = stats.centred() if free is None and cov_pen is None else (stats, None)

        objective = with_residual_model(self.objective(engine))  # and φ, if any
        fun = objective if cov_pen is None else penalized(objective, cov_pen)
        n_res = getattr(objective.theta_map, "n_res", 0)
        x0 = np.concatenate([self._start(start_params, engine, u),
                             residual_start(start_params, n_res)])
        mask = np.concatenate([free_mask(free, self.k_fe, self.k_re, self.k_vc,
                                         self.param_names[self.k_fe:]), np.ones(n_res)])
        free_idx = np.flatnonzero(mask)
        fun_free = restricted(fun, x0, mask)
        # exact Hessian pieces, else differences of the gradient reused while x barely moves
        hess_free = restricted(objective.with_hessian, x0, mask) if objective.has_hessian \
            and cov_pen is None else GradientHessian(fun_free, **polish_differences(engine))
        before = engine.evaluations
        options = {} if gtol is None else {"tol_grad": float(gtol)}
        # crossed "qnewton": a value alone, float32 steps (a large dense Schur part), AI start
        values = restricted(lambda th: (objective.llf(th),), x0, mask) \
            if objective.has_values and cov_pen is None else None
        value_free = None if values is None else (lambda x: values(x)[0])
        if values is not None:
            options.update(qnewton_options(objective, engine, fun_free, x0, mask))
        with optimizer_threads(stats.engine_name):
            outcome = maximize(fun_free, x0[free_idx], n, methods=methods,
                               maxiter=maxiter, callback=callback, newton_steps=newton_steps,
                               hess_fun=hess_free, value_fun=value_free, **options)
        theta = x0.copy()
        theta[free_idx] = outcome.x
        outcome.x = theta
        if not outcome.converged:
            gnorm = float(np.sqrt(np.sum(outcome.grad**2)))
            warnings.warn(
                f"MixedLM optimization did not converge: |grad| = {gnorm:.3g}, "
                f"llf still to gain about {outcome.decrement:.3g} ({outcome.message})",
                convergence_warning(), stacklevel=2,
            )
        value = objective.value(outcome.x)
        chol, sd = objective.theta_map.engine_args(outcome.x)[:2]
        stats, engine = fitted_statistics(objective, outcome.x, stats, engine)
        if cov_pen is not None:  # the penalized llf, as statsmodels reports it
            value = replace(value, llf=value.llf - covariance_penalty(cov_pen, chol)[0])
        freepat = None if free is None else np.concatenate([np.ones(self.k_fe), mask])
        result = MixedLMResults.from_fit(
            self, value, chol, sd, outcome, stats, engine, u, freepat=freepat,
            evaluations_before=before,
            residual=residual_estimates(objective, outcome, value.scale))
        result.timings["cluster_start"] = self.cluster_start
        # statsmodels' history: its last optimizer's report (all: result.optimization_log)
        result.hist = [result.mle_retvals] if full_output else None
        log_diagnostics(result.diagnostics)
        return result
