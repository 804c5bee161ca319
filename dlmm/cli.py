"""The ``dlmm`` command: ``fit``, ``summary`` and ``simulate``.

Run ``dlmm COMMAND --help`` for the options of a command. ``python -m
dlmm.cli`` is the same command.

``dlmm fit DATA``
    Fits a model to Parquet data on a Dask cluster: an existing one
    (``--scheduler ADDRESS``) or an embedded local cluster on 127.0.0.1
    (``--workers``, ``--threads-per-worker``, ``--memory-limit``; by default
    one single-threaded worker process per core, at most 8). With
    ``--output DIR`` it writes ``DIR/result.json`` (schema ``dlmm.result/1``),
    ``summary.txt``, ``random_effects.parquet``, ``vc_effects.parquet``,
    ``model/`` (for ``dlmm.load_result``) and with ``--fitted``
    ``fitted.parquet/`` (see :mod:`dlmm.io.result_folder`) into a temporary sibling
    folder renamed into place when complete (a failed run leaves no folder);
    without it, the summary goes to stdout. Every option can be given in a
    TOML file (``--config``; keys are the long option names, with ``-`` or
    ``_``, and ``vc`` a table ``{name = "formula"}``); command-line flags
    override the file (``--vc`` flags replace the file's whole ``vc`` table).

``dlmm summary RESULT_DIR``
    Prints the ``summary.txt`` of an output folder.

``dlmm simulate``
    Writes a partitioned Parquet data set from a known model, out of core,
    with its true parameters in ``_truth.json`` (see :mod:`dlmm.simulate`).

Exit codes
----------
0
    Done (``fit``: converged).
1
    An unexpected error (``--verbose`` shows the traceback).
2
    Bad input or usage: one line ``dlmm: error: <message>`` names the column,
    file or option at fault; no output folder is written.
3
    ``fit`` only: the fit ran but did not converge; the outputs are written
    and ``result.json`` says ``"status": "not_converged"``.
130, 143
    Interrupted (Ctrl-C) or terminated (SIGTERM); nothing half-written is left.

Logging
-------
Progress goes to stderr through the ``logging`` logger ``"dlmm"``: the
cluster and its dashboard address, the start and end of the data pass, one
line per optimizer evaluation (step, llf, gradient norm, stage), warnings,
and the outcome. ``--quiet`` silences it (errors are still printed);
``--verbose`` adds debug messages and Dask's own warnings and tracebacks;
``--log-format json`` writes each line as a JSON object (``time``, ``level``,
``logger``, ``message``, ``event`` and the event's fields; an error is an
object with ``"event": "error"`` and ``exit_code``).

Not yet: ``dlmm predict`` (``dlmm.load_result(DIR / "model").predict(data)``
does it from Python).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import logging
import os
import re
import signal
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .exceptions import InputError
from .progress import data_pass_progress

logger = logging.getLogger("dlmm")

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_CONVERGED = 3

METHODS = ("newton", "bfgs", "lbfgs", "cg", "nelder-mead", "powell")

#: Options of ``dlmm fit`` and their defaults (the keys a ``--config`` file may use).
FIT_DEFAULTS: dict[str, Any] = {
    "data": None,
    "formula": None,
    "groups": None,
    "re_formula": None,
    "vc": {},
    "ml": False,
    "missing": "none",
    "drop_collinear": False,
    "scheduler": None,
    "scheduler_timeout": 30.0,
    "workers": None,
    "threads_per_worker": None,
    "memory_limit": None,
    "output": None,
    "overwrite": False,
    "fitted": False,
    "method": None,
    "max_iter": None,
    "newton_steps": None,
    "quiet": False,
    "verbose": False,
    "log_format": "text",
}

_CONFIG_TYPES: dict[str, tuple[type, ...]] = {
    "data": (str, list),
    "formula": (str,),
    "groups": (str,),
    "re_formula": (str,),
    "vc": (dict, list),
    "ml": (bool,),
    "reml": (bool,),
    "missing": (str,),
    "drop_collinear": (bool,),
    "scheduler": (str,),
    "scheduler_timeout": (int, float),
    "workers": (int,),
    "threads_per_worker": (int,),
    "memory_limit": (str, int, float),
    "output": (str,),
    "overwrite": (bool,),
    "fitted": (bool,),
    "method": (str, list),
    "max_iter": (int,),
    "newton_steps": (int,),
    "quiet": (bool,),
    "verbose": (bool,),
    "log_format": (str,),
}


class UsageError(InputError):
    """A bad option or option value (exit code 2)."""


class Terminated(BaseException):
    """SIGTERM (a batch system or Kubernetes stopping the job): unwind and clean up."""


def _on_sigterm(signum, frame):
    raise Terminated()


# -- logging ------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message and the event's fields."""

    def format(self, record: logging.LogRecord) -> str:
        from .io.jsonable import jsonable

        obj: dict[str, Any] = {
            "time": _dt.datetime.fromtimestamp(record.created, _dt.timezone.utc)
            .isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        obj.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            obj["traceback"] = self.formatException(record.exc_info)
        return json.dumps(jsonable(obj), allow_nan=False)


_TEXT_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


def configure_logging(quiet: bool = False, verbose: bool = False,
                      log_format: str = "text", stream=None):
    """Send the ``dlmm`` logger (and Dask's warnings) to stderr.

    Parameters
    ----------
    quiet : bool
        Nothing below CRITICAL (silent).
    verbose : bool
        DEBUG for dlmm, INFO for Dask.
    log_format : {"text", "json"}
    stream : file, optional
        Default ``sys.stderr``.

    Returns
    -------
    callable
        Undoes the configuration (for callers of :func:`main` in process).
    """
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(_TEXT_FORMAT, "%Y-%m-%dT%H:%M:%S"))
    level = logging.CRITICAL + 10 if quiet else logging.DEBUG if verbose else logging.INFO
    dask_level = logging.CRITICAL + 10 if quiet else logging.INFO if verbose else logging.WARNING
    handler.addFilter(_RECENT)
    loggers = [logger, logging.getLogger("distributed"), logging.getLogger("dask")]
    saved = [(lg, lg.level, lg.propagate) for lg in loggers]
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    for lg in loggers[1:]:
        lg.setLevel(dask_level)
    # Worker processes of an embedded cluster take Dask's logging config from the
    # environment when they start (see _dask_worker_logging).
    global _WORKER_LOG_LEVEL
    _WORKER_LOG_LEVEL = logging.getLevelName(min(dask_level, logging.CRITICAL)).lower()

    def restore() -> None:
        logger.removeHandler(handler)
        for lg, lvl, propagate in saved:
            lg.setLevel(lvl)
            lg.propagate = propagate

    return restore


