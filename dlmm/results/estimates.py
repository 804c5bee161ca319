"""A fit's numbers as plain data: estimates, their covariance, and the facts of the fit.

These are what a result is made of, whether it comes from a fit or from a
saved folder: :class:`~dlmm.results.results.MixedLMResults` is built from them
in one way only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..objective.params import packed_names


@dataclass
class Estimates:
    """Point estimates, in the profile parameterization with their names.

    Attributes
    ----------
    exog_names, exog_re_names, vc_names : list of str
    fe_params : ndarray (k_fe,)
    cov_re_unscaled : ndarray (k_re, k_re)
        ``Psi = cov_re / scale``.
    vcomp_unscaled : ndarray (k_vc,)
        ``vcomp / scale``.
    scale : float
    llf : float
    reml : bool
    """

    exog_names: list
    exog_re_names: list
    vc_names: list
    fe_params: np.ndarray
    cov_re_unscaled: np.ndarray
    vcomp_unscaled: np.ndarray
    scale: float
    llf: float
    reml: bool

    def __post_init__(self):
        k_re = len(self.exog_re_names)
        self.fe_params = np.asarray(self.fe_params, dtype=float)
        self.cov_re_unscaled = np.asarray(self.cov_re_unscaled, dtype=float).reshape(k_re, k_re)
        self.vcomp_unscaled = np.asarray(self.vcomp_unscaled, dtype=float)
        self.scale = float(self.scale)
        self.llf = float(self.llf)
        self.reml = bool(self.reml)

    @property
    def param_names(self) -> list[str]:
        """statsmodels' names of ``params``."""
        return list(self.exog_names) + packed_names(self.exog_re_names, self.vc_names)

    @property
    def packed(self) -> np.ndarray:
        """statsmodels' ``params``: fixed effects, lower triangle of ``Psi``, ``vcomp / scale``."""
        k_re = len(self.exog_re_names)
        return np.concatenate([self.fe_params, self.cov_re_unscaled[np.tril_indices(k_re)],
                               self.vcomp_unscaled])

    def params_series(self) -> pd.Series:
        return pd.Series(self.packed, index=self.param_names)


@dataclass
class Inference:
    """The Hessian of the log-likelihood in ``params`` and the covariance from it.

    Attributes
    ----------
    hessian : ndarray (k, k)
    cov_params : ndarray (k, k)
        ``inv(-H)`` over the free parameters (zero rows for fixed ones).
    freepat : ndarray or None
        0/1 mask over ``params`` of the free parameters (``fit(free=...)``).
    hessian_singular : bool
        A pseudo-inverse was needed.
    """

    hessian: np.ndarray
    cov_params: np.ndarray
    freepat: np.ndarray | None = None
    hessian_singular: bool = False


@dataclass
class FitFacts:
    """What is known of the fit besides its numbers.

    Attributes
    ----------
    group_name, endog_name : str
    nobs, n_groups, n_dropped : int
    group_size_min, group_size_max : float
    converged : bool
    mle_retvals : dict
        The optimizer's report (with ``diagnostics``).
    timings : dict
    backend : str
    groups_shuffled : bool or None
    engine : str
        ``"grouped"`` or ``"crossed"`` (see :mod:`dlmm.structure`).
    weights : str or None
        The column of precision weights the fit used (:mod:`dlmm.spec.residual`).
    residual : dict or None
        The residual parameters (``residual_by``, ``residual_ar1``), as
        :meth:`dlmm.results.residual_estimates.ResidualEstimates.to_dict` gives them.
    """

    group_name: str
    endog_name: str
    nobs: int
    n_groups: int
    n_dropped: int
    group_size_min: float
    group_size_max: float
    converged: bool
    mle_retvals: dict
    timings: dict
    backend: str
    groups_shuffled: Any = None
    extra: dict = field(default_factory=dict)
    engine: str = "grouped"
    weights: str | None = None
    residual: dict | None = None
