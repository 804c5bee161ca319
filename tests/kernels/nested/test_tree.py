"""Ancestor maps of a block: the parent maps composed; parents outside the level above
are refused."""

from __future__ import annotations

import numpy as np
import pytest

from dlmm.kernels.nested import nested_tree

from .cases import Case
from .helpers import dense_stats


def test_ancestors_are_the_rows_nodes_above():
    case = Case("three_levels_q101")
    design = case.design
    tree = nested_tree(dense_stats(design))
    assert tree.active == (0, 2) and tree.n_nodes == tuple(design.n_nodes)
    for level in (1, 2):
        for above in range(level):
            # every row's node at `level` has, at `above`, the row's node there
            got = tree.ancestor(level, above)[design.node[level]]
            np.testing.assert_array_equal(got, design.node[above])


def test_a_parent_outside_the_level_above_is_refused():
    stats = dense_stats(Case("two_levels_q11").design)
    stats.parent[1] = stats.parent[1] + 100
    with pytest.raises(ValueError, match="level 1's parents are not nodes of level 0"):
        nested_tree(stats)