_WORKER_LOG_LEVEL = "warning"


@contextmanager
def _dask_worker_logging() -> Iterator[None]:
    """Worker processes started inside log at the CLI's level for Dask."""
    key = "DASK_LOGGING__DISTRIBUTED"
    old = os.environ.get(key)
    os.environ[key] = _WORKER_LOG_LEVEL
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


def _event(event: str, message: str, *args, level: int = logging.INFO, **fields) -> None:
    logger.log(level, message, *args, extra={"fields": {"event": event, **fields}})


class _Recent(logging.Filter):
    """Remembers the last messages logged, so that a warning that repeats one is dropped."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        self.messages = [*self.messages[-9:], record.getMessage()]
        return True


_RECENT = _Recent()


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    text = _one_line(str(message))
    if text in _RECENT.messages:  # dlmm logged it already (e.g. rows dropped)
        return
    _event("warning", "%s: %s", category.__name__, text, level=logging.WARNING,
           category=category.__name__)


def _one_line(text: str) -> str:
    return re.sub(r"\s*\n\s*", " ", str(text)).strip()


# -- the parser ---------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse that says ``dlmm: error: ...`` on one line (exit code 2)."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"dlmm: error: {_one_line(message)} "
                              f"(see '{self.prog} --help')\n")


def _int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer of at least ``minimum``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(
                f"expected an integer >= {minimum}, got {text!r}") from None
        return value

    return parse


_positive_int = _int_at_least(1)
_nonnegative_int = _int_at_least(0)


def _float_list(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}") from None


def _add_logging_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("logging (stderr)")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    g.add_argument("-v", "--verbose", action="store_true",
                   help="debug messages, Dask's logs, and tracebacks on errors")
    g.add_argument("--log-format", choices=("text", "json"),
                   help="text lines (default) or one JSON object per line")


def build_parser() -> argparse.ArgumentParser:
    """The ``dlmm`` argument parser (subcommands ``fit``, ``summary``, ``simulate``).

    Returns
    -------
    argparse.ArgumentParser
    """
    from . import __version__

    parser = _Parser(
        prog="dlmm",
        description="Linear mixed models (statsmodels' MixedLM) on Parquet data with Dask.",
        epilog="exit codes: 0 done/converged, 1 unexpected error, 2 bad input or usage, "
               "3 fitted but not converged",
    )
    parser.add_argument("--version", action="version", version=f"dlmm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    # fit: every option defaults to SUPPRESS so that --config values are overridden
    # only by the flags actually given.
    fit = sub.add_parser(
        "fit", argument_default=argparse.SUPPRESS,
        help="fit a mixed model to Parquet data",
        description="Fit a linear mixed model to Parquet data on a Dask cluster.",
        epilog="Example: dlmm fit data/ --formula 'y ~ x1 + x2' --groups g "
               "--re-formula '~x1' --vc 'c=0 + C(c)' --output out/",
    )
    fit.add_argument("data", nargs="*", metavar="DATA",
                     help="Parquet file(s), folder, glob or fsspec URL (or 'data' in --config)")
    m = fit.add_argument_group("model")
    m.add_argument("-f", "--formula", help="fixed effects, e.g. 'y ~ x1 + C(c)'")
    m.add_argument("-g", "--groups", help="column of the group labels (default: one group)")
    m.add_argument("--re-formula", help="random effects, e.g. '~x1' ('0' for none)")
    m.add_argument("--vc", action="append", metavar="NAME=FORMULA",
                   help="a variance component, e.g. 'class=0 + C(class)' (repeatable)")
    m.add_argument("--ml", dest="ml", action="store_true", help="maximum likelihood")
    m.add_argument("--reml", dest="ml", action="store_false", help="REML (the default)")
    m.add_argument("--missing", choices=("none", "drop", "raise"),
                   help="rows with missing values: error (none, raise; default) or drop")
    m.add_argument("--drop-collinear", action=argparse.BooleanOptionalAction,
                   help="drop fixed-effect columns that are linear combinations of earlier "
                        "ones (lme4's way) instead of stopping with an error")
    o = fit.add_argument_group("optimizer")
    o.add_argument("--method", metavar="M[,M...]",
                   help=f"scipy methods to try in order ({', '.join(METHODS)}); "
                        "default bfgs,lbfgs,nelder-mead")
    o.add_argument("--max-iter", type=_positive_int, metavar="N",
                   help="iterations per method (default 2000)")
    o.add_argument("--newton-steps", type=_nonnegative_int, metavar="N",
                   help="Newton polishing steps after the scipy methods (default 8)")
    o.add_argument("--no-newton", dest="newton_steps", action="store_const", const=0,
                   help="no Newton polishing (--newton-steps 0)")
    # No default timeout here: a --config value must win unless the flag is given.
    _add_cluster_options(fit, timeout_default=argparse.SUPPRESS)
    out = fit.add_argument_group("output")
    out.add_argument("-o", "--output", metavar="DIR",
                     help="write result.json, summary.txt, random_effects.parquet, ... here "
                          "(default: the summary to stdout)")
    out.add_argument("--overwrite", action=argparse.BooleanOptionalAction,
                     help="replace an existing output folder")
    out.add_argument("--fitted", action=argparse.BooleanOptionalAction,
                     help="also write fitted.parquet, the fitted values of every row (on a "
                          "cluster the workers write it: the output folder must be shared)")
    fit.add_argument("--config", metavar="FILE.toml",
                     help="options from a TOML file; command-line flags override it")
    _add_logging_options(fit)
    fit.set_defaults(handler=cmd_fit)

    summ = sub.add_parser("summary", help="print the summary of a fit's output folder",
                          description="Print summary.txt of an output folder of dlmm fit.")
    summ.add_argument("result_dir", metavar="RESULT_DIR")
    _add_logging_options(summ)
    summ.set_defaults(handler=cmd_summary)

    sim = sub.add_parser(
        "simulate", help="write Parquet data from a known mixed model",
        description="Write a partitioned Parquet data set of GROUPS x PER_GROUP rows from a "
                    "known linear mixed model, one partition at a time (see dlmm.simulate); "
                    "the true parameters go to _truth.json in the output folder.",
    )
    sim.add_argument("--groups", type=_positive_int, required=True, metavar="G",
                     help="number of groups")
    sim.add_argument("--per-group", type=_positive_int, required=True, metavar="M",
                     help="rows per group")
    sim.add_argument("--fe", type=_positive_int, default=3, metavar="K",
                     help="fixed effects including the intercept: columns x1..x{K-1} "
                          "(default 3)")
    sim.add_argument("--re-formula", default="~1",
                     help="random effects over the x columns, e.g. '~x1' (default '~1')")
    sim.add_argument("--re-sd", type=_float_list, metavar="SD[,SD...]",
                     help="standard deviations of the random effects "
                          "(default 1 for the intercept, 0.5 for slopes)")
    sim.add_argument("--re-corr", type=float, default=0.2,
                     help="correlation of every pair of random effects (default 0.2)")
    sim.add_argument("--vc", action="append", default=[], metavar="NAME=SD",
                     help="a variance component column NAME with effects of this SD "
                          "(repeatable)")
    sim.add_argument("--vc-levels", type=_positive_int, default=4, metavar="L",
                     help="levels of each variance-component column within a group (default 4)")
    sim.add_argument("--beta", type=_float_list, metavar="B[,B...]",
                     help="fixed effects, intercept first (default linspace(1, 0.2, K))")
    sim.add_argument("--scale", type=float, default=1.0, help="residual variance (default 1)")
    sim.add_argument("--partitions", type=_positive_int, required=True, metavar="P",
                     help="number of Parquet files (each holds whole groups)")
    sim.add_argument("--seed", type=_nonnegative_int, required=True, metavar="S")
    sim.add_argument("-o", "--output", required=True, metavar="PATH",
                     help="output folder (must not exist unless --overwrite)")
    sim.add_argument("--overwrite", action="store_true", help="replace an existing folder")
    sim.add_argument("--batch-rows", type=_positive_int, default=1 << 20,
                     help=argparse.SUPPRESS)
    _add_logging_options(sim)
    sim.set_defaults(handler=cmd_simulate)

    pred = sub.add_parser(
        "predict", help="predict new Parquet data from a fit's output folder",
        description="Predict the response of new Parquet data with a saved fit: the fixed "
                    "part plus, for groups seen in the fit, their predicted random effects "
                    "(unseen groups get the fixed part only). Writes a Parquet folder with "
                    "the model's columns and 'predicted'.",
    )
    pred.add_argument("result_dir", metavar="RESULT_DIR",
                      help="output folder of dlmm fit (or a folder written by result.save)")
    pred.add_argument("data", metavar="DATA", help="Parquet file, folder, glob or URL")
    pred.add_argument("-o", "--output", required=True, metavar="PATH",
                      help="Parquet folder to write (must not exist unless --overwrite)")
    pred.add_argument("--overwrite", action="store_true", help="replace an existing folder")
    pred.add_argument("--no-random-effects", dest="random_effects", action="store_false",
                      help="the fixed part only, for every row")
    _add_cluster_options(pred)
    _add_logging_options(pred)
    pred.set_defaults(handler=cmd_predict)

    bench = sub.add_parser(
        "bench", help="benchmark dlmm beside statsmodels (and lme4) on simulated data",
        description="Simulate (or reuse) Parquet data at each size, fit it with dlmm on a "
                    "local cluster and with statsmodels (and lme4 via Rscript when "
                    "installed) within a time budget; print a table and write bench.json, "
                    "bench.txt and bench.png (see dlmm.bench).",
    )
    bench.add_argument("--sizes", type=_int_list, default=[10_000], metavar="G[,G...]",
                       help="numbers of groups (default 10000)")
    bench.add_argument("--per-group", type=_positive_int, default=20, metavar="M",
                       help="rows per group (default 20)")
    bench.add_argument("--fe", type=_positive_int, default=5, metavar="K",
                       help="fixed effects including the intercept (default 5)")
    bench.add_argument("--re-formula", default="~x1",
                       help="random effects (default '~x1': intercept and slope)")
    bench.add_argument("--workers", type=_positive_int, metavar="N",
                       help="local cluster worker processes (default: one per core, at most 8)")
    bench.add_argument("--threads-per-worker", type=_positive_int, default=1, metavar="T")
    bench.add_argument("--partitions", type=_positive_int, metavar="P",
                       help="Parquet files per data set (default: by size)")
    bench.add_argument("--peer-budget", type=float, default=120.0, metavar="SECONDS",
                       help="skip a peer whose predicted time exceeds this (default 120)")
    bench.add_argument("--no-peers", action="store_true", help="dlmm only")
    bench.add_argument("--data-dir", metavar="DIR",
                       help="where simulated data sets are kept and reused "
                            "(default: the temp folder)")
    bench.add_argument("--seed", type=_nonnegative_int, default=0)
    bench.add_argument("-o", "--output", metavar="DIR",
                       help="write bench.json, bench.txt and bench.png here")
    _add_logging_options(bench)
    bench.set_defaults(handler=cmd_bench)
    return parser


def _add_cluster_options(p: argparse.ArgumentParser, timeout_default: Any = 30.0) -> None:
    """The options choosing the cluster: an existing scheduler or an embedded one."""
    c = p.add_argument_group("cluster")
    c.add_argument("--scheduler", metavar="ADDRESS",
                   help="address of a running Dask scheduler, e.g. tcp://scheduler:8786")
    c.add_argument("--scheduler-timeout", type=float, default=timeout_default,
                   metavar="SECONDS",
                   help="how long to try to connect to --scheduler (default 30)")
    c.add_argument("--workers", type=_positive_int, metavar="N",
                   help="embedded cluster: worker processes (default: one per core, at most 8)")
    c.add_argument("--threads-per-worker", type=_positive_int, metavar="T",
                   help="embedded cluster: threads per worker (default 1)")
    c.add_argument("--memory-limit", metavar="M",
                   help="embedded cluster: memory per worker, e.g. 4GiB (default auto)")


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v.replace("_", "")) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole numbers like 10000,100000, "
                                         f"got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive whole numbers, got {text!r}")
    return values


# -- options: config file + command line ---------------------------------------------


def _parse_pairs(items: Sequence[str], what: str, option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = str(item).partition("=")
        if not sep or not name.strip() or not value.strip():
            raise UsageError(f"{option} {item!r}: expected {what}")
        out[name.strip()] = value.strip()
    return out


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """The options of a ``--config`` TOML file, keys normalized to ``snake_case``.

    Parameters
    ----------
    path : str or PathLike

    Returns
    -------
    dict

    Raises
    ------
    UsageError
        The file is missing or not TOML, or a key or value is not a ``fit`` option.
    """
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError:
            raise UsageError("--config needs Python 3.11+ or the tomli package") from None
    file = Path(path)
    try:
        with open(file, "rb") as handle:
            raw = tomllib.load(handle)
    except FileNotFoundError:
        raise UsageError(f"--config file {str(file)!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"--config file {str(file)!r} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise UsageError(f"--config file {str(file)!r} cannot be read: {exc}") from None
    if isinstance(raw.get("fit"), dict) and len(raw) == 1:
        raw = raw["fit"]  # a [fit] table is accepted too
    out: dict[str, Any] = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name not in _CONFIG_TYPES or name == "config":
            raise UsageError(
                f"--config file {str(file)!r}: unknown option {key!r} "
                f"(options: {', '.join(k for k in _CONFIG_TYPES)})"
            )
        types = _CONFIG_TYPES[name]
        if isinstance(value, bool) and bool not in types or not isinstance(value, types):
            expected = " or ".join(t.__name__ for t in types)
            raise UsageError(
                f"--config file {str(file)!r}: {key} must be {expected}, got {value!r}"
            )
        if name == "vc":
            value = ({str(k): v for k, v in value.items()} if isinstance(value, dict)
                     else _parse_pairs(value, "NAME=FORMULA", f"--config {key}"))
            for k, v in value.items():
                if not isinstance(v, str):
                    raise UsageError(f"--config file {str(file)!r}: vc.{k} must be a formula "
                                     f"string, got {v!r}")
        if name == "reml":
            name, value = "ml", not value
            if "ml" in out and out["ml"] != value:
                raise UsageError(f"--config file {str(file)!r}: ml and reml disagree")
        out[name] = value
    return out


def fit_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options of a ``fit`` run: defaults < ``--config`` file < command-line flags.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed ``dlmm fit`` arguments (unset flags absent).

    Returns
    -------
    dict
        Every key of :data:`FIT_DEFAULTS` plus ``config``, validated.

    Raises
    ------
    UsageError
    """
    given = {k: v for k, v in vars(args).items() if k not in ("handler", "command")}
    if given.get("data") == []:
        del given["data"]
    opts = dict(FIT_DEFAULTS)
    opts["config"] = given.pop("config", None)
    if opts["config"] is not None:
        opts.update(read_config(opts["config"]))
    if "vc" in given:
        given["vc"] = _parse_pairs(given["vc"], "NAME=FORMULA, e.g. 'class=0 + C(class)'",
                                   "--vc")
    opts.update(given)

    data = opts["data"]
    if isinstance(data, list):
        if not all(isinstance(d, str) for d in data):
            raise UsageError("data must be a path or a list of paths")
        data = data[0] if len(data) == 1 else (data or None)
    if not data:
        raise UsageError("no DATA: give a Parquet path (or 'data' in --config)")
    opts["data"] = data
    if not opts["formula"]:
        raise UsageError("--formula is required (e.g. --formula 'y ~ x1 + x2')")
    if opts["missing"] not in ("none", "drop", "raise"):
        raise UsageError(f"--missing must be none, drop or raise, got {opts['missing']!r}")
    if opts["log_format"] not in ("text", "json"):
        raise UsageError(f"--log-format must be text or json, got {opts['log_format']!r}")
    if opts["method"] is not None:
        methods = opts["method"]
        methods = [m.strip() for m in (methods.split(",") if isinstance(methods, str)
                                       else methods) if str(m).strip()]
        bad = [m for m in methods if str(m).lower() not in METHODS]
        if bad or not methods:
            raise UsageError(
                f"--method {bad[0] if bad else opts['method']!r} is not one of "
                f"{', '.join(METHODS)}"
            )
        opts["method"] = [m.lower() for m in methods]
    for key in ("workers", "threads_per_worker", "max_iter"):
        if opts[key] is not None and opts[key] < 1:
            raise UsageError(f"--{key.replace('_', '-')} must be >= 1, got {opts[key]}")
    if opts["newton_steps"] is not None and opts["newton_steps"] < 0:
        raise UsageError(f"--newton-steps must be >= 0, got {opts['newton_steps']}")
    if opts["scheduler_timeout"] <= 0:
        raise UsageError(f"--scheduler-timeout must be > 0, got {opts['scheduler_timeout']}")
    sizing = [k for k in ("workers", "threads_per_worker", "memory_limit")
              if opts[k] is not None]
    if opts["scheduler"] and sizing:
        raise UsageError(
            f"--scheduler connects to a running cluster; --{sizing[0].replace('_', '-')} "
            "sizes an embedded one: give one or the other"
        )
    if opts["quiet"] and opts["verbose"]:
        raise UsageError("--quiet and --verbose exclude each other")
    if opts["fitted"] and opts["output"] is None:
        raise UsageError("--fitted writes fitted.parquet into --output DIR: give --output")
    return opts


