"""A head start for the command's forked workers: the one pass's modules and loop.

The command forks the embedded cluster's workers (:func:`.cluster.connect`): they
begin with dlmm imported. Each then imports the rest of what the one pass runs (Dask's
DataFrame, pyarrow's Parquet reader, numba) and loads the pass's compiled loop, in a
thread, while the driver plans the pass: the first chunk does not wait for them (0.5-2
s on the loaded 2-core machine). The driver arms this module (:func:`arm`) before it
forks: a forked worker finds it armed in the modules it began with, and its preload
(:mod:`dlmm.distributed.worker_setup`) runs :class:`LoadThePass` as the worker starts,
before it joins the scheduler -- not after the cluster is up and a plugin registered
(0.1-0.2 s later, most of the pass's head start on the 2-core machine). A task that
needs one of the modules meanwhile waits for its import, as any import in two threads.
Spawned workers (a small memory limit, or not Linux; a worker a nanny starts again) import
dlmm as their first task arrives, not before (a worker of a small memory limit must not
exceed it before any task: issue 21), and do not get the head start.

A forked worker also inherits the driver's BLAS thread pools (OpenBLAS at one thread
per core), where a spawned one starts with Dask's ``distributed.nanny.pre-spawn-environ``
(``OPENBLAS_NUM_THREADS=1``): the plugin sets its pools to that count, so that two
workers' BLAS calls (the steps' tile products, the effects) do not share the two cores
among four threads (measured at 10^8 rows: outputs 3.6-8.0 s against 2.6-4.5 s).
"""

from __future__ import annotations

import importlib
import sys
import threading

from distributed.diagnostics.plugin import WorkerPlugin

from ..kernels.warm import warm_pass_loop

#: Whether the workers forked now get the head start (:func:`arm`); read by a forked
#: worker's preload, in the copy of this module it began with.
ARMED = False


def arm(armed: bool = True) -> None:
    """Have the workers forked from now on (until ``arm(False)``) load the pass as they
    start."""
    global ARMED
    ARMED = armed


#: What a chunk's task of the one pass imports, in its order.
PASS_MODULES = ("dlmm.distributed.dask_backend", "dlmm.distributed.parquet_pieces",
                "pyarrow.parquet", "dlmm.kernels.crossprod_loops")


#: The interpreter's switch interval (seconds) while :func:`load_the_pass` runs: numba's
#: start is Python that holds the GIL for 0.1-0.4 s, and the worker's event loop (which
#: receives the first chunks) and the first chunk's read each waited up to the default 5 ms
#: for it at every GIL hand-over.
SWITCH_INTERVAL = 0.0002


def load_the_pass() -> None:
    """Import :data:`PASS_MODULES` and load the pass's compiled loop; errors are left to
    the first chunk, which does the same."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(min(interval, SWITCH_INTERVAL))
    try:
        for name in PASS_MODULES:
            importlib.import_module(name)
        warm_pass_loop()
    except Exception:  # noqa: BLE001 - a head start only
        pass
    finally:
        sys.setswitchinterval(interval)


def spawned_blas_threads() -> int:
    """The BLAS threads of a spawned Dask worker (``distributed.nanny.pre-spawn-environ``'s
    ``OPENBLAS_NUM_THREADS``, else ``OMP_NUM_THREADS``; 1 if neither is set)."""
    import dask

    environ = dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {}
    for key in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        try:
            return max(1, int(environ[key]))
        except (KeyError, TypeError, ValueError):
            continue
    return 1


class LoadThePass(WorkerPlugin):
    """Sets the worker's BLAS threads as a spawned worker's, then runs
    :func:`load_the_pass` in a thread of its own, as a worker starts (from its preload,
    when armed; or as the plugin is registered on a running worker)."""

    name = "dlmm-load-pass"

    def setup(self, worker) -> None:  # noqa: ARG002 - Dask's plugin hook
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=spawned_blas_threads())  # for the process's life
        threading.Thread(target=load_the_pass, name=self.name, daemon=True).start()
