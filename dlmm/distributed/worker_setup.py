"""Preloaded by the embedded cluster's worker processes (``dask_setup``).

A Ctrl-C in a terminal reaches every process of the foreground group. The workers
ignore it: the driver receives it too and closes the cluster, so that workers
interrupted mid-task do not print tracebacks of their own.
"""

from __future__ import annotations

import signal
import threading


def dask_setup(worker) -> None:  # noqa: ARG001 - Dask's preload hook
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
