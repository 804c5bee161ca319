"""Blocks built from whole chunks are summarized from the chunks' summaries (issue 27: a
task per block and a round trip more at the pass's end, on a busy 2-core machine); the
numbers are those of the blocks themselves and of the data."""

from __future__ import annotations

import dask.dataframe as dd
import numpy as np
import pytest

import dlmm
from dlmm.distributed.dask_backend import DaskBackend
from dlmm.structure import grouped
from tests.simulate import grouped_data

FILES = 6


@pytest.fixture(scope="module")
def data():
    return grouped_data(n_groups=90, per_group=(3, 14), re_cov=np.array([[1, 0.3], [0.3, 0.5]]),
                        seed=11)


@pytest.fixture(scope="module")
def passed(data, dask_client, tmp_path_factory):
    """The pass's statistics over files of whole groups, and the functions it mapped."""
    folder = tmp_path_factory.mktemp("block-summaries")
    for j, groups in enumerate(np.array_split(np.unique(data["g"]), FILES)):
        data[data["g"].isin(groups)].to_parquet(folder / f"part-{j:03d}.parquet", index=False)
    mapped = []
    original = DaskBackend.map

    def map_(self, func, handles, *args):
        mapped.append(getattr(func, "__name__", repr(func)))
        return original(self, func, handles, *args)

    model = dlmm.mixedlm("y ~ x1 + x2", dd.read_parquet(str(folder)), groups="g",
                         re_formula="~x1")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DaskBackend, "map", map_)
        model.prepare(client=dask_client)
    stats = model._stats
    stats = getattr(stats, "inner", stats)  # (behind the centring's shifts)
    return stats, mapped


def test_no_task_summarizes_blocks_of_whole_chunks(passed):
    _, mapped = passed
    assert "_block_summary" not in mapped, mapped


def test_the_summaries_are_the_blocks_and_the_data(passed, data):
    stats, _ = passed
    assert isinstance(stats, grouped.GroupedStatistics) and not stats.shuffled
    sizes = data.groupby("g").size()
    assert stats.n_groups == len(sizes)
    assert (stats.group_size_min, stats.group_size_max) == (sizes.min(), sizes.max())
    blocks = stats.backend.gather(stats.blocks)
    assert stats.block_bytes == sum(b.nbytes for b in blocks)
    assert sum(b.n_groups for b in blocks) == len(sizes)
    np.testing.assert_array_equal(np.concatenate([b.n for b in blocks]), sizes.to_numpy())
