"""Which engine holds a model's statistics, chosen from its specification."""

from __future__ import annotations

from ..distributed.base import Backend
from .base import RandomEffectsStatistics
from .grouped import one_pass


def collect_statistics(spec, backend: Backend, progress=None) -> RandomEffectsStatistics:
    """Make the one pass over ``backend``'s rows with the engine that fits ``spec``.

    Today every model goes to the grouped engine (:mod:`dlmm.structure.grouped`);
    a crossed design is one group whose variance components are the factors.
    ``progress(done, total)`` is called as chunks of rows are done.
    """
    return one_pass(spec, backend, progress)
