"""What a wait on the cluster checks while it waits (:meth:`DaskBackend._await
<dlmm.distributed.dask_backend.DaskBackend._await>`): the scheduler connection and its
answers within a timeout, workers paused at their memory limit, workers restarted for
memory, and no workers left; each raised in words (:mod:`.faults`).
"""

from __future__ import annotations

import time
from typing import Any

import dask
from distributed import Client, LocalCluster

from .faults import SchedulerLost, WorkerMemoryError, WorkersLost

#: How often a wait looks at the cluster (seconds).
_POLL_SECONDS = 0.5


def _scheduler_timeout() -> float:
    """How long the scheduler may take to answer a question (``dlmm.scheduler-timeout``)."""
    return float(dask.config.get("dlmm.scheduler-timeout", 30))


def _ask(client: Client, method: str, **kwargs) -> Any:
    """The answer of the scheduler's ``method`` handler (``identity``, ``events``,
    ``run_function``...) within :func:`_scheduler_timeout` seconds, else
    ``TimeoutError``: a stopped scheduler keeps the connection open and answers
    nothing, and Dask's own calls would wait for it forever."""
    return client.sync(getattr(client.scheduler, method), callback_timeout=_scheduler_timeout(),
                       **kwargs)


class _Watch:
    """What a wait checks while it waits: the scheduler connection and its answers, paused
    workers, and workers restarted for memory."""

    def __init__(self, backend: Any):  # a DaskBackend
        self.backend = backend
        self.client = backend.client
        self.started = time.time()
        self.timeout = float(dask.config.get("dlmm.paused-timeout", 60))
        #: Restarts of a worker for memory since the last progress that end the wait:
        #: one more than Dask's KilledWorker needs, per worker seen.
        self.allowed = int(dask.config.get("distributed.scheduler.allowed-failures", 3)) + 2
        #: A local cluster's workers are never waited for (a batch queue's may be).
        self.local = isinstance(getattr(self.client, "cluster", None), LocalCluster)
        self.last_look = time.monotonic()
        self.last_done = -1
        self.stuck_since: float | None = None
        self.empty_since: float | None = None
        self.restarts_then: int | None = None  # memory restarts at the last progress
        self.most_workers = 1

    def scheduler_gone(self) -> bool:
        return self.client.status not in ("running", "newly-created")

    def _where(self) -> str:
        try:
            address = self.client.scheduler.address
        except Exception:  # noqa: BLE001 - informational
            address = None
        return f" at {address}" if address else ""

    def lost(self) -> SchedulerLost:
        return SchedulerLost(
            f"the connection to the Dask scheduler{self._where()} was lost (it stopped, or "
            "the network failed); its work is gone: run again when it is back")

    def silent(self) -> SchedulerLost:
        return SchedulerLost(
            f"the Dask scheduler{self._where()} has not answered for "
            f"{_scheduler_timeout():g} s (stopped, hung or overloaded); its work is "
            "abandoned: run again when it answers")

    def ask(self, method: str, **kwargs) -> Any:
        """:func:`_ask`; a scheduler that does not answer in time is :meth:`silent`."""
        try:
            return _ask(self.client, method, **kwargs)
        except TimeoutError:
            if self.scheduler_gone():
                raise self.lost() from None
            raise self.silent() from None

    def memory_restarts(self, since: float | None = None) -> int:
        """Workers restarted by their nanny for memory (since ``since``, a time of the
        scheduler's clock; default: ever)."""
        events = self.ask("events", topic="worker-restart-memory")
        return sum(1 for when, _ in events if since is None or when >= since)

    def memory_error(self, pending: list, restarts: int) -> WorkerMemoryError:
        """Workers restarted ``restarts`` times for memory and no progress."""
        return self.backend._memory_error(
            pending, f"workers were restarted {restarts} time{'s' if restarts != 1 else ''} "
            "for exceeding it")

    def check(self, done: int, pending: list) -> None:
        """Raise if the scheduler is gone or silent, workers were restarted for memory or
        are gone, or the workers stayed paused too long."""
        if self.scheduler_gone():
            raise self.lost()
        now = time.monotonic()
        if done != self.last_done:
            self.last_done, self.stuck_since, self.restarts_then = done, None, None
        if now - self.last_look < 2 * _POLL_SECONDS:
            return
        self.last_look = now
        try:
            workers = self.ask("identity", n_workers=-1)["workers"]
            restarts = self.memory_restarts()
        except SchedulerLost:
            raise
        except Exception:  # noqa: BLE001 - the connection went: the next look says so
            if self.scheduler_gone():
                raise self.lost() from None
            return
        if self.restarts_then is None:
            self.restarts_then = restarts
        restarted = restarts - self.restarts_then  # for memory, since the last progress
        self.most_workers = max(self.most_workers, len(workers))
        if restarted >= self.allowed * self.most_workers:
            raise self.memory_error(pending, restarted)
        if not workers:  # none left (a nanny may give up restarting its worker)
            if self.empty_since is None:
                self.empty_since = now
            elif now - self.empty_since >= self.timeout:
                if restarted:
                    raise self.memory_error(pending, restarted)
                if self.local:
                    raise WorkersLost(
                        f"no worker of the local Dask cluster has been left for "
                        f"{now - self.empty_since:.0f} s; see the workers' logs (--verbose)")
            return
        self.empty_since = None
        statuses = [w.get("status") for w in workers.values()]
        if any(s != "paused" for s in statuses):
            self.stuck_since = None
            return
        if self.stuck_since is None:
            self.stuck_since = now
            return
        if now - self.stuck_since >= self.timeout:
            raise self.backend._memory_error(
                pending, f"every worker has been paused at its memory limit for "
                f"{now - self.stuck_since:.0f} s")
