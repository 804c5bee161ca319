"""What lme4 users reach for, as methods of :class:`~dlmm.results.MixedLMResults`.

A mixin of one-line delegations; the work is in the modules named:
``varcorr``/``coef`` (:mod:`dlmm.results.varcorr`), ``satterthwaite``
(:mod:`dlmm.results.satterthwaite`), ``anova`` (:mod:`dlmm.results.compare`),
``simulate``/``refit``/``update`` (:mod:`dlmm.results.simulate_refit`) and the
diagnostic plots (:mod:`dlmm.results.diagnostics`).
"""

from __future__ import annotations

import pandas as pd

DDF_CHOICES = ("Satterthwaite",)


def check_ddf(ddf: str | None) -> str | None:
    """``summary(ddf=...)``: None, or ``"Satterthwaite"`` (any case)."""
    from ..exceptions import InputError

    if ddf is None:
        return None
    for choice in DDF_CHOICES:
        if str(ddf).lower() == choice.lower():
            return choice
    raise InputError(f"ddf must be one of {', '.join(DDF_CHOICES)} (or None), got {ddf!r}")


class Lme4Methods:
    """lme4's and lmerTest's questions of a fit (see the module docstring)."""

    @property
    def theta(self) -> pd.Series:
        """lme4's θ (``getME(fit, "theta")``): the relative Cholesky factors of the
        random-effects terms, in lme4's order and with its names (see
        :func:`dlmm.results.varcorr.lme4_theta`); a fit of ``dlmm.lmer``'s terms has
        the same attribute."""
        from .varcorr import lme4_theta

        return lme4_theta(self)

    def varcorr(self, long: bool = False) -> pd.DataFrame:
        """lme4's ``VarCorr``: Groups, Name, Variance, Std.Dev., Corr (see
        :func:`dlmm.results.varcorr.varcorr`); ``long=True``: lme4's
        ``as.data.frame(VarCorr(fit))``, a row per variance and covariance (see
        :func:`dlmm.results.varcorr.varcorr_long`)."""
        from .varcorr import varcorr, varcorr_long

        return varcorr_long(self) if long else varcorr(self)

    def coef(self):
        """lme4's ``coef``: fixed plus random effects per group (see
        :func:`dlmm.results.varcorr.coefficients`)."""
        from .varcorr import coefficients

        return coefficients(self)

    def satterthwaite(self, contrasts=None) -> pd.DataFrame:
        """lmerTest's table with Satterthwaite degrees of freedom, for the fixed
        effects or for ``contrasts`` (see :mod:`dlmm.results.satterthwaite`)."""
        from .satterthwaite import satterthwaite_table

        return satterthwaite_table(self, contrasts)

    def anova(self, *others, refit: bool = True, names=None) -> pd.DataFrame:
        """lme4's ``anova(this, other, ...)`` (see :func:`dlmm.results.compare.anova`)."""
        from .compare import anova

        return anova(self, *others, refit=refit, names=names)

    def simulate(self, n: int = 1, seed: int = 0):
        """``n`` responses simulated from the fitted model (see
        :func:`dlmm.results.simulate_refit.simulate`)."""
        from .simulate_refit import simulate

        return simulate(self, n, seed)

    def refit(self, new_response):
        """The same model fitted to a new response (see
        :func:`dlmm.results.simulate_refit.refit`)."""
        from .simulate_refit import refit

        return refit(self, new_response)

    def update(self, formula: str | None = None, **changes):
        """Refit with changed formulas, lme4's ``update`` (see
        :func:`dlmm.results.simulate_refit.update`)."""
        from .simulate_refit import update

        return update(self, formula, **changes)

    def plot_residuals(self, **kwargs):
        """Residuals against fitted values, lme4's ``plot(fit)``; returns the matplotlib
        Figure (see :func:`dlmm.results.diagnostics.residual_plot`)."""
        from .diagnostics import residual_plot

        return residual_plot(self, **kwargs)

    def plot_qq(self, **kwargs):
        """Normal QQ plot of the residuals; returns the matplotlib Figure (see
        :func:`dlmm.results.diagnostics.residual_qq`)."""
        from .diagnostics import residual_qq

        return residual_qq(self, **kwargs)

    def plot_random_effects_qq(self, **kwargs):
        """Normal QQ plots of the predicted random effects, lme4's ``qqmath(ranef)``;
        returns the matplotlib Figure (see
        :func:`dlmm.results.diagnostics.random_effects_qq`)."""
        from .diagnostics import random_effects_qq

        return random_effects_qq(self, **kwargs)

    def plot_profile(self, **kwargs):
        """Profile zeta plots, lme4's ``xyplot(profile(fit))``, in a grid; returns the
        matplotlib Figure (see :func:`dlmm.results.profile_plot.profile_plot`)."""
        from .profile_plot import profile_plot

        return profile_plot(self, **kwargs)
