"""Blocks are built where their chunks are (issue 27): the one pass's chunks of a run,
read on one worker, are combined there, with nothing sent between workers."""

from __future__ import annotations

import dask.dataframe as dd
import numpy as np
import pandas as pd
from distributed import wait

from dlmm.distributed.dask_backend import DaskBackend


def _total(parts):
    return int(sum(int(np.sum(p)) for p in parts))


def test_blocks_are_built_where_their_chunks_are(dask_client):
    backend = DaskBackend(dd.from_pandas(pd.DataFrame({"a": [1.0]}), npartitions=1),
                          dask_client)
    workers = sorted(dask_client.scheduler_info(n_workers=-1)["workers"])
    assert len(workers) == 2
    # Chunks 0 and 1 on the first worker, 2 and 3 on the second; the first block is made
    # of the second worker's chunks (an even spread would build it on the first).
    chunks = [dask_client.submit(np.arange, 10 + j, workers=[workers[j // 2]],
                                 allow_other_workers=False, pure=False) for j in range(4)]
    wait(chunks)
    blocks = backend.combine([[chunks[2], chunks[3]], [chunks[0], chunks[1]]], _total)
    wait(blocks)
    assert [b.result() for b in blocks] == [sum(range(12)) + sum(range(13)),
                                            sum(range(10)) + sum(range(11))]
    who = dask_client.who_has(blocks + chunks)
    assert list(who[blocks[0].key]) == [workers[1]]
    assert list(who[blocks[1].key]) == [workers[0]]
    assert all(len(who[c.key]) == 1 for c in chunks)  # no chunk was copied


def test_blocks_are_asked_in_one_message_per_worker(dask_client, monkeypatch):
    """Twenty blocks were twenty ``Client.submit`` calls, a message each (1 ms of the
    driver apiece at the pass's end): now one ``Client.map`` per worker."""
    backend = DaskBackend(dd.from_pandas(pd.DataFrame({"a": [1.0]}), npartitions=1),
                          dask_client)
    workers = sorted(dask_client.scheduler_info(n_workers=-1)["workers"])
    chunks = [dask_client.submit(np.arange, 10 + j, workers=[workers[j // 2]],
                                 allow_other_workers=False, pure=False) for j in range(4)]
    wait(chunks)
    calls = []
    real_map, real_submit = dask_client.map, dask_client.submit

    def spy_map(func, *iterables, **kwargs):
        calls.append(("map", len(iterables[0]), tuple(kwargs.get("workers") or ())))
        return real_map(func, *iterables, **kwargs)

    def spy_submit(*args, **kwargs):
        calls.append(("submit",))
        return real_submit(*args, **kwargs)

    monkeypatch.setattr(dask_client, "map", spy_map)
    monkeypatch.setattr(dask_client, "submit", spy_submit)
    groups = [[chunks[2]], [chunks[0], chunks[1]], [chunks[3]], [chunks[1]]]
    blocks = backend.combine(groups, _total)
    wait(blocks)
    monkeypatch.undo()
    assert sorted(calls) == [("map", 2, (workers[0],)), ("map", 2, (workers[1],))]
    assert [b.result() for b in blocks] == [sum(range(12)), sum(range(10)) + sum(range(11)),
                                            sum(range(13)), sum(range(11))]
    who = dask_client.who_has(blocks)
    assert [list(who[b.key]) for b in blocks] == [[workers[1]], [workers[0]], [workers[1]],
                                                  [workers[0]]]


def test_a_worker_builds_at_most_its_share_of_the_blocks(dask_client):
    """Chunks read by one worker (the free tail of the other's run taken while it was
    slow) must not leave it more blocks than the other: every step maps over them."""
    backend = DaskBackend(dd.from_pandas(pd.DataFrame({"a": [1.0]}), npartitions=1),
                          dask_client)
    workers = sorted(dask_client.scheduler_info(n_workers=-1)["workers"])
    chunks = [dask_client.submit(np.arange, 10 + j, workers=[workers[0]],
                                 allow_other_workers=False, pure=False) for j in range(4)]
    wait(chunks)
    blocks = backend.combine([[c] for c in chunks], _total)
    wait(blocks)
    assert [b.result() for b in blocks] == [sum(range(10 + j)) for j in range(4)]
    who = dask_client.who_has(blocks)
    assert sorted(w for b in blocks for w in who[b.key]) == [workers[0], workers[0],
                                                            workers[1], workers[1]]
