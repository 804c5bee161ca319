"""Likelihood-ratio tests between nested fits (lme4's ``anova`` for two models)."""

from __future__ import annotations

from dataclasses import dataclass

from scipy import stats as sps

from ..exceptions import InputError


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
    return LRTestResult(float(stat), df, float(sps.chi2.sf(max(stat, 0.0), df)))
