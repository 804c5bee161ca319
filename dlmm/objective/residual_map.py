"""θ of a model whose residual covariance has parameters: the covariance θ, then φ.

A variance per stratum and AR(1) errors (:mod:`dlmm.objective.residual_structure`) are
parameters φ of the fit beside the random effects' covariance θ. The engine takes φ
after θ's arguments; its pieces carry the derivatives along φ of the groups' part
(the components' coefficients ``c(φ)`` moved along ``J = ∂c/∂φ``), and

    ∂ℓ/∂φ = ∂ℓ_groups/∂φ - ½ ∂log|R|/∂φ,

the second term from ``log|R|`` (the rows' part of ``log|V|``), which the engine adds
to the value but not to the derivatives. The Hessian over θ and φ is exact
(:meth:`ResidualMap.with_hessian`).
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
        d_logdet = self.logdet(phi)[1]
        grad_res = np.asarray(gradient.grad_res, dtype=float)[: self.n_res]
        return np.concatenate([self.inner.along_theta(gradient, args[:-1]),
                               grad_res - 0.5 * d_logdet])


    #: :meth:`with_hessian` gives the exact Hessian over θ and φ
    #: (:attr:`dlmm.objective.objective.ProfiledObjective.has_hessian`).
    has_hessian = True

    def with_hessian(self, objective, theta) -> tuple[float, np.ndarray, np.ndarray]:
        """``(ℓ, ∂ℓ/∂θ, ∂²ℓ/∂θ²)`` over θ and φ from one sweep's exact pieces
        (:meth:`~dlmm.structure.residual_pass.ResidualStatistics.residual_newton_pieces`):
        the Hessian in (fixed effects, ``Psi``, φ's directions ``∂c/∂φ_a``)
        (:func:`~dlmm.objective.hessian.profiled_hessian`), the fixed effects profiled out
        (a Schur complement at GLS), the chain rule to the sqrt parameters, and along φ
        the curvature of ``c(φ)`` and of ``log|R|``:

            ∂²ℓ/∂φ_a∂φ_b = Σ_kl J_ka J_lb ∂²ℓ/∂c_k∂c_l + Σ_k ∂ℓ/∂c_k ∂²c_k/∂φ_a∂φ_b
                           - ½ ∂²log|R|/∂φ_a∂φ_b.
        """
        from .hessian import profiled_hessian, sqrt_jacobian
        from .profiled import grad_profile, profiled_value

        args = self.engine_args(theta)
        chol, sd, phi = args
        stats = objective.stats.at(phi)
        pieces = stats.residual_newton_pieces(chol, sd)
        xy_cross, n_rows = stats.totals.xy_cross, objective.n_rows
        value = profiled_value(pieces.value, xy_cross, n_rows, objective.reml,
                               xy_scale=objective.xy_scale)
        full = profiled_hessian(pieces.hess, xy_cross, n_rows, objective.reml,
                                value.fe_params)
        k_fe = xy_cross.shape[0] - 1
        h_bt, h_tt = full[:k_fe, k_fe:], full[k_fe:, k_fe:]
        h_prof = h_tt - h_bt.T @ np.linalg.solve(full[:k_fe, :k_fe], h_bt) if k_fe else h_tt
        jac, second = sqrt_jacobian(chol, sd)
        m = jac.shape[0]
        chain = np.eye(m + self.n_res)
        chain[:m, :m] = jac
        hess = chain.T @ h_prof @ chain
        hess[:m, :m] += np.einsum("i,ijk->jk", grad_profile(value), second)
        curvature = np.zeros((self.n_res, self.n_res))  # Σ_k ∂ℓ/∂c_k ∂²c_k/∂φ_a∂φ_b
        rows, cols = np.triu_indices(self.n_res)
        curvature[rows, cols] = curvature[cols, rows] = value.grad_res[self.n_res:]
        hess[m:, m:] += curvature - 0.5 * self.structure.logdet_hessian(
            phi, stats.rows_by_stratum, stats.n_groups)
        return value.llf, self.along_theta(value, args), 0.5 * (hess + hess.T)


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
