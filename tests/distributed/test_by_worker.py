"""``dlmm/distributed/by_worker.py``: a map-reduce as one task per worker, summed in the
handles' order."""

from __future__ import annotations

from dlmm.distributed.by_worker import group_by_holder, in_handle_order, map_each


def test_groups_follow_the_first_holder_and_keep_positions_in_order():
    keys = ["a", "b", "c", "d", "e"]
    holders = {"a": ["w2"], "b": ["w1", "w2"], "c": ["w2"], "e": []}
    groups = group_by_holder(keys, holders)
    # b has two copies: the first address in order; d and e are held by no worker yet
    assert groups == [("w2", [0, 2]), ("w1", [1]), (None, [3, 4])]


def test_results_go_back_to_their_handles_positions():
    groups = [("w2", [0, 2]), ("w1", [1]), (None, [3, 4])]
    lists = [map_each(lambda v, k: v * k, [10, 30], 2), ["b"], ["d", "e"]]
    assert lists[0] == [20, 60]
    assert in_handle_order(groups, lists, 5) == [20, "b", 60, "d", "e"]
