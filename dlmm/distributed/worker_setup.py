"""Preloaded by the embedded cluster's worker processes (``dask_setup``, ``dask_teardown``).

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


def dask_setup(worker) -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
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
