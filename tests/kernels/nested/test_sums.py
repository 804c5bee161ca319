"""The nested one pass: per-leaf sums of chunks, added by key, then per node.

Every sum is checked against a brute-force loop over the nodes of random unbalanced
trees (``tree_data.dense_node_sums``); chunks that split leaves combine to the sums of
all the rows, exactly on integer-valued data, bit for bit on repeated runs.
"""

from __future__ import annotations

import numpy as np
import pytest

from dlmm.kernels.nested.sums import (
    LevelCodes,
    NestedSums,
    build_stats,
    combine,
    leaf_sums,
    level_codes,
    nesting_violations,
)

from .tree_data import dense_node_sums, random_tree_rows

SHAPES = [(0,), (1,), (3,), (1, 2), (0, 3), (2, 0), (1, 1, 1), (2, 0, 3), (0, 0, 0),
          (3, 2, 1), (0, 1, 0)]


def _assert_stats_equal_dense(stats, dense, q, r, rtol=1e-12):
    assert stats.q == q and stats.n_levels == len(q) and stats.r == r
    for l, nodes in enumerate(dense):
        keys = [tuple(int(v) for v in k) for k in stats.keys[l]]
        assert keys == list(nodes)  # every node, in the order of its codes
        assert stats.keys[l].dtype == np.int64 and stats.keys[l].shape == (len(nodes), l + 1)
        n_l = len(nodes)
        assert stats.zz[l].shape == (n_l, q[l], q[l])
        assert stats.zxy[l].shape == (n_l, q[l], r)
        assert len(stats.za[l]) == l
        scale = 1.0 + max((np.abs(v[1]).max(initial=0) for v in nodes.values()), default=0)
        for k, (n, zz, zxy, za) in enumerate(nodes.values()):
            assert stats.n_rows[l][k] == n
            np.testing.assert_allclose(stats.zz[l][k], zz, rtol=rtol, atol=rtol * scale)
            np.testing.assert_allclose(stats.zxy[l][k], zxy, rtol=rtol, atol=rtol * scale)
            for m in range(l):
                assert stats.za[l][m].shape == (n_l, q[l], q[m])
                np.testing.assert_allclose(stats.za[l][m][k], za[m], rtol=rtol,
                                           atol=rtol * scale)
        if l:
            parent = stats.parent[l]
            assert parent.dtype == np.int64 and parent.shape == (n_l,)
            assert np.all(np.diff(parent) >= 0)  # a node's children are contiguous
            # the parent's codes are the node's codes but its own
            np.testing.assert_array_equal(stats.keys[l - 1][parent], stats.keys[l][:, :l])
        else:
            assert stats.parent[0].shape == (0,)


@pytest.mark.parametrize("q", SHAPES, ids=str)
def test_node_sums_equal_dense_sums(q):
    rng = np.random.default_rng(sum(q) * 10 + len(q))
    codes, z, xy = random_tree_rows(rng, q, r=3)
    stats = build_stats(leaf_sums(codes, z, xy))
    _assert_stats_equal_dense(stats, dense_node_sums(codes, z, xy), q, 3)


def _chunks(codes, z, xy, cuts):
    bounds = [0, *cuts, xy.shape[0]]
    return [leaf_sums([c[a:b] for c in codes], [zl[a:b] for zl in z], xy[a:b])
            for a, b in zip(bounds, bounds[1:])]


