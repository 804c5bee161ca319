"""Preloaded by the embedded cluster's worker processes (``dask_setup``, ``dask_teardown``).

A forked worker's BLAS pools are set as a spawned worker's (:func:`blas_as_spawned`).
A worker the command forked begins with the driver's modules: when the driver armed its
head start (``dlmm.cli.head_start.ARMED``), the worker starts loading the one pass as it
starts, before it joins the scheduler. The module is looked up among those the process
began with, not imported: a spawned worker imports nothing here.

A Ctrl-C in a terminal reaches every process of the foreground group. The workers
ignore it: the driver receives it too and closes the cluster, so that workers
interrupted mid-task do not print tracebacks of their own.

A worker that has closed ends its process at once (``os._exit`` as its exit begins):
the interpreter's own teardown of a worker that ran dlmm (numba's compiled code,
hundreds of MB of blocks) took 2-3 s on the 2-core machine, and the nanny waits for
it, then kills it after 4 s, so that every run ended that much later. Its work is done
and its folder released by then; its output streams are flushed first.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading


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


def blas_as_spawned() -> None:
    """A forked worker (the command's; a program's cluster where Dask's
    ``distributed.worker.multiprocessing-method`` is ``fork``) begins with its parent's
    BLAS thread pools, one thread per core, where a spawned one starts with Dask's
    ``distributed.nanny.pre-spawn-environ`` (``OPENBLAS_NUM_THREADS=1``): its pools are
    set to that count, so that the workers' BLAS calls (the steps' tile products, the
    effects) do not share the cores among more threads than there are (measured at
    10^8 rows: the outputs 3.6-8.0 s against 2.6-4.5 s). A worker that has loaded no
    numpy yet (a spawned one) has no pools to set, and imports nothing here."""
    if "numpy" not in sys.modules:
        return
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=spawned_blas_threads())  # for the process's life


def dask_setup(worker) -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    blas_as_spawned()
    head = sys.modules.get("dlmm.cli.head_start")
    if head is not None and getattr(head, "ARMED", False):
        head.LoadThePass().setup(worker)


def _exit_now() -> None:
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(0)


def dask_teardown(worker) -> None:  # noqa: ARG001 - Dask's preload hook
    # Registered last, so run first at the process's exit: nothing after it runs.
    atexit.register(_exit_now)
