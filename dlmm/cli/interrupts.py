"""Ctrl-C and SIGTERM during a run: raised in the main thread, and remembered.

The signals become exceptions where the main thread is (``KeyboardInterrupt``,
:class:`~dlmm.cli.errors.Terminated`), as Python's own Ctrl-C does, and are also
recorded. Code the run calls may catch such an exception and go on (a broad
``except`` around a library's own work, or an error raised in its place, as
pyarrow turns a signal into ``ArrowCancelled``): the run then still stops at its
next :func:`checkpoint`, before the fit and before anything is written, so an
interrupted run never writes results.

A SIGINT ignored from the start (a shell's background job) stays ignored, as
Python leaves it: such a run is stopped by SIGTERM, not by a terminal's Ctrl-C.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

from .errors import Terminated

_received: list[int] = []


def _on_signal(signum, frame):  # noqa: ARG001 - a signal handler's signature
    _received.append(signum)
    raise KeyboardInterrupt() if signum == signal.SIGINT else Terminated()


def install() -> Callable[[], None]:
    """Handle SIGINT and SIGTERM (main thread only; elsewhere a no-op); returns the
    function that restores the previous handlers and forgets what was received."""
    _received.clear()
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    # A SIGINT ignored from the start stays ignored: POSIX shells start background
    # jobs so, to keep a terminal's Ctrl-C from them (Python itself keeps it ignored).
    handled = [sig for sig in (signal.SIGINT, signal.SIGTERM)
               if signal.getsignal(sig) is not signal.SIG_IGN or sig == signal.SIGTERM]
    old = {sig: signal.signal(sig, _on_signal) for sig in handled}

    def restore() -> None:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        _received.clear()

    return restore


def checkpoint() -> None:
    """Raise the first signal received since :func:`install` again, if any: the run
    stops here even if the first exception was caught on the way."""
    if _received:
        raise KeyboardInterrupt() if _received[0] == signal.SIGINT else Terminated()
