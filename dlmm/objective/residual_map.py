"""θ of a model whose residual covariance has parameters: the covariance θ, then φ.

A variance per stratum and AR(1) errors (:mod:`dlmm.objective.residual_structure`) are
parameters φ of the fit beside the random effects' covariance θ. The engine takes φ
after θ's arguments; its pieces carry the derivatives along the residual components'
coefficients ``c(φ)``, and

    ∂ℓ/∂φ = J' ∂ℓ/∂c - ½ ∂log|R|/∂φ,      J = ∂c/∂φ,

the second term from ``log|R|`` (the rows' part of ``log|V|``), which the engine adds
to the value but not to the derivatives along ``c``.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np


class ResidualMap:
    """θ = ``[θ of inner, φ]`` (:mod:`dlmm.objective.params`' maps for the first part).

    Parameters
    ----------
    inner : SqrtMap
        The map of the covariance parameters.
    stats : ResidualStatistics
        The engine's statistics (:mod:`dlmm.structure.residual_pass`): their
        ``structure`` and ``residual_logdet``.
    """

    def __init__(self, inner, stats):
        self.inner = inner
        self.kind = inner.kind
        self.structure = stats.structure
        self.logdet = stats.residual_logdet
        self.n_res = self.structure.n_params

    def split(self, theta) -> tuple[np.ndarray, np.ndarray]:
        """``(θ of the inner map, φ)``."""
        theta = np.asarray(theta, dtype=float)
        cut = theta.shape[0] - self.n_res
        return theta[:cut], theta[cut:]

    def engine_args(self, theta) -> tuple:
        """The inner map's engine arguments, then φ."""
        inner, phi = self.split(theta)
        return (*self.inner.engine_args(inner), phi)

    @staticmethod
    def statistics(stats, args) -> tuple:
        """The statistics at the φ of ``args`` and the arguments they take."""
        return stats.at(args[-1]), args[:-1]

    def sqrt_point(self, args):
        return self.inner.sqrt_point(args[:-1])

    def pack(self, *args) -> np.ndarray:
        """θ of the engine arguments (φ last)."""
        return np.concatenate([self.inner.pack(*args[:-1]), np.asarray(args[-1], dtype=float)])

    def from_profile(self, grad_psi, grad_vc, args) -> np.ndarray:
        """d/dθ of a function of ``Psi`` and ``v`` only (none along φ)."""
        return np.concatenate([self.inner.from_profile(grad_psi, grad_vc, args[:-1]),
                               np.zeros(self.n_res)])

    def along_theta(self, gradient, args) -> np.ndarray:
        """The inner map's gradient, then ``∂ℓ/∂φ`` (see the module docstring)."""
        phi = np.asarray(args[-1], dtype=float)
        jac = self.structure.coefficients(phi)[1]
        d_logdet = self.logdet(phi)[1]
        grad_res = np.asarray(gradient.grad_res, dtype=float)
        return np.concatenate([self.inner.along_theta(gradient, args[:-1]),
                               jac.T @ grad_res - 0.5 * d_logdet])


def residual_start(start_params, n_res: int) -> np.ndarray:
    """φ's start: ``start_params.residual`` (a previous fit's ``params_object`` carries its
    φ) when it has ``n_res`` entries, else 0 (one variance, no correlation)."""
    phi = getattr(start_params, "residual", None)
    if phi is not None and np.shape(phi) == (n_res,) and np.all(np.isfinite(phi)):
        return np.asarray(phi, dtype=float)
    return np.zeros(n_res)


def with_residual_model(objective):
    """The objective over θ and φ where its statistics keep the residual components
    (:class:`~dlmm.structure.residual_pass.ResidualStatistics`), else the objective."""
    if getattr(objective.stats, "structure", None) is None:
        return objective
    return replace(objective, theta_map=ResidualMap(objective.theta_map, objective.stats))


def fitted_statistics(objective, theta, *stats) -> tuple:
    """Each of ``stats`` at the residual parameters of θ (themselves without them): the
    results then see a model of a known residual covariance."""
    if not isinstance(objective.theta_map, ResidualMap):
        return stats
    phi = objective.theta_map.split(theta)[1]
    return tuple(s.at(phi) for s in stats)
