"""The cross-products a nested design keeps per node, for a block of whole outer groups.

Factors ``f_0`` (outermost) … ``f_{L-1}``: every level of ``f_l`` lies in one level of
``f_{l-1}``. A node at level ``l`` is one level of ``f_l`` present in the data; it has
the ``q_l`` random-effect columns ``z_l`` of the terms on ``f_l``. Since a node's rows lie
inside its ancestors' rows, ``Z_k' Z_j`` is zero unless ``j`` is ``k``, one of its
ancestors or one of its descendants, and the one pass needs, per node ``k`` at level
``l`` (sums over the node's rows, ``[x y]`` the fixed-effects row and the response):

    zz[l][k]    = sum z_l z_l'        (q_l, q_l)
    zxy[l][k]   = sum z_l [x y]'      (q_l, r)
    za[l][m][k] = sum z_l z_m'        (q_l, q_m), m < l: with the ancestor's columns
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(eq=False)
class NestedStats:
    """Per-node cross-products of a block of whole outer groups.

    Attributes
    ----------
    q : tuple of int
        Random-effect columns per level (0 where a factor carries no term).
    parent : list of ndarray
        ``parent[l]`` (n_l,) int64: the index of each level-``l`` node's parent among
        level ``l-1``'s nodes; non-decreasing (a node's children are contiguous).
        ``parent[0]`` is empty.
    zz : list of ndarray
        ``zz[l]`` (n_l, q_l, q_l).
    zxy : list of ndarray
        ``zxy[l]`` (n_l, q_l, r).
    za : list of list of ndarray
        ``za[l][m]`` (n_l, q_l, q_m) for ``m < l``.
    n_rows : list of ndarray
        ``n_rows[l]`` (n_l,): rows per node.
    keys : list
        Per level, the nodes' labels (the factor values ``f_0 .. f_l``), for tables of
        effects; the math never reads them.
    """

    q: tuple[int, ...]
    parent: list[np.ndarray]
    zz: list[np.ndarray]
    zxy: list[np.ndarray]
    za: list[list[np.ndarray]]
    n_rows: list[np.ndarray]
    keys: list = field(default_factory=list)

    @property
    def n_levels(self) -> int:
        return len(self.q)

    @property
    def n_nodes(self) -> tuple[int, ...]:
        """Nodes per level."""
        return tuple(int(a.shape[0]) for a in self.n_rows)

    @property
    def r(self) -> int:
        """Columns of ``[X y]``."""
        return int(self.zxy[0].shape[-1])
