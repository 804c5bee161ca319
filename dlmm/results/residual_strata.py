"""The residual variance of each stratum of a fit (nlme's ``varIdent``), with standard errors.

The fit estimates ``η_s = log δ_s`` with the covariance parameters
(:mod:`dlmm.objective.residual_map`); the residual variance of stratum ``s`` is
``σ² δ_s²`` with ``σ²`` that of the first stratum (the reference, ``δ = 1``), as nlme
prints them ("Variance function ... Parameter estimates"). The standard error of
``δ_s`` is ``δ_s`` times that of ``η_s`` (the delta method), from the inverse of the
negative Hessian of the profiled (RE)ML over every covariance parameter and η (the
optimizer's last one, differences of the analytic gradient, or one taken here).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..objective.hessian import GradientHessian
from ..objective.residual_map import ResidualMap


@dataclass
class StrataEstimates:
    """A fit's residual variances by stratum.

    Attributes
    ----------
    column : str
        The stratum column.
    levels : list
        The strata, the reference first.
    delta : ndarray (S,)
        Residual standard deviation of each stratum relative to the reference's.
    delta_se : ndarray (S,)
        Its standard error (NaN for the reference, and where the Hessian is singular).
    scale : float
        The reference stratum's residual variance (the fit's ``scale``).
    """

    column: str
    levels: list
    delta: np.ndarray
    delta_se: np.ndarray
    scale: float

    @property
    def variances(self) -> np.ndarray:
        """Residual variance of each stratum, ``scale * delta**2``."""
        return self.scale * self.delta**2

    def frame(self) -> pd.DataFrame:
        """One row per stratum: ``delta``, its ``se``, the residual ``variance`` and ``sd``."""
        return pd.DataFrame({"delta": self.delta, "se": self.delta_se,
                             "variance": self.variances, "sd": np.sqrt(self.variances)},
                            index=pd.Index(self.levels, name=self.column))

    def to_dict(self) -> dict:
        return {"column": self.column, "levels": list(self.levels),
                "delta": self.delta.tolist(), "delta_se": self.delta_se.tolist(),
                "scale": float(self.scale)}

    @classmethod
    def from_dict(cls, state: dict | None) -> StrataEstimates | None:
        if not state:
            return None
        return cls(state["column"], list(state["levels"]), np.asarray(state["delta"], float),
                   np.asarray(state["delta_se"], float), float(state["scale"]))


def strata_estimates(objective, outcome, scale: float) -> StrataEstimates | None:
    """The :class:`StrataEstimates` of a fit over θ and η at its optimum ``outcome.x``
    (None for a fit without strata)."""
    theta_map = objective.theta_map
    if not isinstance(theta_map, ResidualMap):
        return None
    x = np.asarray(outcome.x, dtype=float)
    hess = getattr(outcome, "hessian", None)
    if hess is None or hess.shape != (x.size, x.size):
        hess = GradientHessian(objective)(x)[2]
    eta = theta_map.split(x)[1]
    try:
        cov = np.linalg.inv(-np.asarray(hess, dtype=float))
        se_eta = np.sqrt(np.where(np.diag(cov) > 0, np.diag(cov), np.nan))[-theta_map.n_res:]
    except np.linalg.LinAlgError:
        se_eta = np.full(eta.size, np.nan)
    delta = np.concatenate([[1.0], np.exp(eta)])
    stats = objective.stats
    return StrataEstimates(stats.residual_column, list(stats.levels), delta,
                           np.concatenate([[np.nan], delta[1:] * se_eta]), float(scale))