# -- commands -----------------------------------------------------------------------


def _cluster_info(client, kind: str) -> dict[str, Any]:
    info: dict[str, Any] = {"kind": kind}
    try:
        info["address"] = client.scheduler.address
        nthreads = client.nthreads()
        info["workers"] = len(nthreads)
        info["threads"] = int(sum(nthreads.values()))
    except Exception:  # informational only
        pass
    try:
        info["dashboard"] = client.dashboard_link
    except Exception:  # no dashboard service
        info["dashboard"] = None
    return info


def connect(opts: dict[str, Any]):
    """A ``distributed.Client`` for the run and a description of its cluster.

    Parameters
    ----------
    opts : dict
        ``scheduler`` (an address to connect to) or the embedded cluster's
        ``workers``, ``threads_per_worker``, ``memory_limit``.

    Returns
    -------
    client : distributed.Client
    info : dict
        ``kind``, ``address``, ``workers``, ``threads``, ``dashboard``.

    Raises
    ------
    UsageError
        The scheduler cannot be reached.
    """
    if opts["scheduler"]:
        from distributed import Client

        address = opts["scheduler"]
        _event("cluster", "connecting to Dask scheduler %s", address, address=address)
        try:
            client = Client(address, timeout=opts["scheduler_timeout"], set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise UsageError(
                f"--scheduler {address!r}: cannot connect within "
                f"{opts['scheduler_timeout']:g} s ({_one_line(str(exc)) or type(exc).__name__})"
            ) from None
        return client, _cluster_info(client, "scheduler")
    from .distributed.dask_backend import embedded_client

    _event("cluster", "starting an embedded Dask cluster on 127.0.0.1")
    memory = opts["memory_limit"] if opts["memory_limit"] is not None else "auto"
    with _dask_worker_logging():
        client = embedded_client(n_workers=opts["workers"],
                                 threads_per_worker=opts["threads_per_worker"],
                                 memory_limit=memory)
    return client, _cluster_info(client, "embedded")


def _disconnect(client, kind: str) -> None:
    try:
        if kind == "embedded":
            from .distributed.dask_backend import close_embedded

            close_embedded()
        else:
            client.close()
    except Exception as exc:  # closing must not hide the run's outcome
        logger.debug("closing the Dask client failed: %s", exc)


def _log_step(entry) -> None:
    _event("evaluation", "step %d  llf %.10g  |grad| %.3g  [%s]", entry.evaluation, entry.llf,
           entry.grad_norm, entry.stage, step=entry.evaluation, llf=entry.llf,
           grad_norm=entry.grad_norm, seconds=round(entry.seconds, 6), stage=entry.stage)


def cmd_fit(args: argparse.Namespace) -> int:
    """``dlmm fit``: fit, write the outputs, return the exit code."""
    import dlmm

    from .distributed.sources import read_parquet
    from .io.folders import check_output_folder
    from .io.result_folder import write_outputs

    t0 = time.perf_counter()
    opts = args.options
    if opts["output"] is not None:
        check_output_folder(opts["output"], opts["overwrite"])
    read_parquet(opts["data"])  # a missing or unreadable file fails before any cluster starts

    t_cluster = time.perf_counter()
    client, cluster = connect(opts)
    cluster_seconds = time.perf_counter() - t_cluster
    try:
        _event("cluster", "Dask cluster %s: %s workers, %s threads", cluster.get("address"),
               cluster.get("workers"), cluster.get("threads"), **cluster)
        if cluster.get("dashboard"):
            _event("dashboard", "Dask dashboard: %s", cluster["dashboard"],
                   dashboard=cluster["dashboard"])
        model = dlmm.mixedlm(opts["formula"], opts["data"], groups=opts["groups"],
                             re_formula=opts["re_formula"], vc_formula=opts["vc"] or None,
                             missing=opts["missing"], client=client,
                             drop_collinear=opts["drop_collinear"])
        _event("data_pass", "data pass: reading %s", opts["data"], stage="start",
               data=opts["data"])
        t_pass = time.perf_counter()
        with _pass_progress(opts) as progress:
            model.prepare(client=client, progress=progress)
        nobs, n_groups = model.nobs, model.n_groups
        _event("data_pass", "data pass: done in %.2f s: %d rows, %d groups",
               time.perf_counter() - t_pass, nobs, n_groups, stage="end", nobs=nobs,
               n_groups=n_groups, seconds=round(time.perf_counter() - t_pass, 6))
        fit_kwargs: dict[str, Any] = {"reml": not opts["ml"], "client": client,
                                      "callback": _log_step}
        if opts["method"] is not None:
            fit_kwargs["method"] = opts["method"]
        if opts["max_iter"] is not None:
            fit_kwargs["maxiter"] = opts["max_iter"]
        if opts["newton_steps"] is not None:
            fit_kwargs["newton_steps"] = opts["newton_steps"]
        _event("fit", "fitting by %s", "ML" if opts["ml"] else "REML",
               method="ML" if opts["ml"] else "REML")
        result = model.fit(**fit_kwargs)
        status = "converged" if result.converged else "not converged"
        level = logging.INFO if result.converged else logging.WARNING
        _event("result", "%s: llf %.10g after %d evaluations", status, result.llf,
               result.mle_retvals.get("evaluations", 0), level=level,
               converged=bool(result.converged), llf=result.llf)
        timings = {"cluster": cluster_seconds, "total": time.perf_counter() - t0}
        if opts["output"] is not None:
            recorded = {k: v for k, v in opts.items() if k != "handler"}
            write_outputs(result, opts["output"], overwrite=opts["overwrite"],
                          options=recorded, cluster=cluster, timings=timings, client=client)
            _event("output", "wrote %s", opts["output"], output=str(opts["output"]))
        else:
            print(result.summary())
    finally:
        _disconnect(client, cluster["kind"])
    return EXIT_OK if result.converged else EXIT_NOT_CONVERGED


@contextlib.contextmanager
def _pass_progress(opts: dict[str, Any]) -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar over the data pass on an interactive stderr (text logs), else a
    log line at every tenth of the partitions; nothing with --quiet."""
    if opts.get("quiet"):
        yield None
        return
    last = [-1]

    def log(done: int, total: int) -> None:
        tenth = 10 * done // max(total, 1)
        if tenth != last[0]:
            last[0] = tenth
            _event("data_pass", "data pass: %d/%d partitions", done, total,
                   stage="progress", done=done, total=total)

    if opts.get("log_format", "text") != "text":
        yield log
        return
    with data_pass_progress(log) as callback:
        yield callback


def cmd_summary(args: argparse.Namespace) -> int:
    """``dlmm summary``: print ``summary.txt`` of an output folder."""
    from .io.result_folder import SUMMARY_FILE, read_result

    folder = Path(args.result_dir)
    if not folder.is_dir():
        raise InputError(f"RESULT_DIR {str(folder)!r} is not a folder")
    doc = read_result(folder)
    file = folder / SUMMARY_FILE
    if not file.is_file():
        raise InputError(f"{str(file)!r} does not exist")
    sys.stdout.write(file.read_text(encoding="utf-8"))
    if not doc.get("converged", False):
        _event("result", "this fit did not converge (result.json status %r)",
               doc.get("status"), level=logging.WARNING, status=doc.get("status"))
    return EXIT_OK


def cmd_simulate(args: argparse.Namespace) -> int:
    """``dlmm simulate``: write the data set, return the exit code."""
    from .simulate import simulate_parquet

    vc = _parse_pairs(args.vc, "NAME=SD, e.g. 'class=0.5'", "--vc")
    try:
        vc_sd = {k: float(v) for k, v in vc.items()}
    except ValueError:
        bad = next(k for k, v in vc.items() if not _is_float(v))
        raise UsageError(f"--vc {bad}={vc[bad]!r}: the standard deviation must be a number") \
            from None
    start = time.perf_counter()
    rows_done = [0]

    def progress(p: int, n: int, rows: int) -> None:
        rows_done[0] += rows
        _event("partition", "wrote partition %d/%d: %d rows", p + 1, n, rows,
               partition=p, partitions=n, rows=rows)

    _event("simulate", "writing %d x %d rows in %d files to %s", args.groups, args.per_group,
           args.partitions, args.output, output=args.output)
    truth = simulate_parquet(
        args.output, args.groups, args.per_group, k_fe=args.fe, re_formula=args.re_formula,
        re_sd=args.re_sd, re_corr=args.re_corr, vc=vc_sd, vc_levels=args.vc_levels,
        beta=args.beta, scale=args.scale, partitions=args.partitions, seed=args.seed,
        overwrite=args.overwrite, batch_rows=args.batch_rows, progress=progress,
    )
    _event("done", "wrote %d rows in %.2f s; model: %s", rows_done[0],
           time.perf_counter() - start, json.dumps(truth["model"]), rows=rows_done[0])
    return EXIT_OK


def cmd_predict(args: argparse.Namespace) -> int:
    """``dlmm predict``: predictions for new data, written as a Parquet folder."""
    from .distributed.sources import read_parquet
    from .io.folders import check_output_folder, staged_folder
    from .io.saved_result import load_result

    check_output_folder(args.output, args.overwrite)
    folder = Path(args.result_dir)
    model_dir = folder / "model" if (folder / "model" / "result.json").exists() else folder
    result = load_result(model_dir)
    spec = result.model.spec
    if spec is None:
        raise InputError(f"{str(model_dir)!r} was fitted from arrays and cannot predict data")
    # Fail on a missing or unreadable input before any cluster starts.
    frame = read_parquet(args.data)
    spec.check_prediction_columns(frame.columns, args.random_effects, repr(args.data))
    opts = {"scheduler": args.scheduler, "scheduler_timeout": args.scheduler_timeout,
            "workers": args.workers, "threads_per_worker": args.threads_per_worker,
            "memory_limit": args.memory_limit}
    if args.scheduler and any(opts[k] is not None for k in
                              ("workers", "threads_per_worker", "memory_limit")):
        raise UsageError("--scheduler connects to a running cluster; --workers and friends "
                         "size an embedded one: give one or the other")
    client, info = connect(opts)
    try:
        keep = [c for c in spec.columns if c in frame.columns and c != spec.response]
        frame = frame[keep]
        predicted = result.predict(frame, random_effects=args.random_effects, client=client)
        out = frame.assign(predicted=predicted)
        start = time.perf_counter()
        with staged_folder(args.output, overwrite=args.overwrite) as tmp:
            client.compute(out.to_parquet(str(tmp), write_index=False, compute=False)).result()
        _event("done", "wrote predictions to %s in %.2f s", args.output,
               time.perf_counter() - start, output=args.output)
    finally:
        _disconnect(client, info["kind"])
    return EXIT_OK


def cmd_bench(args: argparse.Namespace) -> int:
    """``dlmm bench``: run the benchmark, print the table, write the report."""
    from .bench import format_table, run_bench, write_report

    if args.peer_budget <= 0:
        raise UsageError(f"--peer-budget must be > 0, got {args.peer_budget}")
    doc = run_bench(
        args.sizes, per_group=args.per_group, k_fe=args.fe, re_formula=args.re_formula,
        partitions=args.partitions, workers=args.workers,
        threads_per_worker=args.threads_per_worker, data_dir=args.data_dir,
        peers=() if args.no_peers else ("statsmodels", "lme4"),
        peer_budget=args.peer_budget, seed=args.seed,
        log=lambda line: _event("bench", "%s", line),
    )
    sys.stdout.write(format_table(doc) + "\n")
    if args.output:
        files = write_report(doc, args.output)
        _event("done", "wrote %s", ", ".join(files.values()), **files)
    return EXIT_OK


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# -- main ---------------------------------------------------------------------------


def _report_error(message: str, code: int, log_format: str) -> None:
    message = _one_line(message)
    if log_format == "json":
        obj = {"time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds"),
               "level": "error", "logger": "dlmm", "message": message, "event": "error",
               "exit_code": code}
        sys.stderr.write(json.dumps(obj) + "\n")
    else:
        sys.stderr.write(f"dlmm: error: {message}\n")
    sys.stderr.flush()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``dlmm`` command.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit code (0, 1, 2 or 3; see the module docstring).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # usage errors (2), --help and --version (0)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    log_format = getattr(args, "log_format", None) or "text"
    verbose = bool(getattr(args, "verbose", False))
    restore = None
    old_showwarning = warnings.showwarning
    old_sigterm = None
    if threading.current_thread() is threading.main_thread():
        old_sigterm = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        if args.command == "fit":
            args.options = fit_options(args)
            log_format, verbose = args.options["log_format"], args.options["verbose"]
            quiet = args.options["quiet"]
        else:
            quiet = bool(getattr(args, "quiet", False))
            if quiet and verbose:
                raise UsageError("--quiet and --verbose exclude each other")
        restore = configure_logging(quiet, verbose, log_format)
        warnings.showwarning = _show_warning
        return args.handler(args)
    except InputError as exc:
        if verbose:
            traceback.print_exc(file=sys.stderr)
        _report_error(str(exc), EXIT_USAGE, log_format)
        return EXIT_USAGE
    except KeyboardInterrupt:
        _report_error("interrupted", 130, log_format)
        return 130
    except Terminated:
        _report_error("terminated (SIGTERM)", 143, log_format)
        return 143
    except Exception as exc:
        if verbose:
            traceback.print_exc(file=sys.stderr)
        hint = "" if verbose else " (run with --verbose for the traceback)"
        _report_error(f"unexpected {type(exc).__name__}: {exc}{hint}", EXIT_ERROR, log_format)
        return EXIT_ERROR
    finally:
        warnings.showwarning = old_showwarning
        if old_sigterm is not None:
            signal.signal(signal.SIGTERM, old_sigterm)
        if restore is not None:
            restore()


if __name__ == "__main__":
    sys.exit(main())
