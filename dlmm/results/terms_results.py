"""What lme4 says of a fit of random-effects terms (:class:`dlmm.terms_model.TermsMixedLM`).

lme4's names and conventions throughout: θ (``getME(m, "theta")``, its order and
names), ``VarCorr`` rows, ``fixef`` with ``vcov = sigma^2 (X'V^-1 X)^-1``, ``ranef`` per
grouping factor, ``logLik``, AIC and BIC, and lmerTest's Satterthwaite degrees of
freedom (:func:`dlmm.results.satterthwaite.derivatives_at`, as for every fit). The
fixed effects map from the coordinates the pass summed (shifted and scaled columns,
:mod:`dlmm.spec.centering`) as ``beta = A beta_c + a``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from ..exceptions import InputError
from ..objective.shift import fixed_effects_map
from .distributions import t_sf


@dataclass(eq=False)
class TermsResults:
    """A fit of a model of random-effects terms.

    Attributes
    ----------
    model : TermsMixedLM
    theta : pandas.Series
        lme4's θ (relative Cholesky factors, nonnegative diagonals), with its names.
    fe_params : pandas.Series
    cov_fe : pandas.DataFrame
        lme4's ``vcov``: ``sigma^2 (X'V^-1 X)^-1``.
    scale : float
        The residual variance ``sigma^2``.
    llf : float
        REML or ML log-likelihood (``reml``).
    converged : bool
    mle_retvals : dict
        The optimizer's report (methods, evaluations, seconds, message).
    """

    model: Any
    theta: pd.Series
    fe_params: pd.Series
    cov_fe: pd.DataFrame
    scale: float
    llf: float
    reml: bool
    converged: bool
    mle_retvals: dict
    engine_theta: np.ndarray
    beta_c: np.ndarray
    engine: str = "nested"
    _effects: dict | None = field(default=None, repr=False)

    @classmethod
    def from_fit(cls, model, stats, outcome, seconds: float, evaluations: int) -> TermsResults:
        value = model.profiled(outcome.x, stats=stats)
        layout = model.layout
        relative = layout.covariances(model.lme4_theta(outcome.x), 1.0).matrices
        theta = layout.theta_from_covariances(relative, 1.0)  # lme4's signs
        centering = model.spec.centering
        a_mat, offset = fixed_effects_map(centering.xy_shift, centering.x_intercept,
                                          centering.xy_scale)
        names = list(model.spec.exog_names)
        d_y = float(centering.xy_scale[-1])
        cov_c = (value.scale / d_y**2) * np.linalg.inv(value.xvx)
        retvals = {"method": outcome.method, "message": outcome.message,
                   "converged": bool(outcome.converged), "evaluations": int(evaluations),
                   "seconds": float(seconds), "methods": outcome.log.methods,
                   "max_grad": float(np.max(np.abs(outcome.grad))) if outcome.grad.size
                   else 0.0}
        return cls(model=model, theta=pd.Series(theta, index=list(layout.names)),
                   fe_params=pd.Series(a_mat @ value.fe_params + offset, index=names),
                   cov_fe=pd.DataFrame(a_mat @ cov_c @ a_mat.T, index=names, columns=names),
                   scale=float(value.scale), llf=float(value.llf), reml=bool(model.reml),
                   converged=bool(outcome.converged), mle_retvals=retvals,
                   engine_theta=np.asarray(outcome.x, dtype=float),
                   beta_c=np.asarray(value.fe_params, dtype=float),
                   engine=str(getattr(stats, "engine_name", "nested")))

    # -- lme4's numbers ---------------------------------------------------------------

    @property
    def nobs(self) -> int:
        return int(self.model.nobs)

    @property
    def bse_fe(self) -> pd.Series:
        return pd.Series(np.sqrt(np.diag(self.cov_fe.to_numpy())), index=self.fe_params.index)

    @property
    def tvalues(self) -> pd.Series:
        return self.fe_params / self.bse_fe

    @property
    def df_modelwc(self) -> int:
        """Parameters but the residual variance (statsmodels' meaning, as
        ``MixedLMResults.df_modelwc``): fixed effects and θ."""
        return len(self.fe_params) + len(self.theta)

    @property
    def npar(self) -> int:
        """lme4's number of parameters (``attr(logLik(m), "df")``): fixed effects, θ
        and the residual variance."""
        return self.df_modelwc + 1

    @property
    def aic(self) -> float:
        return -2.0 * self.llf + 2.0 * self.npar

    @property
    def bic(self) -> float:
        return -2.0 * self.llf + np.log(self.nobs) * self.npar

    @property
    def exog_names(self) -> list[str]:
        """The fixed effects' names."""
        return list(self.fe_params.index)

    @property
    def weights(self) -> str | None:
        """The column of precision weights (lme4's ``weights=``), or None."""
        return self.model.spec.residual.display_name

    @property
    def method(self) -> str:
        return "REML" if self.reml else "ML"

    @property
    def n_levels(self) -> dict[str, int]:
        """Levels of each grouping factor in the data (lme4's ``ngrps``, by lme4's name
        of the factor: ``class:school`` for ``(1 | school/class)``)."""
        model = self.model
        if model._stats is None:  # a loaded result: as saved
            return dict(model.n_levels)
        layout = model.engine_layout
        names = {}
        for k, level in enumerate(layout.term_level):  # the first term's name per factor
            names.setdefault(level, model.spec.terms[k].name)
        return {names.get(level, ":".join(f)): int(n)
                for level, (f, n) in enumerate(zip(layout.levels, model._stats.n_nodes))}

    def covariances(self) -> tuple:
        """Per term (lme4's order) the covariance of its effects."""
        return self.model.layout.covariances(self.theta.to_numpy(), self.scale).matrices

    def varcorr(self) -> pd.DataFrame:
        """lme4's ``as.data.frame(VarCorr(m))``: ``grp``, ``var1``, ``var2``, ``vcov``,
        ``sdcor``."""
        rows = self.model.layout.covariances(self.theta.to_numpy(), self.scale).varcorr
        return pd.DataFrame(rows, columns=["grp", "var1", "var2", "vcov", "sdcor"])

    # -- conditional modes ---------------------------------------------------------

    def _node_effects(self) -> dict:
        if self._effects is not None:
            return self._effects
        model, stats = self.model, self.model._stats
        d_y = float(model.spec.centering.xy_scale[-1])
        coef = np.concatenate([-self.beta_c, [1.0]])
        blocks = stats.gather(stats.effects(self.engine_theta, coef, self.scale))
        layout = model.engine_layout
        out = {}
        for level, factor in enumerate(layout.levels):
            keys = np.concatenate([b.keys[level] for b in blocks]) if blocks else \
                np.zeros((0, level + 1), dtype=np.int64)
            modes = np.concatenate([b.modes[level] for b in blocks]) * d_y
            cov = np.concatenate([b.cov[level] for b in blocks])
            terms = [k for k, lv in enumerate(layout.term_level) if lv == level]
            name = model.spec.terms[terms[0]].name if terms else ":".join(factor)
            order = [c for c in name.split(":") if c in factor]
            order = order if sorted(order) == sorted(factor) else list(factor)
            labels = model.design.labels(level, keys, order)
            columns = [c for k in sorted(terms, key=lambda k: layout.term_columns[k].start)
                       for c in layout.columns[k]]
            out[name] = (pd.DataFrame(modes, index=pd.Index(labels, name=name),
                                      columns=columns), cov)
        self._effects = out
        return out

    @property
    def random_effects(self) -> dict[str, pd.DataFrame]:
        """lme4's ``ranef``: per grouping factor, its levels' conditional modes (one
        column per effect)."""
        return {name: frame for name, (frame, _) in self._node_effects().items()}

    def random_effects_cov(self) -> dict[str, np.ndarray]:
        """Per grouping factor, each level's conditional covariance (n, q, q)."""
        effects = self._node_effects()
        if any(cov is None for _, cov in effects.values()):
            raise InputError("a loaded result keeps the conditional sds of the random "
                             "effects (random_effects.parquet's condsd), not their "
                             "covariances: fit the model again")
        return {name: cov for name, (_, cov) in effects.items()}

    # -- predictions (results/terms_predict.py) -------------------------------------

    def predict(self, data=None, random_effects: bool = True, client=None):
        """lme4's ``predict``: ``X beta`` plus each grouping factor's conditional modes.

        Parameters
        ----------
        data : pandas.DataFrame, dask DataFrame or Parquet path(s), optional
            New rows with the model's columns (the response is not needed); default
            the fitted rows (lme4's ``fitted``).
        random_effects : bool
            True (lme4's default): a factor's level the fit never saw, or a missing
            grouping value, gets no effect of that factor (``allow.new.levels =
            TRUE``); False: the fixed part alone (``re.form = NA``).
        client : distributed.Client, optional
            The cluster for Dask or Parquet data.

        Returns
        -------
        pandas.Series (pandas data, and the fitted rows of an in-process fit), or a
        lazy Dask Series (Dask or Parquet data, and the fitted rows of a Dask fit),
        indexed like the data; NaN where a column of the fixed part or of a term is
        missing.
        """
        from .terms_predict import predict

        return predict(self, data, random_effects, client)

    @property
    def fittedvalues(self):
        """lme4's ``fitted``: :meth:`predict` of the fitted rows."""
        return self.predict()

    # -- simulate and refit (results/terms_simulate.py) ------------------------------

    def simulate(self, n: int = 1, seed: int = 0):
        """lme4's ``simulate``: ``n`` responses of the fitted rows drawn from the fitted
        model (new random effects and noise), columns ``sim_1 ... sim_n``; a lazy
        Dask frame for a Dask fit (see :mod:`dlmm.results.terms_simulate`)."""
        from .terms_simulate import simulate

        return simulate(self, n, seed)

    def refit(self, new_response) -> TermsResults:
        """lme4's ``refit``: the same model fitted to a new response (a column name, or
        values aligned with the data's rows, such as ``simulate()["sim_1"]``)."""
        from .terms_simulate import refit

        return refit(self, new_response)

    # -- profiles (results/terms_profile.py) ----------------------------------------

    def _profile(self):
        """The ML profile likelihood (:class:`~dlmm.results.terms_profile.TermsProfile`),
        made once (it refits a REML fit by ML)."""
        from .terms_profile import TermsProfile

        cached = self.__dict__.get("_profile_likelihood")
        if cached is None:
            cached = self.__dict__["_profile_likelihood"] = TermsProfile(self)
        return cached

    def profile_conf_int(self, alpha: float = 0.05, parameters=None) -> pd.DataFrame:
        """lme4's ``confint(fit, method = "profile")``: profile intervals of the
        standard deviations and correlations (lme4's names, ``sd_x|g``,
        ``cor_x.(Intercept)|g``), ``sigma`` and the fixed effects, from the ML deviance
        (a REML fit is refitted by ML, as lme4 does).

        Parameters
        ----------
        alpha : float
            1 - the confidence level.
        parameters : list of str, optional
            The parameters to profile (lme4's ``parm``); default all.

        Returns
        -------
        pandas.DataFrame
            ``estimate`` (ML), ``lower``, ``upper``, indexed by parameter.
        """
        from .terms_profile import profile_conf_int

        return profile_conf_int(self, alpha, parameters)

    # -- saving (results/terms_saved.py) --------------------------------------------

    def save(self, path) -> None:
        """Write the result folder ``path`` (new or empty; or a URL), which
        :func:`dlmm.load_result` reads back: every estimate bit for bit, the summary,
        VarCorr, the random effects and predictions (see
        :mod:`dlmm.results.terms_saved`)."""
        from .terms_saved import save

        save(self, path)

    # -- comparisons (results/compare.py) -------------------------------------------

    def anova(self, *others, refit: bool = True, names=None) -> pd.DataFrame:
        """lme4's ``anova(this, other, ...)``: likelihood-ratio tests of nested fits,
        REML fits refitted by ML first (see :func:`dlmm.results.compare.anova`); the
        others may be fits of either spelling (``MixedLMResults`` too)."""
        from .compare import anova

        return anova(self, *others, refit=refit, names=names)

    # -- lmerTest's Satterthwaite --------------------------------------------------

    def satterthwaite(self) -> pd.DataFrame:
        """lmerTest's ``summary`` table: Estimate, Std. Error, df (Satterthwaite), t value,
        Pr(>|t|)."""
        if self.model._stats is None:
            raise InputError("Satterthwaite's df need the fitted data; a loaded result has "
                             "none: fit the model again")
        from .satterthwaite import derivatives_at

        centering = self.model.spec.centering
        a_mat, _ = fixed_effects_map(centering.xy_shift, centering.x_intercept,
                                     centering.xy_scale)
        # the objective in the units the pass summed; θ in the engine's order
        objective = replace(self.model.objective(reml=self.reml), xy_scale=None)
        derivs = derivatives_at(objective, self.engine_theta, a_mat)
        df = np.array([derivs.contrast(row)[1] for row in np.eye(len(self.fe_params))])
        est, se = self.fe_params.to_numpy(), self.bse_fe.to_numpy()
        t = est / se
        return pd.DataFrame({"Estimate": est, "Std. Error": se, "df": df, "t value": t,
                             "Pr(>|t|)": 2.0 * t_sf(np.abs(t), df)},
                            index=self.fe_params.index)

    # -- text ------------------------------------------------------------------------

    def summary(self) -> str:
        """lme4's ``summary``: the criterion, the random effects, the fixed effects."""
        kind = "REML" if self.reml else "maximum likelihood"
        lines = [f"Linear mixed model fit by {kind} (dlmm, {self.engine} engine)",
                 f"Formula: {self.model.lmer_formula}",
                 *([f"Weights: {self.weights}"] if self.weights else []),
                 f"{'REML criterion' if self.reml else 'Deviance'} at convergence: "
                 f"{-2 * self.llf:.4f}   AIC {self.aic:.4f}   BIC {self.bic:.4f}"
                 f"   logLik {self.llf:.4f}", "", "Random effects:"]
        vc = self.varcorr()
        var = vc[vc["var2"] == ""]
        lines.append(f" {'Groups':<16} {'Name':<16} {'Variance':>12} {'Std.Dev.':>10}")
        for row in var.itertuples():
            lines.append(f" {row.grp:<16} {row.var1:<16} {row.vcov:>12.5g} {row.sdcor:>10.5g}")
        cors = vc[vc["var2"] != ""]
        for row in cors.itertuples():
            lines.append(f"   corr({row.grp}: {row.var1}, {row.var2}) = {row.sdcor:.3f}")
        groups = "; ".join(f"{k}, {v}" for k, v in self.n_levels.items())
        lines += [f"Number of obs: {self.nobs}, groups: {groups}", "", "Fixed effects:"]
        table = pd.DataFrame({"Estimate": self.fe_params, "Std. Error": self.bse_fe,
                              "t value": self.tvalues})
        lines += [table.to_string(float_format=lambda v: f"{v:.6g}"), "",
                  f"converged: {self.converged} ({self.mle_retvals['message']})"]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"<TermsResults llf={self.llf:.6f} {'REML' if self.reml else 'ML'} "
                f"theta={np.round(self.theta.to_numpy(), 6).tolist()}>")
