"""What follows each chunk of the one pass runs as that chunk is done, beside the chunks
still read (issue 27: the pass's end waited a round trip for the chunks' summaries); on
Parquet pieces, what follows a worker's own run of pieces is one task (issue 27: a task
a chunk cost the worker's event loop and the scheduler a few ms each, taken from the
reads on a busy machine)."""

from __future__ import annotations

import uuid

import dask.dataframe as dd
import pandas as pd

from dlmm.distributed import piece_tasks
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
    assert backend.gather(after) == [[10 * j] for j in range(N_CHUNKS)]


def _rows(frame: pd.DataFrame) -> list[int]:
    return frame["j"].tolist()


def _first(rows: list[int]) -> int:
    return rows[0]


def test_what_follows_a_workers_run_of_pieces_is_one_task(dask_client, tmp_path):
    n_files = 40  # two workers: runs of 20 pieces, four a task, the last 2 of each free
    for j in range(n_files):
        pd.DataFrame({"j": [j, j]}).to_parquet(tmp_path / f"part-{j:03d}.parquet",
                                               index=False)
    backend = DaskBackend(dd.read_parquet(str(tmp_path)), dask_client)
    chunks, after = backend.map_chunks_then(_rows, _first, merge=lambda runs: sum(runs, []))
    # a then per worker's own run and per free piece, not one per chunk
    tail = int(20 * piece_tasks.FREE_TAIL)
    assert len(chunks) == 2 * (-(-(20 - tail) // piece_tasks.TASK_PIECES) + tail)
    assert len(after) == 2 * (1 + tail)
    firsts = [j for run in backend.gather(after) for j in run]
    rows = backend.gather(chunks)
    assert firsts == [r[0] for r in rows]  # then of each chunk, in the chunks' order
    assert [j for r in rows for j in r] == [j for j in range(n_files) for _ in range(2)]


def test_a_single_workers_run_is_followed_whole(tmp_path):
    """One worker: its whole run of pieces (no free tail) is followed in one task, every
    chunk's then in it."""
    from distributed import Client, LocalCluster

    for j in range(20):
        pd.DataFrame({"j": [j]}).to_parquet(tmp_path / f"part-{j:03d}.parquet", index=False)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        backend = DaskBackend(dd.read_parquet(str(tmp_path)), client)
        chunks, after = backend.map_chunks_then(_rows, _first, merge=lambda runs: sum(runs, []))
        assert len(chunks) == 20 // piece_tasks.TASK_PIECES and len(after) == 1
        assert backend.gather(after) == [[r[0] for r in backend.gather(chunks)]]
        assert [j for r in backend.gather(chunks) for j in r] == list(range(20))
