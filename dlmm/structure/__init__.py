"""Random-effects structures: the statistics of the data behind one engine interface.

``base``     the interface the model and the results talk to
             (:class:`~dlmm.structure.base.RandomEffectsStatistics`).
``grouped``  the grouped (nested) engine: persisted blocks of whole groups.
``choose``   which engine a model's specification goes to.
"""

from .base import RandomEffectsStatistics
from .choose import collect_statistics
from .grouped import GroupedStatistics

__all__ = ["GroupedStatistics", "RandomEffectsStatistics", "collect_statistics"]
