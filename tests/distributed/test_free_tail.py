"""The tail of each worker's run of Parquet pieces goes to whichever worker is idle
(issue 27: with work stealing off, a worker slower than the other, sharing the cores,
left the other idle at the pass's end for 0.1-1 s)."""

from __future__ import annotations

import threading

import dask
import dask.dataframe as dd
import pandas as pd
import pytest
from distributed import Client, LocalCluster, get_worker, wait

from dlmm.distributed import piece_tasks
from dlmm.distributed.dask_backend import DaskBackend

N_FILES = 20  # two workers: runs of ten pieces, the last of each free
STUCK = threading.Event()  # the first worker's first piece waits for it (same process)


def _chunk(frame: pd.DataFrame) -> tuple[int, str]:
    j = int(frame["j"].iloc[0])
    if j == 0 and not STUCK.wait(timeout=60):
        raise AssertionError("the first piece was never let go")
    return j, get_worker().address


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("free-tail")
    for j in range(N_FILES):
        pd.DataFrame({"j": [j] * 3, "x": [0.5, 1.5, 2.5]}).to_parquet(
            path / f"part-{j:03d}.parquet", index=False)
    return path


def test_a_busy_workers_tail_is_read_by_the_idle_one(folder):
    assert piece_tasks.FREE_TAIL == 0.1
    with dask.config.set({"distributed.scheduler.work-stealing": False}), \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                         dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
        first, second = sorted(client.scheduler_info(n_workers=-1)["workers"])
        backend = DaskBackend(dd.read_parquet(str(folder)), client)
        try:
            futures = backend.map_chunks(_chunk)
            # the first worker is held on its first piece: all but its own nine pieces
            # (1-8 wait behind piece 0) are read by the second worker meanwhile
            rest = [futures[j] for j in [9] + list(range(10, N_FILES))]
            wait(rest, timeout=20)
            assert all(f.status == "finished" for f in rest)
            assert [f.result() for f in rest] == [(j, second)
                                                  for j in [9] + list(range(10, N_FILES))]
        finally:
            STUCK.set()
        assert [f.result()[0] for f in futures] == list(range(N_FILES))
        assert {f.result()[1] for f in futures[:9]} == {first}


def _taken(free: list[list[int]], early: int) -> tuple[list[int], list[int]]:
    """The free pieces each of two workers reads when the first runs out of its own
    pieces ``early`` free pieces before the second, then they take turns (the
    scheduler hands the free tasks out in their order to whichever is idle)."""
    first, second = [], []
    for k, (j,) in enumerate(free):
        (first if k < early or (k - early) % 2 == 0 else second).append(j)
    return sorted(first), sorted(second)


def test_free_tails_are_asked_so_that_few_pieces_change_worker():
    """Two workers done at once read their own tails; one done early reads the other's
    tail from its far end: the pieces read by the other worker (moved at the pass's end
    to their block's worker) are a run at one end of a tail, not every other piece."""
    plan = piece_tasks.plan_pieces(100, ["a", "b"], merged=True)
    tail_a, tail_b = list(range(45, 50)), list(range(95, 100))
    assert sorted(j for (j,) in plan.free) == tail_a + tail_b
    assert _taken(plan.free, 0) == (tail_a, tail_b)
    for early in range(1, len(plan.free) + 1):
        first, second = _taken(plan.free, early)
        moved = sorted(set(first) & set(tail_b))  # the second run's pieces the first read
        assert moved == tail_b[len(tail_b) - len(moved):], (early, first, second)
