"""statsmodels' names on the model that the fit itself does not need (a mixin of ``MixedLM``).

``data`` is statsmodels' model-data object (:mod:`dlmm.model_data`). Row-level
arrays (``endog``, ``exog``, ``groups``, ``exog_re``, ``row_indices``,
``get_distribution``) exist for in-memory data, built from the rows the fit
uses; for Dask or Parquet data they would bring every row to the driver and are
refused in words. Missing values of in-memory data are refused when the model
is built, as statsmodels does. The likelihood pieces (``loglike`` and ``score``,
with the fixed effects profiled or held, ``get_fe_params``, ``hessian``,
``score_full``) come from the persisted cross-products like everything else,
and ``fit_regularized`` is statsmodels' L1 ("shooting") fit of the fixed
effects with the covariance held at its unpenalized estimate, done on the
driver from ``X'V^{-1}X`` and the GLS estimate (no pass over the rows).
:func:`statsmodels_fit_options` treats the ``fit`` options statsmodels ignores.
"""

from __future__ import annotations

import difflib
import warnings
from types import SimpleNamespace

import numpy as np
import pandas as pd

from .exceptions import InputError
from .model_data import model_data
from .objective.params import MixedLMParams
from .objective.profiled import grad_profile, grad_sqrt
from .objective.shift import (
    centred_fixed_effects,
    fixed_effects_map,
    parameter_jacobian,
    raw_hessian,
)
from .objective.totals import check_values
from .objective.unprofiled import unprofiled_value
from .spec.design import scan_rows
from .spec.formula import FormulaSpec
from .spec.statsmodels_inputs import is_params_object

#: Below this eigenvalue of cov_re (or a variance component), statsmodels calls the
#: covariance singular (its ``get_fe_params`` tolerance).
SINGULAR_TOL = 1e-10


#: Options of other statsmodels models' ``fit`` that statsmodels' ``MixedLM.fit`` ignores
#: with a FutureWarning (code written for several models passes them): so does dlmm.
IGNORED_FIT_OPTIONS = ("cov_type", "cov_kwds", "use_t", "retall", "skip_hessian")
#: scipy's line-search and tolerance options statsmodels hands to its optimizer; dlmm's
#: trust-region Newton and its convergence test have no use for them (a warning says so).
SCIPY_FIT_OPTIONS = ("eps", "maxcor", "ftol", "tol", "maxls")
#: Every option ``MixedLM.fit`` knows by name (for the suggestion in the error).
FIT_OPTIONS = ("start_params", "reml", "method", "client", "maxiter", "callback", "progress",
               "newton_steps", "free", "disp", "gtol", "full_output", "cov_pen", "fe_pen",
               "niter_sa", "do_cg", *SCIPY_FIT_OPTIONS)


def statsmodels_fit_options(kwargs: dict) -> None:
    """Take statsmodels' ``fit`` options dlmm has no use for out of ``kwargs``, as
    statsmodels' ``MixedLM.fit`` treats them: :data:`IGNORED_FIT_OPTIONS` with its
    FutureWarning, ``niter_sa`` (ignored there too) with its warning when positive,
    ``do_cg=True``; :data:`SCIPY_FIT_OPTIONS` with a warning that dlmm's optimizer does
    not use them. Refused in words: ``do_cg=False`` (statsmodels' unfitted result at the
    start values) and any other name (statsmodels warns that it will raise on them; dlmm
    does, naming the closest option: a misspelt option would change the fit silently).
    """
    ignored = sorted(k for k in kwargs if k in IGNORED_FIT_OPTIONS)
    if ignored:  # statsmodels' words
        warnings.warn(f"Argument{'s' if len(ignored) > 1 else ''} {', '.join(ignored)} not "
                      "used by MixedLM.fit. Future versions will raise on these arguments.",
                      FutureWarning, stacklevel=3)
    scipy_options = sorted(k for k in kwargs if k in SCIPY_FIT_OPTIONS)
    if scipy_options:
        warnings.warn(f"fit option{'s' if len(scipy_options) > 1 else ''} "
                      f"{', '.join(scipy_options)} tune scipy's optimizers in statsmodels; "
                      "dlmm's optimizer and convergence test do not use them: ignored",
                      UserWarning, stacklevel=3)
    for key in (*ignored, *scipy_options):
        del kwargs[key]
    if kwargs.pop("niter_sa", 0):
        warnings.warn("niter_sa is currently ignored", UserWarning, stacklevel=3)
    if not kwargs.pop("do_cg", True):
        raise InputError("fit(do_cg=False) (statsmodels' result at the start values, not "
                         "fitted) is not supported; evaluate model.loglike(start_params)")
    if kwargs:
        key = next(iter(kwargs))
        near = difflib.get_close_matches(key, FIT_OPTIONS, n=1, cutoff=0.6)
        raise InputError(f"unknown option {key!r} for fit"
                         + (f"; did you mean {near[0]}?" if near else ""))


