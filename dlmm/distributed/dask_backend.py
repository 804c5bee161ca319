"""Dask backend: chunks are the partitions of a Dask DataFrame on a cluster.

Every result stays on the worker that computed it, as a ``distributed``
future; what the driver receives per optimizer step is one small object per
block. Futures keep their lineage, so a lost worker's results are recomputed
from the source data by the scheduler.

Which cluster: the ``client`` given, else the current ``distributed`` client
(``distributed.get_client()``), else an embedded local cluster started once per
process (see :func:`embedded_client`).
"""

from __future__ import annotations

import atexit
import logging
import operator
import os
import re
import sys
import threading
from collections.abc import Callable
from typing import Any

import dask
import dask.dataframe as dd
import pandas as pd
from distributed import Client, LocalCluster

from .base import Backend

logger = logging.getLogger("dlmm")

_EMBEDDED: dict[str, Any] = {}
_LOCK = threading.Lock()


def _main_is_guarded() -> bool:
    """Whether worker processes can start from this program.

    Worker processes are spawned, and a spawned process imports the parent's
    main script again: a script without an ``if __name__ == "__main__":`` guard
    would run its fit again in every worker and fail. Interactive sessions,
    notebooks and ``python -c`` have no main file and are safe.
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if not path:
        return True
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            source = handle.read()
    except OSError:
        return True
    return re.search(r"__name__\s*==\s*['\"]__main__['\"]", source) is not None


def embedded_client(
    n_workers: int | None = None,
    threads_per_worker: int | None = None,
    memory_limit: str | float | None = "auto",
) -> Client:
    """The process-wide embedded local cluster, started on first use.

    Worker processes (not threads): the one pass runs pandas and formulaic
    code that holds the GIL, so processes use every core. By default one
    single-threaded worker per core (at most 8), listening on 127.0.0.1 only.
    A script without an ``if __name__ == "__main__":`` guard cannot start
    worker processes (each would run the script again), so there the cluster
    runs one worker with a thread per core instead, and says so in the log.
    It is closed when the Python process exits.
    """
    with _LOCK:
        client = _EMBEDDED.get("client")
        if client is not None and client.status == "running":
            return client
        cores = os.cpu_count() or 1
        processes = _main_is_guarded()
        if not processes:
            logger.warning(
                "dlmm: the embedded Dask cluster runs threads, not worker processes, because "
                "%s has no `if __name__ == \"__main__\":` guard; add one to use processes",
                getattr(sys.modules.get("__main__"), "__file__", "the main script"),
            )
            n_workers, threads_per_worker = 1, threads_per_worker or max(1, min(cores, 8))
        if n_workers is None:
            n_workers = max(1, min(cores, 8))
        if threads_per_worker is None:
            threads_per_worker = 1
        # The dashboard (with bokeh) or, without it, the HTTP server for health and
        # metrics: on loopback, on a free port.
        dashboard = "127.0.0.1:0"
        network = {"host": "127.0.0.1"} if processes else {}  # threads talk in process
        cluster = LocalCluster(
            n_workers=n_workers,
            threads_per_worker=threads_per_worker,
            processes=processes,
            dashboard_address=dashboard,
            memory_limit=memory_limit,
            **network,
        )
        client = Client(cluster, set_as_default=False)
        _EMBEDDED.update(client=client, cluster=cluster)
        return client


def close_embedded() -> None:
    """Stop the embedded cluster if one was started."""
    with _LOCK:
        client = _EMBEDDED.pop("client", None)
        cluster = _EMBEDDED.pop("cluster", None)
    if client is not None:
        client.close()
    if cluster is not None:
        cluster.close()


atexit.register(close_embedded)


def resolve_client(client: Client | None) -> Client:
    """The client given, else the current one, else the embedded cluster's."""
    if client is not None:
        return client
    try:
        from distributed import get_client

        return get_client()
    except ValueError:
        return embedded_client()


def _empty_like(frame):
    return frame.iloc[:0]


