"""The ``dlmm`` command's end: the process exits as soon as its run is done.

After a run the interpreter's own finalization (every module's objects, numba's
compiled code, Dask's) took 1.5-4 s on the loaded 2-core machine, after the outputs
were written and the cluster closed (issue 27). When the process is the command
itself (the ``dlmm`` console script, or ``python -m dlmm.cli``) and :func:`dlmm.cli.main`
was called as a command (no arguments), :func:`finish` does what a normal exit does
that anyone can see -- stops and waits for the threads that are not daemons, runs the
``atexit`` handlers (closing an embedded cluster still open, logging's flush,
``multiprocessing``'s and ``weakref.finalize``'s clean-ups), flushes stdout and
stderr -- then ends the process with the run's exit code, skipping the finalization.
A program that calls ``main`` itself keeps the normal exit.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import NoReturn


def is_the_command(main_function) -> bool:
    """Whether this process runs the command and nothing else: its main module is
    ``dlmm.cli.__main__`` or a script whose ``main`` is ``main_function`` (the console
    script: ``from dlmm.cli import main; sys.exit(main())``)."""
    module = sys.modules.get("__main__")
    if module is None:
        return False
    spec = getattr(module, "__spec__", None)
    if spec is not None and spec.name == "dlmm.cli.__main__":
        return True
    return getattr(module, "main", None) is main_function


def finish(code: int) -> NoReturn:
    """End the process with ``code`` once its threads, ``atexit`` handlers and output
    streams are done (see the module docstring)."""
    # As the interpreter's exit does: threading's own exit hooks (which tell the
    # thread pools of concurrent.futures to stop), then a join of every non-daemon thread.
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None:
        shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    os._exit(code)