def as_params_object(params, k_fe: int, k_re: int, use_sqrt: bool, has_fe: bool
                     ) -> MixedLMParams:
    """dlmm's ``MixedLMParams`` from dlmm's or statsmodels' (duck-typed) or a packed vector."""
    if isinstance(params, MixedLMParams):
        return params
    if is_params_object(params):
        fe = getattr(params, "fe_params", None)
        return MixedLMParams.from_components(
            fe_params=None if fe is None else np.asarray(fe, dtype=float),
            cov_re=np.asarray(params.cov_re, dtype=float),
            vcomp=np.asarray(params.vcomp, dtype=float))
    return MixedLMParams.from_packed(np.asarray(params, dtype=float), k_fe, k_re, use_sqrt,
                                     has_fe)


class StatsmodelsModel:
    """statsmodels' model attributes for :class:`~dlmm.MixedLM` (reads ``spec``,
    ``_ensure_stats``, ``_value``, ``k_fe``, ``k_re``, ``reml``, ``fit``...)."""

    # -- the rows (in-memory data only) ----------------------------------------------

    def _check_values_now(self, frame: pd.DataFrame, columns: list[str],
                          labels: list[str]) -> None:
        """Missing (unless ``missing="drop"``) and infinite values of in-memory data,
        refused at construction as statsmodels refuses them (the one pass finds them in
        Dask and Parquet data, which are not read before ``fit``), in the words of
        :func:`~dlmm.objective.totals.check_values`."""
        missing, infinite, usable = scan_rows(frame, list(columns))
        check_values(SimpleNamespace(missing_by_column=missing, infinite_by_column=infinite,
                                     n_dropped=int((~usable).sum())), list(labels),
                     self.missing)


    def _design(self, what: str):
        """The model arrays of every row the fit uses (in-memory data only)."""
        stats = self._ensure_stats()
        if stats.backend_name != "local":
            raise InputError(
                f"model.{what} would bring all {int(stats.totals.n_rows)} rows to the driver: "
                "the data are distributed (Dask or Parquet); compute what you need from "
                "model.data.frame on the cluster")
        cached = getattr(self, "_design_cache", None)
        if cached is None:
            frame = self._source if not isinstance(self.spec, FormulaSpec) else \
                self._backend_for(None).frame
            cached = self._design_cache = self.spec.design(frame)
        return cached

    @property
    def data(self):
        """statsmodels' model data (:mod:`dlmm.model_data`): names, ``frame``, arrays."""
        if self._model_data is None:
            self._model_data = model_data(self, self._wraps_pandas)
        return self._model_data

    def _row_labels(self):
        """The index of the rows the fit uses (in-memory pandas input)."""
        design = self._design("data.row_labels")
        if isinstance(self.spec, FormulaSpec):
            index = self._backend_for(None).frame.index
        elif self._input_index is not None:
            index = self._input_index
        else:
            index = pd.RangeIndex(len(design.kept))
        return index[np.asarray(design.kept, dtype=bool)]

    @property
    def endog(self) -> np.ndarray:
        """The response of the rows used in the fit."""
        return self._design("endog").xy[:, -1].copy()

    @property
    def exog(self) -> np.ndarray:
        """The fixed-effects design of the rows used in the fit."""
        return self._design("exog").xy[:, :-1].copy()

    @property
    def exog_re(self) -> np.ndarray:
        """The random-effects design (``exog_re``) of the rows used in the fit."""
        return self._design("exog_re").z.copy()

    @property
    def groups(self) -> np.ndarray:
        """The group label of each row used in the fit."""
        return np.asarray(self._design("groups").groups).copy()

    @property
    def group_labels(self) -> list:
        """The distinct group labels, sorted (statsmodels' order)."""
        return list(np.unique(self.groups))

    @property
    def row_indices(self) -> dict:
        """``{group label: positions of its rows}`` among the rows the fit uses, labels
        sorted (statsmodels' ``MixedLM.row_indices``; in-memory data only)."""
        groups = self.groups
        order = np.argsort(groups, kind="stable")
        labels, starts = np.unique(groups[order], return_index=True)
        return {label: rows.tolist()
                for label, rows in zip(labels, np.split(order, starts[1:]))}

    @property
    def formula(self) -> str | None:
        """The fixed-effects formula (None for a model from arrays)."""
        return getattr(self.spec, "formula", None)

    def predict(self, params, exog=None) -> np.ndarray:
        """``exog @ fe_params`` (statsmodels' ``MixedLM.predict``: the fixed part only);
        ``params`` a MixedLMParams, the packed vector with the fixed effects first, or
        the fixed effects alone; ``exog`` defaults to the model's."""
        fe = params.fe_params if is_params_object(params) else \
            np.asarray(params, dtype=float)[: self.k_fe]
        x = self.exog if exog is None else np.asarray(exog, dtype=float)
        return x @ np.asarray(fe, dtype=float)

    def get_distribution(self, params, scale: float, exog=None) -> MixedLMDistribution:
        """statsmodels' ``get_distribution``: the model's distribution of the response at
        ``params`` (packed with the fixed effects first, covariance parameters divided by
        ``scale``, profile parameterization) for the model's rows (in-memory data only),
        fixed-effects design ``exog`` (default the model's); ``.rvs(n, rng)`` draws one
        response vector."""
        po = MixedLMParams.from_packed(np.asarray(params, dtype=float), self.k_fe, self.k_re,
                                       False, True)
        return MixedLMDistribution(self, po, float(scale), exog)

    # -- the likelihood ----------------------------------------------------------------

    def loglike(self, params, profile_fe: bool = True) -> float:
        """Log-likelihood (REML or ML per ``self.reml``) at ``params``, the scale profiled
        out.

        ``params`` is a :class:`MixedLMParams` (profile scale) or a packed vector in
        the sqrt (``use_sqrt``) or profile parameterization, optionally with the fixed
        effects first. With ``profile_fe`` (default) the fixed effects are the GLS
        estimate at the covariance; with ``profile_fe=False`` they are those of
        ``params`` (zeros for a packed vector without them, as statsmodels), see
        :mod:`dlmm.objective.unprofiled`.
        """
        po = self._params_object(params)
        chol, sd = po.cov_re_sqrt, np.sqrt(np.maximum(po.vcomp, 0))
        if profile_fe:
            return self._value(chol, sd, self.reml).llf
        return self._unprofiled(po, chol, sd)[0].llf

    def score(self, params, profile_fe: bool = True) -> np.ndarray:
        """Gradient of :meth:`loglike` in the parameterization of ``params``.

        With ``use_sqrt`` it is taken with respect to the packed Cholesky factor
        and ``sqrt(vcomp / scale)``, else with respect to the packed profile
        parameters ``Psi`` (lower triangle) and ``vcomp / scale``; with
        ``profile_fe=False`` the fixed effects' gradient comes first (statsmodels'
        layout).
        """
        po = self._params_object(params)
        objective = self.objective()
        if self.use_sqrt and not hasattr(params, "cov_re"):
            # The packed factor as given (signs included), not a re-factorization.
            packed = np.asarray(params, dtype=float)[-(self.k_re2 + self.k_vc):]
            chol, sd = objective.theta_map.engine_args(packed)
        else:
            chol, sd = po.cov_re_sqrt, np.sqrt(np.maximum(po.vcomp, 0))
        if profile_fe:
            value = objective.value_at((chol, sd))
            return value.grad_theta if self.use_sqrt else grad_profile(value)
        value, grad_fe = self._unprofiled(po, chol, sd)
        grad = grad_sqrt(value, chol, sd) if self.use_sqrt else grad_profile(value)
        return np.concatenate([grad_fe, grad])

    def _unprofiled(self, po: MixedLMParams, chol: np.ndarray, sd: np.ndarray):
        """:func:`~dlmm.objective.unprofiled.unprofiled_value` at ``po``'s fixed effects,
        and the fixed effects' gradient in the model's coordinates."""
        fe = np.asarray(po.fe_params, dtype=float).ravel()
        if fe.shape[0] != self.k_fe:
            raise InputError(f"profile_fe=False needs the {self.k_fe} fixed effects in "
                             f"params (got {fe.shape[0]})")
        stats = self._ensure_stats()
        a_mat, offset = self._fe_map()
        value = unprofiled_value(stats.pieces(chol, sd), stats.totals.xy_cross,
                                 stats.totals.n_rows, self.reml,
                                 centred_fixed_effects(fe, a_mat, offset), theta=(chol, sd),
                                 xy_scale=self.spec.centering.xy_scale)
        return value, np.linalg.solve(a_mat.T, value.grad_fe)  # d/d beta = A^-T d/d beta_c


    def _fe_map(self):
        centering = self.spec.centering
        return fixed_effects_map(centering.xy_shift, centering.x_intercept,
                                 centering.xy_scale)

    def get_fe_params(self, cov_re, vcomp, tol: float = SINGULAR_TOL):
        """GLS fixed effects at profile-scale ``cov_re`` (``Psi``) and ``vcomp``, and
        whether that covariance is singular (statsmodels' return pair)."""
        cov_re = np.atleast_2d(np.asarray(cov_re, dtype=float)).reshape(self.k_re, self.k_re)
        vcomp = np.asarray(vcomp, dtype=float).ravel()
        po = MixedLMParams.from_components(cov_re=cov_re, vcomp=vcomp)
        value = self._value(po.cov_re_sqrt, np.sqrt(np.maximum(vcomp, 0)), self.reml)
        a_mat, offset = self._fe_map()
        singular = bool((cov_re.size and np.linalg.eigvalsh(cov_re).min() < tol)
                        or (vcomp.size and vcomp.min() < tol))
        return a_mat @ value.fe_params + offset, singular

    def hessian(self, params):
        """Hessian of the log-likelihood (REML or ML per ``self.reml``) in statsmodels'
        full parameter vector: fixed effects, the lower triangle of ``Psi``, then
        ``vcomp / scale`` (profile parameterization), at ``params`` (that vector or a
        MixedLMParams with its fixed effects). Returns ``(hessian, singular)`` as
        statsmodels: whether ``Psi`` or a component is (numerically) singular."""
        po = as_params_object(params, self.k_fe, self.k_re, False, True)
        stats = self._ensure_stats()
        a_mat, offset = self._fe_map()
        sd = np.sqrt(np.maximum(po.vcomp, 0))
        beta_c = centred_fixed_effects(np.asarray(po.fe_params, dtype=float), a_mat, offset)
        objective = self.objective(stats)
        # exact, or differences of analytic gradients (see hessian_from_gradients)
        hess = objective.psi_hessian(objective.theta_map.pack(po.cov_re_sqrt, sd), beta_c)
        cov = np.asarray(po.cov_re, dtype=float)
        singular = bool((cov.size and np.linalg.eigvalsh(cov).min() < SINGULAR_TOL)
                        or (po.vcomp.size and np.min(po.vcomp) < SINGULAR_TOL))
        return raw_hessian(hess, parameter_jacobian(a_mat, None, self.k_re, self.k_vc)), \
            singular

    def score_full(self, params, calc_fe: bool):
        """statsmodels' ``score_full``: ``(score_fe, score_re, score_vc)`` in the profile
        parameterization (``Psi``'s lower triangle, ``vcomp / scale``), at the GLS fixed
        effects, where ``score_fe`` is zero (returned as zeros either way). Fixed
        effects other than the GLS estimate are refused: dlmm profiles them out."""
        po = as_params_object(params, self.k_fe, self.k_re, self.use_sqrt, False)
        value = self._value(po.cov_re_sqrt, np.sqrt(np.maximum(po.vcomp, 0)), self.reml)
        given = np.asarray(po.fe_params, dtype=float)
        if calc_fe and given.size:
            a_mat, offset = self._fe_map()
            gls = a_mat @ value.fe_params + offset
            if not np.allclose(given, gls, rtol=1e-6, atol=1e-8 * (1 + np.abs(gls).max())):
                raise InputError("score_full with calc_fe=True is available at the GLS fixed "
                                 "effects only (dlmm profiles them out): set fe_params to "
                                 "model.get_fe_params(cov_re, vcomp)[0]")
        grad = grad_profile(value)
        k_re2 = self.k_re * (self.k_re + 1) // 2
        return np.zeros(self.k_fe), grad[:k_re2], grad[k_re2:]

    # -- penalized fits ----------------------------------------------------------------

    def fit_regularized(self, start_params=None, method="l1", alpha=0, ceps: float = 1e-4,
                        ptol: float = 1e-6, maxit: int = 200, **fit_kwargs):
        """statsmodels' ``MixedLM.fit_regularized``: L1-penalized fixed effects with the
        covariance held at its unpenalized (``fit``) estimate, by cyclic coordinate
        descent ("shooting"). See :func:`dlmm.objective.penalty.l1_shooting`."""
        from .results.regularized import regularized_result

        if not isinstance(method, str):
            raise InputError("fit_regularized: a Penalty object for method (a smooth penalty "
                             "on the fixed effects, statsmodels' fit(fe_pen=...)) is not "
                             "supported; use method='l1'")
        if method.lower() != "l1":
            raise InputError(f"fit_regularized: method must be 'l1', got {method!r}")
        result = self.fit(start_params=start_params, **fit_kwargs)
        return regularized_result(self, result, alpha, ceps, ptol, maxit)


