"""Statistics summed over shifted random-effect columns, seen in the model's own parameters.

The one pass sums ``Z_c = Z - 1 m'`` (:mod:`dlmm.spec.centering`) so that a
covariate far from zero keeps its digits; ``Z = Z_c U``. This wrapper asks the
engine for the centred pieces at ``Psi_c = U Psi U'`` and maps every answer
back (:mod:`dlmm.objective.shift`), so the model and the results see the
engine interface in their own parameters and never know about the shift.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pandas as pd

from ..kernels.block import transform_effects
from ..kernels.hessian import NewtonPieces
from ..kernels.moments import MomentPieces
from ..kernels.pieces import LikelihoodPieces
from ..objective.shift import packed_map, raw_moment_pieces, raw_newton_pieces, raw_pieces
from .base import ON_DRIVER_MAX_BYTES, RandomEffectsStatistics


class ShiftedStatistics(RandomEffectsStatistics):
    """An engine's statistics of shifted random-effect columns (``Z = Z_c U``).

    Parameters
    ----------
    inner : RandomEffectsStatistics
        Statistics summed over ``Z_c``.
    u : ndarray (k_re, k_re)
    k_vc : int
    """

    def __init__(self, inner: RandomEffectsStatistics, u: np.ndarray, k_vc: int):
        self.inner = inner
        self.u = u
        self.u_inv = np.linalg.inv(u)
        self.m = packed_map(u, k_vc)

    def __getattr__(self, name: str) -> Any:  # totals, n_groups, backend, blocks...
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def vc_effect_counts(self) -> np.ndarray:
        return self.inner.vc_effect_counts()

    def on_driver(self, max_bytes: int = ON_DRIVER_MAX_BYTES) -> RandomEffectsStatistics:
        inner = self.inner.on_driver(max_bytes)
        if inner is self.inner:
            return self
        out = copy.copy(self)
        out.inner = inner
        return out

    def at(self, weights) -> ShiftedStatistics:
        """The inner statistics at other residual parameters (:mod:`.residual_pass`),
        shifted."""
        out = copy.copy(self)
        out.inner = self.inner.at(weights)
        return out

    def centred(self) -> tuple[RandomEffectsStatistics, np.ndarray]:
        return self.inner, self.u

    @property
    def has_newton_pieces(self) -> bool:
        return self.inner.has_newton_pieces

    @property
    def backend_name(self) -> str:
        return self.inner.backend_name

    def pieces(self, chol_re: np.ndarray, sd_vc: np.ndarray) -> LikelihoodPieces:
        return raw_pieces(self.inner.pieces(self.u @ chol_re, sd_vc), self.u)

    def newton_pieces(self, chol_re: np.ndarray, sd_vc: np.ndarray) -> NewtonPieces:
        return raw_newton_pieces(self.inner.newton_pieces(self.u @ chol_re, sd_vc), self.u,
                                 self.m)

    def residual_newton_pieces(self, chol_re: np.ndarray, sd_vc: np.ndarray) -> NewtonPieces:
        """The inner residual statistics' pieces along ``Psi`` and φ (:mod:`.residual_pass`),
        ``Psi``'s mapped (φ's directions are the same in both)."""
        pieces = self.inner.residual_newton_pieces(self.u @ chol_re, sd_vc)
        m = np.eye(pieces.hess.d1.shape[0])
        m[: self.m.shape[0], : self.m.shape[0]] = self.m
        return raw_newton_pieces(pieces, self.u, m)

    def moment_pieces(self, coef: np.ndarray) -> MomentPieces:
        return raw_moment_pieces(self.inner.moment_pieces(coef), self.m)

    def drop_fixed_columns(self, keep_xy: np.ndarray) -> None:
        self.inner.drop_fixed_columns(keep_xy)

    def effects(self, chol_re: np.ndarray, sd_vc: np.ndarray, coef: np.ndarray,
                scale: float) -> list[Any]:
        handles = self.inner.effects(self.u @ chol_re, sd_vc, coef, scale)
        return self.inner.map_effects(transform_effects, handles, self.u_inv)

    def map_effects(self, func, handles: list[Any], *args) -> list[Any]:
        return self.inner.map_effects(func, handles, *args)

    def gather(self, handles: list[Any]) -> list[Any]:
        return self.inner.gather(handles)

    def to_frame(self, handles: list[Any], meta: pd.DataFrame) -> Any:
        return self.inner.to_frame(handles, meta)

    def map_rows(self, func, meta: Any, *shared: Any) -> Any:
        return self.inner.map_rows(func, meta, *shared)
