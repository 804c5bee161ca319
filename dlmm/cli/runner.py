"""One run of the ``dlmm`` command: parse, set up logging and signals, run the
command, turn its outcome into the exit code."""

from __future__ import annotations

import sys
import traceback
import warnings
from collections.abc import Sequence

from ..distributed.faults import ClusterError
from ..exceptions import InputError
from . import bench, fit, interrupts, predict, simulate, summary
from .config import fit_options
from .errors import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    EXIT_USAGE,
    Terminated,
    UsageError,
)
from .fast_exit import finish, is_the_command
from .log import configure_logging, report_error, show_warning
from .parser import build_parser

#: The commands other than ``fit`` (which takes its options from fit_options).
COMMANDS = {"summary": summary.run, "simulate": simulate.run, "predict": predict.run,
            "bench": bench.run}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``dlmm`` command.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit code (0, 1, 2, 3, 130 or 143; see :mod:`dlmm.cli`). Called without
        ``argv`` by the process that is the command (the ``dlmm`` console script,
        ``python -m dlmm.cli``), it does not return: the process ends with the code as
        soon as the run is done (:func:`dlmm.cli.fast_exit.finish`).
    """
    code = _run(argv)
    if argv is None and is_the_command(main):
        finish(code)
    return code


def _run(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:  # bare ``dlmm``: the usage and the commands, as a usage error
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # usage errors (2), --help and --version (0)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    log_format = getattr(args, "log_format", None) or "text"
    verbose = bool(getattr(args, "verbose", False))
    restore = None
    old_showwarning = warnings.showwarning
    restore_signals = interrupts.install()
    try:
        if args.command == "fit":
            opts = fit_options(args)
            log_format, verbose, quiet = opts["log_format"], opts["verbose"], opts["quiet"]
        else:
            quiet = bool(getattr(args, "quiet", False))
            if quiet and verbose:
                raise UsageError("--quiet and --verbose exclude each other")
        restore = configure_logging(quiet, verbose, log_format)
        warnings.showwarning = show_warning
        return fit.run(opts) if args.command == "fit" else COMMANDS[args.command](args)
    except InputError as exc:
        if verbose:
            traceback.print_exc(file=sys.stderr)
        report_error(str(exc), EXIT_USAGE, log_format)
        return EXIT_USAGE
    except ClusterError as exc:  # the cluster failed the run: said in one line
        if verbose:
            traceback.print_exc(file=sys.stderr)
        report_error(str(exc), EXIT_ERROR, log_format)
        return EXIT_ERROR
    except KeyboardInterrupt:
        report_error("interrupted", EXIT_INTERRUPTED, log_format)
        return EXIT_INTERRUPTED
    except Terminated:
        report_error("terminated (SIGTERM)", EXIT_TERMINATED, log_format)
        return EXIT_TERMINATED
    except Exception as exc:
        if verbose:
            traceback.print_exc(file=sys.stderr)
        hint = "" if verbose else " (run with --verbose for the traceback)"
        report_error(f"unexpected {type(exc).__name__}: {exc}{hint}", EXIT_ERROR, log_format)
        return EXIT_ERROR
    finally:
        warnings.showwarning = old_showwarning
        restore_signals()
        if restore is not None:
            restore()
