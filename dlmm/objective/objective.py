"""The objective: the profiled (RE)ML of a model as a function of its covariance parameters.

One object answers every question asked of the likelihood, as MixedModels.jl's
``objective(updateL!(setθ!(m, θ)))``: the optimizer's value and gradient (and, where
the engine has second-derivative pieces, its Hessian), the profile likelihoods, the
Satterthwaite degrees of freedom, statsmodels' ``loglike``/``score``/``hessian`` and
the results' standard errors all evaluate :class:`ProfiledObjective`. It holds the
engine's statistics (whatever the engine: grouped, nested, crossed; they answer
``pieces``), a θ map (:mod:`dlmm.objective.params`: what θ is to the engine, and the
chain rule back to θ) and the criterion (REML or ML, the units of ``[X y]``).

With ``S = [X y]'V⁻¹[X y]`` from the pieces (:mod:`dlmm.objective.profiled`),

    β = S_XX⁻¹ S_Xy,   qf = S_yy - S_yX β,   σ² = qf / fac,
    ℓ(θ) = -½ log|V| - fac/2 log qf - fac/2 (1 + log 2π - log fac)  [- ½ log|S_XX|],

and for any ``c = [-β; 1]`` and weight ``w`` (the profiled ℓ: ``w = fac / 2qf``;
a profile at a fixed σ²: ``w = 1 / 2σ²``) the gradient along θ is

    ∂_j = -½ ∂_j log|V| + w c' ∂_j(hmh) c  [+ ½ tr(S_XX⁻¹ ∂_j(hmh)_XX)]

(:meth:`ProfiledObjective.gradient`). No data are read here: the engine's pieces
are reduced sums.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .hessian import GradientHessian, hessian_from_gradients, profiled_hessian, sqrt_hessian
from .information import information_hessian
from .pair_hessian import profiled_pair_hessian
from .profiled import (
    ProfiledValue,
    covariance_gradient,
    grad_profile,
    profiled_llf,
    profiled_value,
)


@dataclass(eq=False)
class ProfiledObjective:
    """The profiled (RE)ML log-likelihood ℓ(θ) of one model's statistics.

    Parameters
    ----------
    stats : engine statistics
        Anything with ``pieces(*args)`` and ``totals`` (``xy_cross``, ``n_rows``):
        the grouped, nested or crossed engine's statistics.
    theta_map : SqrtMap or TermsMap
        θ to the engine's arguments, and the engine's derivatives back along θ.
    reml : bool
    xy_scale : ndarray, optional
        The scales of the columns the statistics summed (:mod:`dlmm.spec.centering`):
        ℓ and σ² in the model's units; None leaves them in the statistics' units.
    """

    stats: Any
    theta_map: Any
    reml: bool
    xy_scale: np.ndarray | None = None

    @property
    def n_rows(self) -> float:
        return self.stats.totals.n_rows

    @property
    def xy_cross(self) -> np.ndarray:
        return self.stats.totals.xy_cross

    # -- value and gradient ------------------------------------------------------------

    def _engine(self, args) -> tuple[Any, tuple]:
        """The statistics the engine arguments ``args`` evaluate and the arguments they
        take: the statistics at the residual strata's weights where θ has them
        (:class:`~dlmm.objective.residual_map.ResidualMap`)."""
        split = getattr(self.theta_map, "statistics", None)
        return (self.stats, args) if split is None else split(self.stats, args)

    def statistics(self, theta):
        """The statistics θ evaluates (at its residual parameters, where it has them)."""
        return self._engine(self.theta_map.engine_args(theta))[0]

    def pieces(self, theta):
        """The engine's likelihood pieces at θ."""
        stats, args = self._engine(self.theta_map.engine_args(theta))
        return stats.pieces(*args)

    def value(self, theta) -> ProfiledValue:
        """ℓ, β, σ², ``S_XX`` and the gradient at θ (``grad_theta``: along θ)."""
        return self.value_at(self.theta_map.engine_args(theta))

    def value_at(self, args) -> ProfiledValue:
        """:meth:`value` at the engine's own arguments (``theta_map.engine_args``);
        for a caller that moves them in a way θ does not (a profile in a rotated
        factor)."""
        stats, engine_args = self._engine(args)
        value = profiled_value(stats.pieces(*engine_args), stats.totals.xy_cross, self.n_rows,
                               self.reml, theta=self.theta_map.sqrt_point(args),
                               xy_scale=self.xy_scale)
        return replace(value, grad_theta=self.theta_map.along_theta(value, args))

    @property
    def has_values(self) -> bool:
        """Whether the engine gives the value alone for less than with its gradient
        (``stats.value_pieces``: the crossed engine)."""
        return self.theta_map.kind == "sqrt" and hasattr(self.stats, "value_pieces")

    def llf(self, theta) -> float:
        """ℓ at θ alone: the engine's value-only pieces where it has them
        (:attr:`has_values`), else those with the gradient."""
        args = self.theta_map.engine_args(theta)
        pieces = self.stats.value_pieces(*args) if self.has_values \
            else self.stats.pieces(*args)
        return profiled_llf(pieces, self.xy_cross, self.n_rows, self.reml, self.xy_scale)

    def __call__(self, theta) -> tuple[float, np.ndarray]:
        """``(ℓ, ∂ℓ/∂θ)``: what an optimizer asks."""
        value = self.value(theta)
        return value.llf, value.grad_theta

    def gradient(self, theta, pieces, c: np.ndarray, weight: float,
                 s_xx_inv: np.ndarray | None = None) -> np.ndarray:
        """∂/∂θ of ``-½ log|V| - w c'Sc [- ½ log|S_XX|]`` for a given ``c`` and weight
        ``w`` (see the module docstring), from the ``pieces`` at θ (:meth:`pieces`);
        ``s_xx_inv`` adds the REML term. Profiles hold the fixed effects or the scale
        with it."""
        args = self.theta_map.engine_args(theta)
        grad = covariance_gradient(pieces, c, weight, s_xx_inv, self.theta_map.sqrt_point(args))
        return self.theta_map.along_theta(grad, args)

    # -- second derivatives ----------------------------------------------------------

    def pair_hessian(self, theta) -> np.ndarray | None:
        """The Hessian at θ where the evaluation there knows it exactly (the crossed
        engine's float32 evaluations: its dense part's factor pairs), NaN elsewhere, or
        None (:func:`~dlmm.objective.pair_hessian.profiled_pair_hessian`)."""
        if self.theta_map.kind != "sqrt" or getattr(self.theta_map, "k_re", 0):
            return None
        return profiled_pair_hessian(self.pieces(theta), self.xy_cross, self.n_rows,
                                     self.reml)

    def information(self, theta) -> np.ndarray | None:
        """The average-information Hessian at θ (:mod:`dlmm.objective.information`: for
        Newton steps, not the Hessian) where the engine gives its pieces (the crossed
        engine, intercepts only), else None. Its evaluation is the value and gradient at
        θ (the engine keeps it for the optimizer's next ask)."""
        stats = self.stats
        if not hasattr(stats, "information") or self.theta_map.kind != "sqrt" \
                or getattr(self.theta_map, "k_re", 0):
            return None
        stats.information = True
        try:
            value = self.value(theta)
        finally:
            stats.information = False
        pieces = self.pieces(theta)
        if getattr(pieces, "information", None) is None:
            return None
        return information_hessian(pieces.information, pieces.hmh, self.xy_cross,
                                   self.n_rows, self.reml, np.asarray(theta, dtype=float),
                                   value.grad_theta)

    @property
    def has_hessian(self) -> bool:
        """Whether the engine gives exact second-derivative pieces (the grouped engine,
        θ statsmodels' sqrt vector); else the Hessian is differences of the gradient."""
        return self.theta_map.kind == "sqrt" and bool(
            getattr(self.stats, "has_newton_pieces", False)
            or getattr(self.theta_map, "has_hessian", False))  # θ and residual φ

    def with_hessian(self, theta) -> tuple[float, np.ndarray, np.ndarray]:
        """``(ℓ, ∂ℓ/∂θ, ∂²ℓ/∂θ²)`` from the engine's exact pieces (:attr:`has_hessian`):
        the Hessian in (fixed effects, Psi, v) (:func:`~dlmm.objective.hessian.
        profiled_hessian`), the fixed effects profiled out and the chain rule to θ
        (:func:`~dlmm.objective.hessian.sqrt_hessian`)."""
        if getattr(self.theta_map, "has_hessian", False):  # over θ and φ
            return self.theta_map.with_hessian(self, theta)
        chol, sd = args = self.theta_map.engine_args(theta)
        pieces = self.stats.newton_pieces(chol, sd)
        value = profiled_value(pieces.value, self.xy_cross, self.n_rows, self.reml,
                               xy_scale=self.xy_scale)
        full = profiled_hessian(pieces.hess, self.xy_cross, self.n_rows, self.reml,
                                value.fe_params)
        k_fe = self.xy_cross.shape[0] - 1
        hess = sqrt_hessian(full, k_fe, grad_profile(value), chol, sd)
        return value.llf, self.theta_map.along_theta(value, args), hess

    def hessian_function(self, fun=None, **differences):
        """``θ -> (ℓ, ∂ℓ, ∂²ℓ)`` for a Newton polish: :meth:`with_hessian` where the
        engine has exact pieces, else differences of the analytic gradient of ``fun``
        (default the objective itself; :class:`~dlmm.objective.hessian.GradientHessian`
        with ``differences`` as its options)."""
        if self.has_hessian and fun is None:
            return self.with_hessian
        return GradientHessian(self if fun is None else fun, **differences)

    def psi_hessian(self, theta, fe_params: np.ndarray | None = None) -> np.ndarray:
        """The Hessian of the (RE)ML in statsmodels' (fixed effects, ``tril Psi``,
        ``vcomp / scale``) at ``fe_params`` (default GLS), the scale profiled out:
        exact where the engine has second-derivative pieces, else central differences
        of the analytic gradient (:func:`~dlmm.objective.hessian.hessian_from_gradients`).
        For θ statsmodels' sqrt vector (:class:`~dlmm.objective.params.SqrtMap`)."""
        if self.theta_map.kind != "sqrt":
            raise TypeError("the Hessian in statsmodels' parameters needs statsmodels' shape")
        chol, sd = self.theta_map.engine_args(theta)
        if getattr(self.stats, "has_newton_pieces", False):
            pieces = self.stats.newton_pieces(chol, sd).hess
            return profiled_hessian(pieces, self.xy_cross, self.n_rows, self.reml, fe_params)
        return hessian_from_gradients(self.stats.pieces, self.xy_cross, self.n_rows,
                                      self.reml, sd, fe_params, chol_re=chol)
