"""Results of a fit: plain estimates, inference, the effects store, and what is built on them.

``estimates``   the numbers as plain data (estimates, covariance, fit facts).
``inference``   covariance from the Hessian, boundary and convergence checks.
``effects``     the effects store: distributed (from the engine) or loaded (from tables).
``results``     ``MixedLMResults``: statsmodels' names over the pieces above.
``prediction``  fitted values and predictions, chunk by chunk.
``profile``     profile likelihoods (statsmodels' ``profile_re``, lme4's intervals).
``compare``     likelihood-ratio tests between fits.
``summary``     statsmodels' summary layout, text and HTML.
``plotting``    caterpillar and optimization-trace plots (matplotlib, optional).
"""

from .compare import LRTestResult, lrtest
from .results import MixedLMResults

__all__ = ["LRTestResult", "MixedLMResults", "lrtest"]
