"""The engine interface: statistics of the data -> likelihood pieces -> random effects.

An engine makes the one pass over the rows and keeps what it learned (where
it keeps it is its own business: the grouped engine keeps blocks of whole
groups on the Dask workers). Everything above it (:mod:`dlmm.model`,
:mod:`dlmm.results`) asks it only the questions below, for a parameter value
in the square-root parameterization ``(chol_re, sd_vc)``: the lower-triangular
factor of ``Psi = cov_re / scale`` and ``sqrt(vcomp / scale)``. The answers
are additive containers of :mod:`dlmm.kernels`; the driver math that turns
them into a log-likelihood lives in :mod:`dlmm.objective`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np
import pandas as pd

from ..kernels.hessian import NewtonPieces
from ..kernels.moments import MomentPieces
from ..kernels.pieces import LikelihoodPieces, RowTotals

#: Largest statistics :meth:`RandomEffectsStatistics.on_driver` copies to the driver.
ON_DRIVER_MAX_BYTES = 512 * 1024**2


class RandomEffectsStatistics(ABC):
    """What a fit needs of the data, once the one pass is made.

    Attributes
    ----------
    totals : RowTotals
        Sums over rows: ``K = [X y]'[X y]``, row counts, missing and infinite
        counts per column, ``Z'Z``.
    n_groups : int
    group_size_min, group_size_max : float
    seconds : float
        Wall time of the one pass.
    shuffled : bool
        Whether partial statistics had to move between workers.
    evaluations : int
        Map-reduces made so far (value and Newton pieces); for an engine that
        keeps its statistics on the driver, evaluations of the pieces.
    backend_name : str
        Where the one pass ran (``"local"``, ``"dask"``).
    engine_name : str
        ``"grouped"`` or ``"crossed"``.
    """

    totals: RowTotals
    n_groups: int
    group_size_min: float
    group_size_max: float
    seconds: float
    shuffled: bool
    evaluations: int

    @property
    @abstractmethod
    def backend_name(self) -> str:
        """Name of the backend that holds the statistics."""

    #: The engine's name, as a fit reports it (``MixedLMResults.engine``).
    engine_name: str = "grouped"

    @property
    def has_newton_pieces(self) -> bool:
        """Whether :meth:`newton_pieces` (second derivatives) is available. Without
        them the model optimizes with gradients only and the results take the
        Hessian from differences of analytic gradients
        (:func:`dlmm.objective.hessian.hessian_from_gradients`)."""
        return True

    @property
    def full_effect_covariances(self) -> bool:
        """Whether :meth:`effects` carries each group's full conditional covariance
        (``random_effects_cov``), or only the variances of the effects."""
        return True

    @abstractmethod
    def vc_effect_counts(self) -> np.ndarray:
        """Random effects of each variance component present in the data (k_vc,):
        (group, column) pairs with rows; for a crossed factor, its levels. With
        ``n_groups`` they decide whether the variances are identified
        (:func:`dlmm.objective.identifiable.check_identifiable`)."""

    def on_driver(self, max_bytes: int = ON_DRIVER_MAX_BYTES) -> RandomEffectsStatistics:
        """A copy of the statistics held on the driver, for many evaluations in a row
        (profile likelihoods): each then costs no round trip to the workers. The
        statistics themselves when they are there already, or larger than
        ``max_bytes``. The copy evaluates only (no rows: no fitted values)."""
        return self

    def centred(self) -> tuple[RandomEffectsStatistics, np.ndarray | None]:
        """The statistics in the coordinates the one pass summed, and ``U`` with
        ``Z = Z_c U`` (None when they are the model's own: no shifted columns)."""
        return self, None

    # -- likelihood -------------------------------------------------------------

    @abstractmethod
    def pieces(self, chol_re: np.ndarray, sd_vc: np.ndarray) -> LikelihoodPieces:
        """Value and gradient pieces summed over the whole data set: ``logdet``,
        ``hmh`` and derivative pieces along the engine's parameter directions (see
        :func:`dlmm.objective.profiled.direction_derivatives`; the grouped engine's
        :class:`LikelihoodPieces` along profile directions, the crossed engine's
        :class:`~dlmm.kernels.crossed.CrossedPieces` along sqrt directions)."""

    @abstractmethod
    def newton_pieces(self, chol_re: np.ndarray, sd_vc: np.ndarray) -> NewtonPieces:
        """Value, gradient and Hessian pieces summed over the whole data set
        (only where :attr:`has_newton_pieces`)."""

    def start_params(self):
        """Start values the engine proposes (a profile-scale
        :class:`~dlmm.objective.params.MixedLMParams`), or None: the model then uses
        moment estimates or statsmodels' default."""
        return None

    @abstractmethod
    def moment_pieces(self, coef: np.ndarray) -> MomentPieces:
        """Moment sums for start values, with ``coef = [-beta_ols; 1]``."""

    @abstractmethod
    def drop_fixed_columns(self, keep_xy: np.ndarray) -> None:
        """Forget the columns of ``[X y]`` where ``keep_xy`` is false (collinear
        fixed effects dropped before the fit)."""

    # -- random effects ---------------------------------------------------------

    @abstractmethod
    def effects(self, chol_re: np.ndarray, sd_vc: np.ndarray, coef: np.ndarray,
                scale: float) -> list[Any]:
        """Handles of the conditional modes and covariances, kept where computed."""

    @abstractmethod
    def map_effects(self, func, handles: list[Any], *args) -> list[Any]:
        """``func(effects, *args)`` on every handle of :meth:`effects`, kept where computed."""

    @abstractmethod
    def gather(self, handles: list[Any]) -> list[Any]:
        """Bring handles to the driver, in order."""

    @abstractmethod
    def to_frame(self, handles: list[Any], meta: pd.DataFrame) -> Any:
        """Handles of pandas frames as one frame (pandas, or lazy Dask on a cluster)."""

    # -- the rows again (fitted values and residuals) ---------------------------

    @abstractmethod
    def map_rows(self, func, meta: Any, *shared: Any) -> Any:
        """``func(chunk, *shared)`` on every chunk of the fitted rows (pandas or lazy Dask)."""
