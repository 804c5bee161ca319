"""Statistics whose whole blocked system lives on the driver after the pass.

The crossed engines (:mod:`.crossed` for statsmodels' crossed shape,
:mod:`.crossed_terms` for lme4's terms) gather their keyed sums once and build one
system on the driver; from then on every question is driver-only. What the engine
interface asks of such statistics beyond the likelihood pieces is the same for both,
and lives here: the one group of all rows, the BLAS thread choice for the dense part,
the cache of recent evaluations, the fixed columns dropped from the system, and the
effects and rows mapped in process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from ..kernels.crossed import CrossedPieces, select_columns
from ..kernels.hessian import NewtonPieces
from .base import RandomEffectsStatistics
from .threads import DenseThreads

#: Evaluations kept per statistics (a few hundred numbers each): the Newton polish
#: returns to the point its gradient differences were taken around (STAR: one of 28).
RECENT_PIECES = 8


class DriverSystemStatistics(RandomEffectsStatistics):
    """The driver-side answers of an engine whose statistics are one blocked system.

    A subclass (a dataclass) has the fields ``backend``, ``system``, ``totals``,
    ``evaluations``, ``_last`` (a list) and ``_threads`` (None until first asked).
    """

    @property
    def backend_name(self) -> str:
        return self.backend.name

    @property
    def n_groups(self) -> int:
        return 1

    @property
    def group_size_min(self) -> float:
        return float(self.totals.n_rows)

    @property
    def group_size_max(self) -> float:
        return float(self.totals.n_rows)

    @property
    def threads(self) -> DenseThreads:
        """This fit's BLAS thread choice for the dense part (:mod:`.threads`)."""
        if self._threads is None:
            # a sparse Schur factor runs compiled scalar loops, no dense BLAS: one thread
            sparse = self.system.sparse is not None
            self._threads = DenseThreads(0 if sparse else self.system.dense_size)
        return self._threads

    @property
    def has_newton_pieces(self) -> bool:
        return False

    @property
    def full_effect_covariances(self) -> bool:
        return False

    def newton_pieces(self, chol_re: np.ndarray, sd_vc: np.ndarray) -> NewtonPieces:
        raise NotImplementedError("the crossed engine has no Hessian pieces "
                                  "(has_newton_pieces is False)")

    def kept_pieces(self, key: bytes) -> CrossedPieces | None:
        """The pieces kept from one of the last evaluations at ``key``, or None."""
        for seen, out in self._last:
            if seen == key:
                return out
        return None

    def recent_pieces(self, key: bytes,
                      evaluate: Callable[[], CrossedPieces]) -> CrossedPieces:
        """The pieces at the point ``key`` (its θ's bytes): one of the last
        :data:`RECENT_PIECES` evaluations, or ``evaluate()`` (one blocked
        factorization, counted, under the thread choice)."""
        out = self.kept_pieces(key)
        if out is not None:
            return out
        self.evaluations += 1
        with self.threads.evaluation():
            out = evaluate()
        self._last = [*self._last[-(RECENT_PIECES - 1):], (key, out)]
        return out

    def drop_fixed_columns(self, keep_xy: np.ndarray) -> None:
        """Keep only the ``keep_xy`` columns of ``[X y]`` in ``K`` and the system."""
        keep_xy = np.asarray(keep_xy, dtype=bool)
        self.totals.xy_cross = self.totals.xy_cross[np.ix_(keep_xy, keep_xy)]
        self.system = select_columns(self.system, keep_xy)
        self._last = []

    def map_effects(self, func, handles: list[Any], *args) -> list[Any]:
        return [func(h, *args) for h in handles]

    def gather(self, handles: list[Any]) -> list[Any]:
        return list(handles)

    def to_frame(self, handles: list[Any], meta: pd.DataFrame) -> Any:
        frames = [h for h in handles if len(h)]
        return pd.concat(frames) if frames else meta

    def map_rows(self, func, meta: Any, *shared: Any) -> Any:
        return self.backend.map_frame(func, meta, *shared)
