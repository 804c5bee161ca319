"""Results of a fit: plain estimates, inference, the effects store, and what is built on them.

``estimates``   the numbers as plain data (estimates, covariance, fit facts).
``inference``   covariance from the Hessian, boundary and convergence checks.
``effects``     the effects store: distributed (from the engine) or loaded (from tables).
``results``     ``MixedLMResults``: statsmodels' names over the pieces above.
``prediction``  fitted values and predictions, chunk by chunk.
``profile``     profile likelihoods (statsmodels' ``profile_re``, lme4's intervals).
``compare``     likelihood-ratio tests between fits, lme4's ``anova`` of several.
``summary``     statsmodels' summary layout, text and HTML.
``plotting``    the plots' conventions (a Figure, constrained layout, grids); caterpillar
                and optimization-trace plots (matplotlib, optional).
``diagnostics`` residual and QQ plots (lme4's ``plot``, ``qqmath``).
``profile_plot`` profile zeta plots in lme4's grid (``xyplot(profile(fit))``).
``varcorr``     lme4's ``VarCorr`` and ``coef``.
``satterthwaite`` lmerTest's Satterthwaite degrees of freedom.
``simulate_refit`` lme4's ``simulate``, ``refit`` and ``update``.
``lme4_methods`` the mixin of those methods on ``MixedLMResults``.
``lme4_summary`` the VarCorr and Satterthwaite blocks of a summary.
"""

from .compare import LRTestResult, lrtest
from .results import MixedLMResults

__all__ = ["LRTestResult", "MixedLMResults", "lrtest"]
