"""Random-effects structures: the statistics of the data behind one engine interface.

``base``     the interface the model and the results talk to
             (:class:`~dlmm.structure.base.RandomEffectsStatistics`).
``grouped``  the grouped (nested) engine: persisted blocks of whole groups.
``crossed``  the crossed engine: keyed sparse sums, one blocked system on the driver.
``choose``   which engine a model's specification goes to.
"""

from .base import RandomEffectsStatistics
from .choose import collect_statistics
from .crossed import CrossedStatistics
from .grouped import GroupedStatistics

__all__ = [
    "CrossedStatistics", "GroupedStatistics", "RandomEffectsStatistics", "collect_statistics",
]
