"""Ctrl-C and SIGTERM during a run: raised in the main thread, and remembered.

The signals become exceptions where the main thread is (``KeyboardInterrupt``,
:class:`~dlmm.cli.errors.Terminated`), as Python's own Ctrl-C does, and are also
recorded. Code the run calls may catch such an exception and go on (a broad
``except`` around a library's own work, or an error raised in its place, as
pyarrow turns a signal into ``ArrowCancelled``): the run then still stops at its
next :func:`checkpoint`, before the fit and before anything is written, so an
interrupted run never writes results.

A signal can also land where Python cannot raise: in a garbage collector's
callback or a ``__del__`` (Dask registers such callbacks), where the exception is
printed as "Exception ignored in ..." with a traceback and dropped; or in code that
``eval`` or ``exec`` run from a string (``collections.namedtuple`` does), where a
``KeyboardInterrupt`` passing out makes CPython (3.11) end the process by SIGINT
at exit even once it is caught (exit status -2, not 130). In either case the
signal is sent again, from another thread, once the main thread has left that
code (:func:`_send_again`), silently, and again every :data:`RESEND_SECONDS` until the
handler has run: a signal that lands just before the main thread blocks (in a lock's
wait, after its last look at pending signals) does not end that wait, and would be
raised only when the wait ends.

A SIGINT ignored from the start (a shell's background job) stays ignored, as
Python leaves it: such a run is stopped by SIGTERM, not by a terminal's Ctrl-C.
"""

from __future__ import annotations

import _thread
import os
import signal
import sys
import threading
import time
import types
from collections.abc import Callable

from .errors import Terminated

_received: list[int] = []

#: How long a thread of :func:`_send_again` waits for the handler to run before it sends
#: the signal once more (the handler's runs are counted in ``_handled``).
RESEND_SECONDS = 0.02
_handled = [0]

#: Held by a thread of :func:`_send_again` while it decides to send and sends, and by
#: ``restore`` while it stops the sending; ``_senders`` counts those not yet done.
_sending = _thread.allocate_lock()
_senders = [0]
_installed = [False]
#: The frame that called :func:`install`: the run's own (see :func:`_string_code`).
_boundary: list = [None]


def _on_signal(signum, frame):
    _handled[0] += 1
    _received.append(signum)
    inside = _string_code(frame)
    if inside is not None:  # raised in there, it would end the process by SIGINT
        _later(signum, inside)
        return
    raise KeyboardInterrupt() if signum == signal.SIGINT else Terminated()


def _string_code(frame) -> types.CodeType | None:
    """The code of the outermost frame that ``eval`` or ``exec`` runs from a string (their
    file name is ``<string>``) between ``frame`` and the frame that called
    :func:`install` (the run's own), if any. Frames outside the run do not count: the
    run catches its interrupt before it could pass out of them (a program that runs
    everything from a string, as execnet's workers do, would otherwise never be
    interrupted); nor do frames when the run's frame is not on the stack."""
    boundary = _boundary[0]
    found = None
    while frame is not None and frame is not boundary:
        if frame.f_code.co_filename == "<string>":
            found = frame.f_code
        frame = frame.f_back
    return found if frame is boundary and boundary is not None else None


def _later(signum: int, code: types.CodeType) -> None:
    """:func:`_send_again` in a thread of its own (a bare one: ``threading`` takes locks
    that the interrupted code may hold)."""
    with _sending:
        _senders[0] += 1
    _thread.start_new_thread(_send_again, (signum, code))


def _unraisable(unraisable, previous: Callable) -> None:
    """A ``sys.unraisablehook``: the exception of a signal handled where it could not
    be raised (a garbage collector's callback, a ``__del__``) is not printed; the
    signal is sent again (:func:`_send_again`). Other exceptions go to ``previous``."""
    exc = unraisable.exc_value
    if _received and isinstance(exc, KeyboardInterrupt | Terminated):
        signum = signal.SIGINT if isinstance(exc, KeyboardInterrupt) else signal.SIGTERM
        _later(signum, _unraisable.__code__)
        return
    previous(unraisable)


def _send_again(signum: int, code: types.CodeType, timeout: float = 10.0) -> None:
    """Send ``signum`` to this process once no frame of the main thread runs ``code``
    (a signal handled in there could not be raised either), for the handler to raise
    it in the main thread's next step."""
    main = threading.main_thread().ident
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _installed[0]:
        frame = sys._current_frames().get(main)
        while frame is not None and frame.f_code is not code:
            frame = frame.f_back
        if frame is None:
            break
        time.sleep(0.001)  # such code returns within microseconds
    handled = _handled[0]
    while True:
        with _sending:  # not once the handlers are restored: Python's would raise it anew
            if not _installed[0] or _handled[0] != handled:
                break
            # To the main thread itself: a wait it is blocked in (a lock, a sleep) ends
            # at once; sent to the process, a signal that another thread took was
            # raised only when that wait ended (30 s in the suite's test of a __del__)
            if hasattr(signal, "pthread_kill") and main is not None:
                signal.pthread_kill(main, signum)
            else:
                os.kill(os.getpid(), signum)
        # Until the handler has run (a signal the process has not handled yet is one,
        # however often it is sent), or the time is up.
        resend = time.monotonic() + RESEND_SECONDS
        while _handled[0] == handled and time.monotonic() < min(resend, deadline):
            time.sleep(0.001)
        if time.monotonic() >= deadline:
            break
    with _sending:
        _senders[0] -= 1


def _pending_senders() -> int:
    """The threads of :func:`_send_again` not yet done (a Python call: signals already
    delivered to the process are handled on its entry)."""
    return _senders[0]


def _stop_sending(timeout: float = 5.0) -> None:
    """Let no thread of :func:`_send_again` send from now on, and handle, with the
    handlers still installed, what those before sent: a signal sent again after the
    restore would be raised anew, out of the run (exit status -2, not 130)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with _sending:
                _installed[0] = False
            while _pending_senders() and time.monotonic() < deadline:
                time.sleep(0.001)  # a sender sends within a step of the main thread
            _pending_senders()
            return
        except (KeyboardInterrupt, Terminated):  # what they sent, handled here
            continue


def install() -> Callable[[], None]:
    """Handle SIGINT and SIGTERM (main thread only; elsewhere a no-op); returns the
    function that restores the previous handlers and forgets what was received."""
    _received.clear()
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    _boundary[0] = sys._getframe(1)
    # A SIGINT ignored from the start stays ignored: POSIX shells start background
    # jobs so, to keep a terminal's Ctrl-C from them (Python itself keeps it ignored).
    handled = [sig for sig in (signal.SIGINT, signal.SIGTERM)
               if signal.getsignal(sig) is not signal.SIG_IGN or sig == signal.SIGTERM]
    old = {sig: signal.signal(sig, _on_signal) for sig in handled}
    _installed[0] = True
    old_hook = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: _unraisable(unraisable, old_hook)

    def restore() -> None:
        _stop_sending()
        for sig, handler in old.items():
            signal.signal(sig, handler)
        sys.unraisablehook = old_hook
        _received.clear()
        _boundary[0] = None

    return restore


def checkpoint() -> None:
    """Raise the first signal received since :func:`install` again, if any: the run
    stops here even if the first exception was caught on the way."""
    if _received:
        raise KeyboardInterrupt() if _received[0] == signal.SIGINT else Terminated()
