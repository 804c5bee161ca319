"""Likelihood-ratio tests between nested fits: :func:`lrtest` for two, :func:`anova`
for several (lme4's ``anova``, ML refits and its table)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..exceptions import InputError
from .distributions import chi2_sf


@dataclass(frozen=True)
class LRTestResult:
    """Statistic ``2 (llf_full - llf_restricted)``, degrees of freedom, p-value."""

    statistic: float
    df: int
    pvalue: float

    def __iter__(self):  # (statistic, df, pvalue) unpacking
        return iter((self.statistic, self.df, self.pvalue))


def lrtest(restricted, full) -> LRTestResult:
    """Likelihood-ratio test of a restricted fit against a fuller one.

    The statistic is ``2 (full.llf - restricted.llf)``, referred to a chi-square
    with as many degrees of freedom as the fits differ in parameters. Both fits
    must use the same likelihood: REML fits are refused when their fixed
    effects differ (the REML likelihoods are of different data, as lme4 says);
    refit both with ``reml=False``. A variance tested at zero lies on the
    boundary, where this p-value is conservative (about twice the exact one).

    Parameters
    ----------
    restricted : MixedLMResults
        The fit with fewer parameters.
    full : MixedLMResults
        The fit with more, on the same rows.

    Returns
    -------
    LRTestResult
        ``statistic``, ``df`` and ``pvalue`` (also unpacked as a tuple).

    Raises
    ------
    InputError
        One REML and one ML fit, REML fits with different fixed effects, fits of
        different rows, or ``full`` without more parameters than ``restricted``.
    """
    if restricted.reml != full.reml:
        raise InputError("lrtest needs two REML fits or two ML fits, got one of each")
    if full.reml and list(restricted.exog_names) != list(full.exog_names):
        raise InputError(
            "REML fits with different fixed effects cannot be compared by a likelihood ratio; "
            "refit both with reml=False"
        )
    if restricted.nobs != full.nobs:
        raise InputError(
            f"the fits use different rows ({restricted.nobs} and {full.nobs} observations)")
    df = int(full.df_modelwc - restricted.df_modelwc)
    if df <= 0:
        raise InputError(
            f"the full model must have more parameters than the restricted one "
            f"({full.df_modelwc} vs {restricted.df_modelwc}); pass (restricted, full)")
    stat = 2.0 * (full.llf - restricted.llf)
    return LRTestResult(float(stat), df, float(chi2_sf(max(stat, 0.0), df)))


class RefitWarning(UserWarning):
    """:func:`anova` refitted REML fits by ML (lme4's "refitting model(s) with ML")."""


ANOVA_COLUMNS = ["npar", "AIC", "BIC", "logLik", "deviance", "Chisq", "Df", "Pr(>Chisq)"]


class AnovaTable(pd.DataFrame):
    """:func:`anova`'s DataFrame, printed whole as lme4 prints it (the models, then
    the table), whatever the display width."""

    @property
    def _constructor(self):
        return AnovaTable

    def __repr__(self) -> str:
        models = self.attrs.get("models", {})
        head = ["Models:", *(f"{name}: {text}" for name, text in models.items())]
        shown = pd.DataFrame(index=self.index)
        shown["npar"] = self["npar"].astype(str)
        for col in ("AIC", "BIC", "logLik", "deviance"):
            shown[col] = [f"{v:.2f}" for v in self[col]]
        shown["Chisq"] = ["" if np.isnan(v) else f"{v:.4f}" for v in self["Chisq"]]
        shown["Df"] = ["" if np.isnan(v) else f"{v:.0f}" for v in self["Df"]]
        shown["Pr(>Chisq)"] = ["" if np.isnan(v) else f"{v:.4g}" for v in self["Pr(>Chisq)"]]
        return "\n".join(head) + "\n" + shown.to_string()

    __str__ = __repr__


def _ml_fit(result):
    """The ML fit of a REML result's model, leaving the model as it was."""
    model = result.model
    if not hasattr(model, "fit"):
        raise InputError("anova needs to refit a REML fit by ML, and a loaded result cannot "
                         "refit: compare ML fits, or pass refit=False")
    reml = model.reml
    try:
        return model.fit(reml=False)
    finally:
        model.reml = reml


def anova(*results, refit: bool = True, names: list[str] | None = None) -> pd.DataFrame:
    """Compare nested fits by likelihood ratios, as lme4's ``anova(m1, m2, ...)``.

    With ``refit`` (lme4's default) every REML fit is first refitted by ML, with
    a :class:`RefitWarning` (lme4's message): REML likelihoods of different fixed
    effects are not comparable. ``refit=False`` keeps the fits as they are
    (REML fits then need the same fixed effects). The fits are sorted by their
    number of parameters ``npar`` (covariance parameters, fixed effects and the
    residual variance); each row after the first tests it against the row
    before: ``Chisq = 2 max(0, llf_i - llf_{i-1})`` on ``Df = npar_i - npar_{i-1}``
    degrees of freedom (no p-value when ``Df`` is 0). ``AIC = -2 llf + 2 npar``,
    ``BIC = -2 llf + log(nobs) npar``, ``deviance = -2 llf``.

    Parameters
    ----------
    *results : MixedLMResults or TermsResults
        Two or more fits of the same rows (either spelling: ``dlmm.mixedlm``'s and
        ``dlmm.lmer``'s fits compare with each other).
    refit : bool
        Refit REML fits by ML first (lme4's default).
    names : list of str, optional
        A label per fit, in the order given.

    Returns
    -------
    AnovaTable
        A DataFrame with lme4's columns, one row per fit (index ``names``, default
        ``model 1``, ... in the order given); ``.attrs["models"]`` holds each fit's
        formulas.
    """
    if len(results) < 2:
        raise InputError("anova compares two or more fits")
    names = [f"model {i + 1}" for i in range(len(results))] if names is None else list(names)
    if len(names) != len(results) or len(set(names)) != len(names):
        raise InputError(f"names must be {len(results)} distinct labels, got {names!r}")
    nobs = {r.nobs for r in results}
    if len(nobs) > 1:
        raise InputError(f"the fits use different rows ({sorted(nobs)} observations)")
    results = list(results)
    reml = [r.reml for r in results]
    if refit and any(reml):
        warnings.warn("refitting model(s) with ML (instead of REML)", RefitWarning,
                      stacklevel=2)
        results = [_ml_fit(r) if r.reml else r for r in results]
    elif any(reml):
        if not all(reml):
            raise InputError("anova(refit=False) needs all fits REML or all ML, got both")
        if len({tuple(r.exog_names) for r in results}) > 1:
            raise InputError("REML fits with different fixed effects cannot be compared by a "
                             "likelihood ratio; use refit=True (ML)")
    npar = np.array([r.df_modelwc + 1 for r in results], dtype=float)
    llf = np.array([r.llf for r in results])
    order = np.argsort(npar, kind="stable")
    npar, llf = npar[order], llf[order]
    n = float(next(iter(nobs)))
    chisq = np.concatenate([[np.nan], 2 * np.maximum(0.0, np.diff(llf))])
    df = np.concatenate([[np.nan], np.diff(npar)])
    with np.errstate(invalid="ignore"):
        pvalue = np.where(df > 0, chi2_sf(chisq, np.where(df > 0, df, 1)), np.nan)
    table = AnovaTable({
        "npar": npar.astype(int), "AIC": -2 * llf + 2 * npar, "BIC": -2 * llf + np.log(n) * npar,
        "logLik": llf, "deviance": -2 * llf, "Chisq": chisq, "Df": df, "Pr(>Chisq)": pvalue,
    }, index=[names[i] for i in order], columns=ANOVA_COLUMNS)
    table.attrs["models"] = {names[i]: _describe(results[i]) for i in order}
    return table


def _describe(result) -> str:
    lmer = getattr(result.model, "lmer_formula", None)
    if lmer is not None:  # a fit of lme4's terms (TermsResults)
        return lmer
    spec = getattr(result.model, "spec", None)
    if spec is None or not hasattr(spec, "formula"):
        return f"{result.method} fit, {result.k_fe} fixed effects"
    parts = [spec.formula]
    if spec.re_formula is not None:
        parts.append(f"re_formula={spec.re_formula!r}")
    if spec.vc_formula:
        parts.append(f"vc_formula={spec.vc_formula!r}")
    if spec.groups is not None:
        parts.append(f"groups={result.group_name!r}")
    return ", ".join(parts)
