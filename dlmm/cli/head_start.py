"""A head start for the command's forked workers: the one pass's modules, loop and memory.

The command forks the embedded cluster's workers (:func:`.cluster.connect`): they
begin with what the driver has loaded. The driver arms this module (:func:`arm`) just
before it forks, and arming loads, in the driver, the rest of what the one pass runs
(Dask's DataFrame, pyarrow's Parquet reader, numba) and the pass's compiled loop
(:func:`load_the_pass`): every forked worker begins with them in the memory it copies.
Loaded by each worker instead (as it started, in a thread), the loop's load (0.3 s of
CPU a worker, numba's start) was still under way when the first chunks arrived on the
shared 2-core machine (traced at loads 1.6-2.6: it ended 0.25-0.53 s into the pass, a
worker took its first chunk up to 0.22 s after it was asked, and read it beside the
load), and the driver loads it once. A forked worker finds the module armed in the modules it
began with, and its preload (:mod:`dlmm.distributed.worker_setup`) runs
:class:`LoadThePass` as the worker starts, before it joins the scheduler: in a thread,
it touches the pages of pyarrow's memory pool that the first chunk's read will fill
(:func:`touch_the_pool`; their first touch took 0.13-0.2 s of CPU, the kernel's, in that
read when huge pages had to be found), while the driver plans the pass. A task that
needs one of the modules meanwhile waits for its import, as any import in two threads.
Spawned workers (a small memory limit, or not Linux; a worker a nanny starts again) import
dlmm as their first task arrives, not before (a worker of a small memory limit must not
exceed it before any task: issue 21), and do not get the head start.

A forked worker also inherits the driver's BLAS thread pools; its preload sets them as
a spawned worker's (:func:`dlmm.distributed.worker_setup.blas_as_spawned`).
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
    """Have the workers forked from now on (until ``arm(False)``) begin with the pass
    loaded: armed, this process loads it first (:func:`load_the_pass`, here, before any
    fork), so that each forked worker begins with the loop in the memory it copies."""
    global ARMED
    if armed and not ARMED:
        load_the_pass()
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


#: Bytes of pyarrow's memory pool a forked worker touches as it starts: what the read of
#: a chunk of 10^6 rows of six float64 columns holds (48 MB) and its buffers, rounded up.
POOL_BYTES = 96 << 20


def touch_the_pool(nbytes: int = POOL_BYTES) -> None:
    """Have pyarrow's memory pool hold ``nbytes`` of pages the kernel has given this
    process: allocated in 8 MB buffers (a column of a chunk), a byte of each page
    written, then freed to the pool, which keeps them for the reads that follow."""
    import numpy as np
    import pyarrow as pa

    buffers = [pa.allocate_buffer(8 << 20) for _ in range(max(1, nbytes >> 23))]
    for buffer in buffers:
        np.frombuffer(buffer, dtype=np.uint8)[::4096] = 1
    del buffers


def head_start() -> None:
    """A forked worker's start (in a thread): :func:`load_the_pass` (nothing left to do
    when the driver loaded it before the fork), then :func:`touch_the_pool`."""
    load_the_pass()
    try:
        touch_the_pool()
    except Exception:  # noqa: BLE001 - a head start only
        pass


class LoadThePass(WorkerPlugin):
    """Runs :func:`head_start` in a thread of its own, as a forked worker starts (from
    its preload, when armed)."""

    name = "dlmm-load-pass"

    def setup(self, worker) -> None:  # noqa: ARG002 - Dask's plugin hook
        threading.Thread(target=head_start, name=self.name, daemon=True).start()
