"""The shape of a block of nested trees: each node's ancestor at every level above.

Node ``k`` at level ``l`` has one ancestor at each level ``m < l``; ``ancestor(l, m)``
(n_l,) gives its index among level ``m``'s nodes (the parent maps composed). The kernels
read an ancestor's block at that index and add into it there (:func:`.small.product`),
so they need no order of the nodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .stats import NestedStats


@dataclass(eq=False)
class NestedTree:
    """Ancestor indices of every pair of levels of one block.

    Attributes
    ----------
    n_nodes : tuple of int
        Nodes per level.
    active : tuple of int
        The levels with random-effect columns (``q_l > 0``), outermost first; only
        these take part in the algebra, the others only relay ancestry.
    """

    n_nodes: tuple[int, ...]
    active: tuple[int, ...]
    ancestors: dict = field(default_factory=dict)

    def ancestor(self, level: int, above: int) -> np.ndarray:
        """(n_level,) int64: each level-``level`` node's ancestor among level ``above``'s."""
        return self.ancestors[level, above]

    def active_above(self, level: int) -> list[int]:
        """The active levels above ``level`` (outermost first)."""
        return [m for m in self.active if m < level]

    def active_below(self, level: int) -> list[int]:
        """The active levels below ``level``."""
        return [m for m in self.active if m > level]


def nested_tree(stats: NestedStats) -> NestedTree:
    """The :class:`NestedTree` of a block (ancestor maps composed from ``stats.parent``)."""
    tree = NestedTree(stats.n_nodes, tuple(lv for lv, q in enumerate(stats.q) if q > 0))
    for level in range(1, stats.n_levels):
        parent = np.ascontiguousarray(stats.parent[level], dtype=np.int64)
        if parent.size and (parent.min() < 0 or parent.max() >= stats.n_nodes[level - 1]):
            raise ValueError(f"level {level}'s parents are not nodes of level {level - 1}")
        tree.ancestors[level, level - 1] = parent
        for above in range(level - 1):
            tree.ancestors[level, above] = tree.ancestors[level - 1, above][parent]
    return tree
