"""θ of a model whose residual variance differs by stratum: the covariance θ, then log δ.

Rows of stratum ``s`` have the residual variance ``σ² δ_s²`` (nlme's ``varIdent``), the
first stratum the reference (``δ = 1``). The optimizer moves ``η_s = log δ_s`` of the
other strata (every real value a valid variance); the engine takes the precision
weights ``w_s = exp(-2 η_s)`` (:mod:`dlmm.kernels.strata`) after the arguments of the
covariance θ, and its pieces carry ``∂ℓ/∂w_s``, so that ``∂ℓ/∂η_s = -2 w_s ∂ℓ/∂w_s``.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np


class ResidualMap:
    """θ = ``[θ of inner, η_1 .. η_{S-1}]`` (:mod:`dlmm.objective.params`' maps for the
    first part).

    Parameters
    ----------
    inner : SqrtMap
        The map of the covariance parameters.
    n_strata : int
        Strata of the residual variance (S).
    """

    def __init__(self, inner, n_strata: int):
        self.inner = inner
        self.kind = inner.kind
        self.n_strata = int(n_strata)
        self.n_res = self.n_strata - 1

    def split(self, theta) -> tuple[np.ndarray, np.ndarray]:
        """``(θ of the inner map, η)``."""
        theta = np.asarray(theta, dtype=float)
        cut = theta.shape[0] - self.n_res
        return theta[:cut], theta[cut:]

    def weights(self, theta) -> np.ndarray:
        """The strata's precision weights ``w = [1, exp(-2 η)]``."""
        return np.concatenate([[1.0], np.exp(-2.0 * self.split(theta)[1])])

    def engine_args(self, theta) -> tuple:
        """The inner map's engine arguments, then the weights."""
        inner, _ = self.split(theta)
        return (*self.inner.engine_args(inner), self.weights(theta))

    @staticmethod
    def statistics(stats, args) -> tuple:
        """The statistics at the weights of ``args`` and the arguments they take."""
        return stats.at(args[-1]), args[:-1]

    def sqrt_point(self, args):
        return self.inner.sqrt_point(args[:-1])

    def pack(self, *args) -> np.ndarray:
        """θ of the engine arguments (the weights last)."""
        w = np.asarray(args[-1], dtype=float)
        return np.concatenate([self.inner.pack(*args[:-1]), -0.5 * np.log(w[1:] / w[0])])

    def along_theta(self, gradient, args) -> np.ndarray:
        """The inner map's gradient, then ``∂ℓ/∂η_s = -2 w_s ∂ℓ/∂w_s`` (s ≥ 1)."""
        w = np.asarray(args[-1], dtype=float)
        grad_res = np.asarray(gradient.grad_res, dtype=float)
        return np.concatenate([self.inner.along_theta(gradient, args[:-1]),
                               (-2.0 * w * grad_res)[1:]])


def with_residual_strata(objective):
    """The objective over θ and η where its statistics keep the rows by stratum
    (:class:`~dlmm.structure.stratified.StratifiedStatistics`), else the objective."""
    levels = getattr(objective.stats, "levels", None)
    if not levels:
        return objective
    return replace(objective, theta_map=ResidualMap(objective.theta_map, len(levels)))


def fitted_statistics(objective, theta, *stats) -> tuple:
    """Each of ``stats`` at the residual weights of θ (themselves without strata): the
    results then see a model of known weights."""
    if not isinstance(objective.theta_map, ResidualMap):
        return stats
    w = objective.theta_map.weights(theta)
    return tuple(s.at(w) for s in stats)
