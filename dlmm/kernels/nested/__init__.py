"""The nested engine's kernels: random effects on factors that nest in one another.

A design whose grouping factors each nest in the one before (``lea``, ``lea:school``,
...) gives, inside each outer group, a tree of random-effect blocks: a node's rows lie
inside its parent's. :mod:`.stats` holds the per-node cross-products the one pass
makes; the other modules turn them, at a parameter value, into the profiled
objective's pieces and into conditional modes, factoring each tree from its leaves up.

``stats``     the per-node sums of a block of whole outer groups (:class:`NestedStats`).
``tree``      each node's ancestor at every level above.
``small``     compiled loops over stacks of small per-node matrices.
``factor``    the block Cholesky factor of ``C``, leaves first: ``log|C|``, ``hmh``.
``inverse``   top-down: ``C^{-1} c``, and ``C^{-1}`` on the trees' pattern.
``pieces``    :func:`nested_pieces`: value and derivatives for the profiled objective.
``effects``   :func:`nested_effects`: conditional modes and covariances per node.
"""

from .effects import nested_effects
from .factor import NestedFactor, factorize
from .inverse import SelectedInverse, back_solve, selected_inverse
from .pieces import NestedPieces, nested_pieces
from .stats import NestedStats
from .tree import NestedTree, nested_tree

__all__ = [
    "NestedFactor",
    "NestedPieces",
    "NestedStats",
    "NestedTree",
    "SelectedInverse",
    "back_solve",
    "factorize",
    "nested_effects",
    "nested_pieces",
    "nested_tree",
    "selected_inverse",
]