class DaskBackend(Backend):
    """Runs the fit on a ``distributed`` cluster over a Dask DataFrame."""

    name = "dask"

    def __init__(self, frame: dd.DataFrame, client: Client | None = None):
        self.frame = frame
        self.client = resolve_client(client)

    @property
    def columns(self) -> list[str]:
        return [str(c) for c in self.frame.columns]

    def select(self, columns: list[str]) -> DaskBackend:
        return DaskBackend(self.frame[columns], self.client)

    def sample(self, n_rows: int) -> pd.DataFrame:
        parts = self.frame.npartitions
        for k in (1, min(parts, 8), parts):
            lazy = self.frame.partitions[:k].map_partitions(lambda d: d.head(n_rows))
            frame = self.client.compute(lazy).result().head(n_rows)
            if len(frame) or k == parts:
                return frame
        return frame

    def distinct(self, columns: list[str]) -> dict[str, list]:
        if not columns:
            return {}
        lazy = [self.frame[c].dropna().drop_duplicates(split_out=1) for c in columns]
        values = self.client.gather(self.client.compute(lazy))
        return {c: sorted(pd.Series(v).tolist()) for c, v in zip(columns, values)}

    @property
    def n_chunks(self) -> int:
        return self.frame.npartitions

    def map_chunks(self, func: Callable[[pd.DataFrame], Any],
                   progress: Callable[[int, int], None] | None = None) -> list[Any]:
        parts = self.frame.to_delayed()
        tasks = [dask.delayed(func, pure=False)(p) for p in parts]
        futures = self.client.compute(tasks)
        if progress is not None:
            from distributed import as_completed

            for done, _ in enumerate(as_completed(futures, loop=self.client.loop), start=1):
                progress(done, len(futures))
        return futures

    def map(self, func: Callable, handles: list[Any], *args) -> list[Any]:
        if not handles:
            return []
        # One message for all tasks; each runs where its input is.
        return self.client.map(func, handles, *[[a] * len(handles) for a in args], pure=False)

    def _workers(self) -> list[str]:
        return sorted(self.client.scheduler_info(n_workers=-1)["workers"])

    @property
    def parallelism(self) -> int:
        info = self.client.scheduler_info(n_workers=-1)["workers"]
        return max(1, sum(int(w.get("nthreads", 1)) for w in info.values()))

    def _spread(self, j: int, workers: list[str]) -> dict:
        # A placement hint, not a pin: a lost worker's blocks may be rebuilt elsewhere.
        if not workers:
            return {}
        return {"workers": [workers[j % len(workers)]], "allow_other_workers": True}

    def combine(self, groups, func):
        workers = self._workers()
        return [self.client.submit(func, list(g), pure=False, **self._spread(j, workers))
                for j, g in enumerate(groups)]

    def regroup(self, handles, n_out, split, build):
        splits = self.client.map(split, handles, [n_out] * len(handles), pure=False)
        workers = self._workers()
        out = []
        for j in range(n_out):
            pieces = [self.client.submit(operator.getitem, s, j, pure=False) for s in splits]
            out.append(self.client.submit(build, pieces, pure=False,
                                          **self._spread(j, workers)))
        return out

    def to_frame(self, handles: list[Any], meta: pd.DataFrame):
        if handles:  # the real dtypes (e.g. of an index of labels) from an empty slice
            meta = self.client.submit(_empty_like, handles[0], pure=False).result()
        return dd.from_delayed(handles, meta=meta, verify_meta=False)

    def map_frame(self, func: Callable[..., Any], meta: Any, *shared: Any):
        futures = [self.client.scatter(obj, broadcast=True) for obj in shared]
        return self.frame.map_partitions(func, *futures, meta=meta)

    def gather(self, handles: list[Any]) -> list[Any]:
        return self.client.gather(handles)

    def release(self, handles: list[Any]) -> None:
        for h in handles:
            release = getattr(h, "release", None)
            if release is not None:
                release()

    @property
    def dashboard_link(self) -> str | None:
        try:
            return self.client.dashboard_link
        except Exception:  # no dashboard (bokeh missing)
            return None