@pytest.mark.parametrize("q", [(2,), (1, 3), (2, 0, 1), (3, 2, 1)], ids=str)
def test_chunks_that_split_leaves_combine_exactly(q):
    rng = np.random.default_rng(7 + len(q))
    codes, z, xy = random_tree_rows(rng, q, r=2, integer=True, max_rows=6)
    n = xy.shape[0]
    whole = leaf_sums(codes, z, xy)
    for cuts in ([n // 2], [1, n // 3, n // 3 + 1, n - 2], list(range(3, n, 7))):
        parts = _chunks(codes, z, xy, cuts)
        # the rows are shuffled, so leaves (and outer groups) span chunks
        assert sum(p.n_leaves for p in parts) > whole.n_leaves
        got = combine(parts)
        np.testing.assert_array_equal(got.leaves, whole.leaves)
        np.testing.assert_array_equal(got.values, whole.values)  # exact: integer data
        a, b = build_stats(got), build_stats(whole)
        for l in range(len(q)):
            np.testing.assert_array_equal(a.zz[l], b.zz[l])
            np.testing.assert_array_equal(a.zxy[l], b.zxy[l])
            np.testing.assert_array_equal(a.n_rows[l], b.n_rows[l])
            np.testing.assert_array_equal(a.parent[l], b.parent[l])
            for m in range(l):
                np.testing.assert_array_equal(a.za[l][m], b.za[l][m])


def test_combined_float_chunks_equal_dense_sums_and_repeat_bit_for_bit():
    q = (2, 1, 2)
    rng = np.random.default_rng(3)
    codes, z, xy = random_tree_rows(rng, q, r=4, n_outer=6, max_rows=5)
    parts = _chunks(codes, z, xy, [5, 40, 41, 90])
    stats = build_stats(combine(parts))
    _assert_stats_equal_dense(stats, dense_node_sums(codes, z, xy), q, 4)
    # the same chunks, computed again, combine to the same bits
    again = combine(_chunks(codes, z, xy, [5, 40, 41, 90]))
    assert again.values.tobytes() == combine(parts).values.tobytes()
    assert again.leaves.tobytes() == combine(parts).leaves.tobytes()


def test_unsorted_sums_are_sorted_before_the_nodes_are_built():
    q = (1, 2)
    rng = np.random.default_rng(5)
    codes, z, xy = random_tree_rows(rng, q)
    s = leaf_sums(codes, z, xy)
    flipped = NestedSums(s.q, s.r, s.leaves[::-1].copy(), s.values[::-1].copy())
    _assert_stats_equal_dense(build_stats(flipped), dense_node_sums(codes, z, xy), q, 3)


def test_an_empty_chunk_adds_nothing():
    q = (1, 1)
    rng = np.random.default_rng(9)
    codes, z, xy = random_tree_rows(rng, q)
    empty = leaf_sums([c[:0] for c in codes], [zl[:0] for zl in z], xy[:0])
    assert empty.n_leaves == 0 and empty.values.shape == (0, empty.layout.width)
    whole = leaf_sums(codes, z, xy)
    got = combine([empty, whole, empty])
    np.testing.assert_array_equal(got.values, whole.values)
    stats = build_stats(combine([empty]))
    assert stats.n_nodes == (0, 0) and stats.zxy[1].shape == (0, 1, 3)


def test_codes_of_any_size_keep_their_order():
    codes = [np.array([2**62, 5, 2**62, 5]), np.array([2**61, 3, 7, 3])]
    z = [np.ones((4, 1)), np.arange(4.0).reshape(4, 1)]
    s = leaf_sums(codes, z, np.ones((4, 1)))
    np.testing.assert_array_equal(s.leaves, [[5, 3], [2**62, 7], [2**62, 2**61]])
    np.testing.assert_array_equal(s.n_rows, [2, 1, 1])


@pytest.mark.parametrize("bad, message", [
    ([np.array([0, -1, 2])], "must be >= 0"),
    ([np.array([0.0, 1.0, 2.0])], "must be integers"),
    ([np.array([0, 1])], "shape"),
])
def test_bad_codes_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        leaf_sums(bad, [np.ones((3, 1))], np.ones((3, 2)))


def test_nesting_is_read_from_the_data():
    # (1 | lea) + (1 | school) with school codes global: nested when each school lies
    # in one lea (distinct (lea, school) pairs == distinct schools)
    lea = np.array([0, 0, 0, 1, 1, 2])
    school = np.array([10, 11, 10, 12, 13, 14])
    z = [np.ones((6, 1)), np.ones((6, 1))]
    xy = np.ones((6, 1))
    nested = level_codes(leaf_sums([lea, school], z, xy).leaves)
    np.testing.assert_array_equal(nested.n_nodes, [3, 5])
    np.testing.assert_array_equal(nested.n_codes, [3, 5])
    np.testing.assert_array_equal(nesting_violations(nested), [0, 0])
    # school 12 also in lea 2, in the same block of outer groups
    crossed = level_codes(leaf_sums([lea, np.array([10, 11, 10, 12, 13, 12])], z, xy).leaves)
    np.testing.assert_array_equal(nesting_violations(crossed), [0, 1])
    # ... or in a block of other outer groups: the blocks' counts add up to it
    first = leaf_sums([lea[:5], school[:5]], [zl[:5] for zl in z], xy[:5])
    other = leaf_sums([lea[5:], np.array([12])], [zl[5:] for zl in z], xy[5:])
    parts = [level_codes(first.leaves), level_codes(other.leaves)]
    np.testing.assert_array_equal(nesting_violations(parts[0]), [0, 0])
    np.testing.assert_array_equal(nesting_violations(parts[1]), [0, 0])
    total = 0 + parts[0] + parts[1]
    assert isinstance(total, LevelCodes)
    np.testing.assert_array_equal(total.n_nodes, [3, 5])
    np.testing.assert_array_equal(nesting_violations(total), [0, 1])
    np.testing.assert_array_equal(nesting_violations(parts[1] + parts[0]), [0, 1])


def test_level_codes_count_the_nodes_of_random_trees():
    rng = np.random.default_rng(11)
    codes, z, xy = random_tree_rows(rng, (1, 0, 1), n_outer=4)
    stats = build_stats(leaf_sums(codes, z, xy))
    counts = level_codes(stats.keys[-1])
    np.testing.assert_array_equal(counts.n_nodes, stats.n_nodes)
    # codes restart under each parent in these trees: nodes outnumber codes below
    assert nesting_violations(counts)[0] == 0
    assert np.all(nesting_violations(counts)[1:] > 0)
