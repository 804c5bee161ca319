"""What follows each chunk of the one pass runs as that chunk is done, beside the chunks
still read (issue 27: the pass's end waited a round trip for the chunks' summaries)."""

from __future__ import annotations

import uuid

import dask.dataframe as dd
import pandas as pd

from dlmm.distributed.dask_backend import DaskBackend

N_CHUNKS = 6


def _chunk(frame: pd.DataFrame, event: str) -> int:
    """The chunk's index; the last chunk first waits (at most 30 s) for a ``then`` of
    another chunk to have run, and fails if none has."""
    from distributed import Event

    j = int(frame["j"].iloc[0])
    if j == N_CHUNKS - 1 and not Event(event).wait(timeout=30):
        raise AssertionError("no chunk's then ran before the last chunk was done")
    return j


def _then(j: int, event: str) -> int:
    from distributed import Event

    Event(event).set()
    return 10 * j


def test_each_then_runs_as_its_chunk_is_done(dask_client):
    frame = dd.from_pandas(pd.DataFrame({"j": range(N_CHUNKS)}), npartitions=N_CHUNKS)
    backend = DaskBackend(frame, dask_client)
    event = f"dlmm-test-then-{uuid.uuid4().hex}"
    seen = []
    chunks, after = backend.map_chunks_then(lambda f: _chunk(f, event),
                                            lambda j: _then(j, event),
                                            lambda done, total: seen.append((done, total)))
    assert seen[-1] == (N_CHUNKS, N_CHUNKS)  # progress as chunks finish, all of them
    assert backend.gather(chunks) == list(range(N_CHUNKS))
    assert backend.gather(after) == [10 * j for j in range(N_CHUNKS)]