class MixedLMDistribution:
    """The response's distribution under a mixed model at given parameters (statsmodels'
    ``_mixedlm_distribution``): ``fe_params``, ``cov_re`` and ``vcomp`` on the data's
    scale, ``scale``; :meth:`rvs` draws from it."""

    def __init__(self, model, po: MixedLMParams, scale: float, exog=None):
        self.model = model
        self.exog = model.exog if exog is None else np.asarray(exog, dtype=float)
        self.fe_params = np.asarray(po.fe_params, dtype=float)
        self.cov_re = scale * np.asarray(po.cov_re, dtype=float)
        self.vcomp = scale * np.asarray(po.vcomp, dtype=float)
        self.scale = scale
        design = model._design("get_distribution")
        _, self.group_idx = np.unique(np.asarray(design.groups), return_inverse=True)
        self.n_groups = int(self.group_idx.max()) + 1 if self.group_idx.size else 0
        self._z, self._w = design.z, design.w
        self._slot_component = np.asarray(model.spec.slot_component)

    def rvs(self, n=None, rng=None) -> np.ndarray:
        """One draw of the response, a value per row. ``n`` is ignored (statsmodels'
        interface); ``rng`` a seed, ``numpy.random.Generator`` or ``RandomState``.

        The draws are taken in statsmodels' order (the standard random effects of every
        group, then each component's effects group by group in sorted order of the
        labels, a group's effects being its component columns that are not all zero,
        then the residuals), so that a ``RandomState`` gives statsmodels' values."""
        if not isinstance(rng, (np.random.Generator, np.random.RandomState)):
            rng = np.random.default_rng(rng)
        y = self.exog @ self.fe_params
        k_re = self._z.shape[1]
        u = rng.normal(size=(self.n_groups, k_re))
        if k_re:
            root = MixedLMParams.from_components(cov_re=self.cov_re).cov_re_sqrt
            y = y + ((u @ root.T)[self.group_idx] * self._z).sum(1)
        if self._w is not None and self.vcomp.size:
            w = self._w.tocoo()
            gc = np.unique(np.stack([self.group_idx[w.row], w.col], axis=1)[w.data != 0],
                           axis=0)  # (group, column) pairs holding an effect
            comp = self._slot_component[gc[:, 1]]
            order = np.lexsort((gc[:, 1], gc[:, 0], comp))  # component, group, column
            effect = np.zeros((self.n_groups, w.shape[1]))
            draws = rng.normal(size=order.size)
            g, c = gc[order, 0], gc[order, 1]
            effect[g, c] = draws * np.sqrt(self.vcomp[comp[order]])
            y = y + np.asarray((self._w.multiply(effect[self.group_idx])).sum(axis=1)).ravel()
        return y + np.sqrt(self.scale) * rng.normal(size=y.shape[0])
