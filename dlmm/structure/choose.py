"""Which engine holds a model's statistics, chosen from its specification."""

from __future__ import annotations

from ..distributed.base import Backend
from ..objective.shift import random_effects_map
from .base import RandomEffectsStatistics
from .grouped import one_pass
from .shifted import ShiftedStatistics


def collect_statistics(spec, backend: Backend, progress=None) -> RandomEffectsStatistics:
    """Make the one pass over ``backend``'s rows with the engine that fits ``spec``.

    Today every model goes to the grouped engine (:mod:`dlmm.structure.grouped`);
    a crossed design is one group whose variance components are the factors.
    When the specification shifts random-effect columns (``spec.centering``),
    the statistics are seen through :class:`ShiftedStatistics`.
    ``progress(done, total)`` is called as chunks of rows are done.
    """
    stats = one_pass(spec, backend, progress)
    centering = spec.centering
    if centering.shifts_z:
        u = random_effects_map(centering.z_shift, centering.z_intercept)
        return ShiftedStatistics(stats, u, spec.k_vc)
    return stats
