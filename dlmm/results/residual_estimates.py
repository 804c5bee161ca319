"""A fit's residual parameters (nlme's ``varIdent`` and ``corAR1``), with standard errors.

The fit estimates ``φ = [η_1 .. η_{S-1}, a]`` with the covariance parameters
(:mod:`dlmm.objective.residual_map`): ``η_s = log δ_s``, the residual standard deviation
of stratum ``s`` relative to the first stratum's (the reference, ``δ = 1``; its variance
is the fit's ``scale``), as nlme prints them ("Variance function ... Parameter
estimates"), and ``ρ = tanh a``, the AR(1) correlation of consecutive rows of a group.
Standard errors come from the inverse of the negative Hessian of the profiled (RE)ML
over every covariance parameter and φ (the optimizer's last one, differences of the
analytic gradient, or one taken here), by the delta method: ``se(δ_s) = δ_s se(η_s)``,
``se(ρ) = (1 - ρ²) se(a)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..objective.hessian import GradientHessian
from ..objective.residual_map import ResidualMap


@dataclass
class ResidualEstimates:
    """A fit's residual parameters.

    Attributes
    ----------
    scale : float
        The reference stratum's residual variance (the fit's ``scale``).
    column : str or None
        The stratum column (``residual_by``).
    levels : list
        The strata, the reference first (``[None]`` without strata).
    delta, delta_se : ndarray (S,)
        Residual standard deviation of each stratum relative to the reference's, and
        its standard error (NaN for the reference, and where the Hessian is singular).
    time_column : str or None
        The time column of AR(1) errors (``residual_ar1``).
    rho, rho_se : float
        The AR(1) correlation and its standard error (NaN without AR(1)).
    """

    scale: float
    column: str | None
    levels: list
    delta: np.ndarray
    delta_se: np.ndarray
    time_column: str | None = None
    rho: float = float("nan")
    rho_se: float = float("nan")

    @property
    def n_params(self) -> int:
        """The fit's residual parameters: log δ of every stratum but the first, atanh ρ."""
        return len(self.levels) - 1 + int(self.time_column is not None)

    @property
    def phi(self) -> np.ndarray:
        """The optimizer's parameters: log δ of every stratum but the first, atanh ρ."""
        ar1 = [np.arctanh(self.rho)] if self.time_column is not None else []
        return np.concatenate([np.log(self.delta[1:]), ar1])

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
        return {"scale": float(self.scale), "column": self.column, "levels": list(self.levels),
                "delta": self.delta.tolist(), "delta_se": self.delta_se.tolist(),
                "time_column": self.time_column, "rho": float(self.rho),
                "rho_se": float(self.rho_se)}

    @classmethod
    def from_dict(cls, state: dict | None) -> ResidualEstimates | None:
        if not state:
            return None
        return cls(float(state["scale"]), state["column"], list(state["levels"]),
                   np.asarray(state["delta"], float), np.asarray(state["delta_se"], float),
                   state.get("time_column"), _number(state.get("rho")),
                   _number(state.get("rho_se")))


def _number(value) -> float:
    """A saved float (NaN is saved as null)."""
    return float("nan") if value is None else float(value)


def residual_estimates(objective, outcome, scale: float) -> ResidualEstimates | None:
    """The :class:`ResidualEstimates` of a fit over θ and φ at its optimum ``outcome.x``
    (None for a fit without residual parameters)."""
    theta_map = objective.theta_map
    if not isinstance(theta_map, ResidualMap):
        return None
    x = np.asarray(outcome.x, dtype=float)
    hess = getattr(outcome, "hessian", None)
    if hess is None or hess.shape != (x.size, x.size):
        hess = GradientHessian(objective)(x)[2]
    phi = theta_map.split(x)[1]
    try:
        var = np.diag(np.linalg.inv(-np.asarray(hess, dtype=float)))[-phi.size:]
        se_phi = np.sqrt(np.where(var > 0, var, np.nan))
    except np.linalg.LinAlgError:
        se_phi = np.full(phi.size, np.nan)
    structure = theta_map.structure
    n_eta = structure.n_strata - 1
    eta, rho = structure.split(phi)
    delta = np.exp(eta)
    stats = objective.stats
    return ResidualEstimates(
        float(scale), stats.strata_column, list(stats.levels), delta,
        np.concatenate([[np.nan], delta[1:] * se_phi[:n_eta]]), stats.time_column,
        float(rho) if structure.ar1 else float("nan"),
        float((1 - rho * rho) * se_phi[-1]) if structure.ar1 else float("nan"))
