"""A local cluster whose nannies keep restarting their workers: the embedded cluster's.

Dask's ``SpecCluster`` hard-closes a worker's nanny when the scheduler has had no worker
of that name for ``distributed.deploy.lost-worker-timeout`` after a removal (15 s): a
job-queue worker that vanished is then cleaned up. Each removal arms its own timer, and
the check runs against whatever workers the scheduler lists when it fires; a worker
killed twice within the timeout (an out-of-memory kill that recurs, a node's processes
killed together) can have the first removal's timer fire while the nanny is restarting
its worker for the second time, and the nanny is closed although it is alive: the
cluster has one worker less for the rest of the process. On one machine a nanny that is
running is restarting its worker, so :class:`RestartingLocalCluster` closes only a nanny
that is no longer running.
"""

from __future__ import annotations

import asyncio

from distributed import LocalCluster
from distributed.core import Status
from distributed.deploy.cluster import Cluster


class RestartingLocalCluster(LocalCluster):
    """``LocalCluster`` that never closes a running nanny for a lost worker (see the
    module docstring); every option is ``LocalCluster``'s."""

    def _update_worker_status(self, op, msg):
        if op == "remove":
            name = self.scheduler_info["workers"][msg]["name"]

            def close_if_gone():
                nanny = self.workers.get(name)
                if nanny is None or getattr(nanny, "status", None) == Status.running:
                    return  # restarting its worker, or already gone
                if any(w["name"] == name for w in self.scheduler_info["workers"].values()):
                    return
                self._futures.add(asyncio.ensure_future(nanny.close()))
                del self.workers[name]

            import dask
            from dask.utils import parse_timedelta

            delay = parse_timedelta(dask.config.get("distributed.deploy.lost-worker-timeout"))
            asyncio.get_running_loop().call_later(delay, close_if_gone)
        Cluster._update_worker_status(self, op, msg)
