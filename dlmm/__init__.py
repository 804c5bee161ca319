"""dlmm: linear mixed-effects models (statsmodels' MixedLM) on data too large for one machine.

    import dlmm
    model = dlmm.mixedlm("y ~ x", data, groups="g", re_formula="~x")
    result = model.fit(reml=True)
    print(result.summary())
"""

from .exceptions import CollinearityWarning, InputError, convergence_warning
from .formula_api import mixedlm
from .lmer import lmer
from .model import MissingDataWarning, MixedLM
from .objective.params import MixedLMParams
from .results import LRTestResult, MixedLMResults, lrtest
from .results.compare import anova
from .results.loaded import load_result

__version__ = "0.1.0"

__all__ = [
    "CollinearityWarning",
    "ConvergenceWarning",
    "InputError",
    "LRTestResult",
    "MissingDataWarning",
    "MixedLM",
    "MixedLMParams",
    "MixedLMResults",
    "anova",
    "load_result",
    "lmer",
    "lrtest",
    "mixedlm",
]


def __getattr__(name: str):
    # ConvergenceWarning subclasses statsmodels' when statsmodels is installed; it is
    # made on first use so that importing dlmm does not import statsmodels.
    if name == "ConvergenceWarning":
        return convergence_warning()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
