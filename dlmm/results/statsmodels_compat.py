"""statsmodels' names on a fit result that dlmm's own layout does not need.

``MixedLMResults`` inherits :class:`StatsmodelsResults`, so that code written
for statsmodels' ``MixedLMResults`` runs unchanged: ``params_object``,
``df_resid``, ``normalized_cov_params``, ``use_sqrt``; the hypothesis tests
``t_test``, ``wald_test``, ``f_test``, ``wald_test_terms`` and
``t_test_pairwise`` returning statsmodels-shaped objects
(:mod:`dlmm.results.contrast`); ``remove_data``. ``bsejac`` is refused in
words: it needs per-observation scores, which a mixed model does not have.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from ..exceptions import InputError
from ..objective.params import MixedLMParams
from .contrast import ContrastResults, constraint_matrix, holm_sidak, t_test, wald_test


class WaldTestResults:
    """statsmodels' ``WaldTestResults``: one joint Wald test per formula term.

    ``table`` has columns ``statistic``, ``pvalue``, ``df_constraint``, one row
    per term; ``summary_frame()`` the same with statsmodels' printed names.
    """

    def __init__(self, table: pd.DataFrame, distribution: str):
        self.table = table
        self.distribution = distribution

    def summary_frame(self) -> pd.DataFrame:
        stat = "chi2" if self.distribution == "chi2" else "F"
        return self.table.rename(columns={"statistic": stat, "pvalue": f"P>{stat}",
                                          "df_constraint": "df constraint"})

    def __str__(self) -> str:
        return self.summary_frame().to_string()

    __repr__ = __str__


class MultiCompResult:
    """statsmodels' ``MultiCompResult`` of ``t_test_pairwise``: ``result_frame`` (one
    row per pair of levels), ``contrasts`` (rows over ``params``), ``contrast_labels``."""

    def __init__(self, result_frame: pd.DataFrame, contrasts: np.ndarray, labels: list[str],
                 term: str):
        self.result_frame = result_frame
        self.contrasts = contrasts
        self.contrast_labels = labels
        self.term = term


def fixed_effect_terms(spec, exog_names: list[str]) -> dict[str, list[int]]:
    """Term name -> indices of its fixed-effect columns (patsy's names: ``Intercept``,
    ``C(c)``, ``x1:x2``); for models from arrays, one term per column."""
    model_spec = getattr(spec, "_fe_spec", None)
    indices = None
    if model_spec is not None:
        rhs = getattr(model_spec, "rhs", model_spec)
        indices = getattr(rhs, "term_indices", None)
    if not indices:
        return {name: [j] for j, name in enumerate(exog_names)}
    keep = getattr(spec, "_fe_keep", None)
    position = np.cumsum(keep) - 1 if keep is not None else None
    out = {}
    for term, cols in indices.items():
        if position is not None:
            cols = [int(position[c]) for c in cols if keep[c]]
        if cols:
            name = "Intercept" if str(term) == "1" else str(term)
            out[name] = list(cols)
    return out


class StatsmodelsResults:
    """statsmodels' names for a :class:`~dlmm.results.MixedLMResults` (a mixin: it reads
    ``params``, ``fe_params``, ``cov_params``, ``estimates``, ``nobs``, ``k_fe``...)."""

    # -- parameters -----------------------------------------------------------------

    @property
    def params_object(self) -> MixedLMParams:
        """The estimate as a :class:`~dlmm.MixedLMParams` on the profile scale (fixed
        effects, ``cov_re / scale``, ``vcomp / scale``): ``model.loglike(params_object)``
        is ``llf``."""
        e = self.estimates
        po = MixedLMParams.from_components(
            fe_params=np.asarray(e.fe_params, dtype=float),
            cov_re=np.asarray(e.cov_re_unscaled, dtype=float),
            vcomp=np.asarray(e.vcomp_unscaled, dtype=float))
        residual = getattr(self, "residual", None)
        po.residual = None if residual is None else residual.phi  # a refit starts φ there
        return po

    @property
    def df_resid(self) -> float:
        """``nobs - rank(exog)``, as statsmodels (the fixed effects are of full rank)."""
        return float(self.nobs - self.k_fe)

    @property
    def normalized_cov_params(self):
        """``cov_params() / scale``, as statsmodels stores it (labelled for pandas
        models, as ``cov_params()``)."""
        return self.cov_params() / self.scale

    @property
    def use_sqrt(self) -> bool:
        """Whether the model's packed parameters are in the square-root parameterization."""
        return bool(getattr(self.model, "use_sqrt", True))

    @property
    def bsejac(self):
        raise AttributeError(
            "bsejac (standard errors from the outer product of per-observation scores) "
            "does not exist for a mixed model, whose rows within a group are not "
            "independent (statsmodels' MixedLM fails on it too): use bse, from the "
            "Hessian")

    def remove_data(self) -> None:
        """Forget the fitted rows (the engine's statistics, possibly persisted on a
        cluster) and the fitted values computed from them; estimates, tests, random
        effects already computed and predictions for new data remain."""
        for name in ("_fitted", "_resid"):
            self.__dict__.pop(name, None)
        self._stats = None

    # -- tests ------------------------------------------------------------------------

    def _contrast(self, r_matrix, q=None):
        r, q = constraint_matrix(r_matrix, q, self.exog_names, len(self.param_names))
        k = self.k_fe
        return r, q, self._fe_params.to_numpy(), self._cov[:k, :k]

    def t_test(self, r_matrix, q=None, use_t: bool | None = None) -> ContrastResults:
        """z tests (t tests on ``df_resid`` with ``use_t=True``) of ``R beta = q``.

        ``r_matrix``: a string such as ``"x1 = x2, x3 = 0"``, a tuple ``(R, q)``, or
        an array with one row per constraint over the fixed effects (or over all of
        ``params`` with zeros beyond them). Returns a :class:`ContrastResults`
        (``effect``, ``sd``, ``tvalue``, ``pvalue``, ``conf_int()``, ``summary()``,
        ``summary_frame()``)."""
        r, q, beta, cov = self._contrast(r_matrix, q)
        return t_test(beta, cov, r, q, self.df_resid if use_t else None)

    def wald_test(self, r_matrix, q=None, use_f: bool | None = None,
                  scalar: bool | None = None, **kwargs) -> ContrastResults:
        """Joint test of ``R beta = q``: chi-square (statsmodels' default for MixedLM),
        F on ``(rank R, df_resid)`` with ``use_f=True``. ``statistic`` is a float
        (statsmodels' ``scalar=True``)."""
        for key in ("cov_p", "invcov", "df_constraints"):
            if kwargs.get(key) is not None:
                raise InputError(f"wald_test option {key!r} is not supported: the test uses "
                                 "the fit's covariance of the fixed effects")
        r, q, beta, cov = self._contrast(r_matrix, q)
        return wald_test(beta, cov, r, q, self.df_resid if use_f else None)

    def f_test(self, r_matrix, q=None) -> ContrastResults:
        """``wald_test(..., use_f=True)``: ``F = W / rank(R)`` on ``(rank R, df_resid)``."""
        return self.wald_test(r_matrix, q, use_f=True)

    def wald_test_terms(self, skip_single: bool = False, extra_constraints=None,
                        combine_terms=None, scalar: bool = True) -> WaldTestResults:
        """One joint chi-square test per fixed-effects term (all of its columns zero)."""
        if extra_constraints is not None or combine_terms is not None:
            raise InputError("wald_test_terms: extra_constraints and combine_terms are not "
                             "supported; test them with wald_test")
        rows = {}
        for term, cols in fixed_effect_terms(self.model.spec, self.exog_names).items():
            if skip_single and len(cols) == 1:
                continue
            r = np.zeros((len(cols), self.k_fe))
            r[np.arange(len(cols)), cols] = 1.0
            res = self.wald_test(r)
            rows[term] = (res.statistic, res.pvalue, res.df_num)
        table = pd.DataFrame.from_dict(rows, orient="index",
                                       columns=["statistic", "pvalue", "df_constraint"])
        return WaldTestResults(table.astype({"df_constraint": int}), "chi2")

    def t_test_pairwise(self, term_name: str, method="hs", alpha: float = 0.05,
                        factor_labels=None, ignore: bool = False) -> MultiCompResult:
        """All pairwise differences between the levels of a treatment-coded factor term
        (``"C(c)"``), with Holm-Sidak adjusted p-values (statsmodels' default
        ``method="hs"``; no other method). statsmodels' own fails for MixedLM (its
        contrasts span the covariance parameters)."""
        methods = [method] if isinstance(method, str) else list(method)
        if any(m != "hs" for m in methods):
            raise InputError(f"t_test_pairwise: method {method!r} is not available; "
                             "only 'hs' (Holm-Sidak)")
        terms = fixed_effect_terms(self.model.spec, self.exog_names)
        if term_name not in terms:
            raise InputError(f"t_test_pairwise: no term {term_name!r}; the terms are "
                             f"{', '.join(terms)}")
        cols = terms[term_name]
        pattern = re.compile(re.escape(term_name) + r"\[T\.(.*)\]$")
        matches = [pattern.match(self.exog_names[c]) for c in cols]
        if not all(matches):
            raise InputError(f"t_test_pairwise: term {term_name!r} is not one treatment-coded "
                             "factor (columns named like C(f)[T.level])")
        coded = [m.group(1) for m in matches]
        labels = _levels(self.model.spec, term_name, coded)
        if factor_labels is not None:
            if len(factor_labels) != len(labels):
                raise InputError(f"factor_labels has the wrong length, should be {len(labels)}")
            labels = [str(v) for v in factor_labels]
        k = len(labels)
        encode = np.zeros((k, len(cols)))  # level -> its coefficients (reference: zeros)
        encode[np.arange(1, k), np.arange(len(cols))] = 1.0
        lo, hi = np.triu_indices(k, 1)
        sub = encode[hi] - encode[lo]
        contrasts = np.zeros((sub.shape[0], len(self.param_names)))
        contrasts[:, cols] = sub
        names = [f"{labels[j]}-{labels[i]}" for i, j in zip(lo, hi)]
        res = self.t_test(contrasts[:, : self.k_fe])
        frame = res.summary_frame(alpha)
        frame.index = names
        adjusted = holm_sidak(np.atleast_1d(res.pvalue))
        frame["pvalue-hs"] = adjusted
        frame["reject-hs"] = adjusted < alpha
        return MultiCompResult(frame, contrasts, names, term_name)


def _levels(spec, term_name: str, coded: list[str]) -> list[str]:
    """The levels of a treatment-coded factor, reference first (the learned levels
    where the model has them, else the one level missing from the column names)."""
    inner = re.match(r"C\((\w+)", term_name)
    learned = getattr(spec, "levels", {}) or {}
    column = inner.group(1) if inner else term_name
    if column in learned:
        levels = [str(v) for v in learned[column]]
        reference = [v for v in levels if v not in coded]
        if len(reference) == 1:
            return reference + coded
    raise InputError(f"t_test_pairwise: the reference level of {term_name!r} is unknown")
