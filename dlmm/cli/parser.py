"""The ``dlmm`` argument parser: every option of every command, its type and its choices.

This is the one definition of the options: ``--config`` files are checked
against the ``fit`` options defined here (see :mod:`dlmm.cli.config`).
"""

from __future__ import annotations

import argparse
import sys
import typing
from collections.abc import Callable, Sequence
from typing import Any

from .errors import EXIT_USAGE, UsageError, one_line
from .suggest import closest, unknown_option

METHODS = ("newton", "bfgs", "lbfgs", "cg", "nelder-mead", "powell")


class _Parser(argparse.ArgumentParser):
    """argparse that says ``dlmm: error: ...`` on one line (exit code 2), takes no
    abbreviations (``--form`` is not ``--formula``), and names the option or choice
    a mistyped one was probably meant to be (:mod:`dlmm.cli.suggest`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args=None, namespace=None):
        # Unknown options first: before argparse reports a required option as missing.
        argv = sys.argv[1:] if args is None else list(args)
        message = unknown_option(argv, self._option_string_actions,
                                 stop_at_positional=self._subparsers is not None)
        if message is not None:
            self.error(message)
        return super().parse_known_args(argv, namespace)

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        if action.choices is not None and value not in action.choices:
            near = closest(str(value), map(str, action.choices))
            if near is not None:
                raise argparse.ArgumentError(
                    action, f"invalid choice: {value!r}; did you mean {near!r}?")
        super()._check_value(action, value)

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"dlmm: error: {one_line(message)} "
                              f"(see '{self.prog} --help')\n")


# -- value types: text (or a config file's TOML value) -> value, or ArgumentTypeError --


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


def _positive_float(text: str) -> float:
    """An argparse type: a number > 0."""
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    return value


def _float_list(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}") from None


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v.replace("_", "")) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole numbers like 10000,100000, "
                                         f"got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive whole numbers, got {text!r}")
    return values


def _memory_limit(value: str | int | float) -> str | int | float:
    """An argparse type: a memory limit for Dask, as given: text such as ``4GiB`` or
    ``auto``, or (in a config file) a number, of bytes or up to 1 a fraction of the
    machine's memory. Dask checks it; the type says what a config file may give."""
    return value


def _name_list(text: str) -> list[str]:
    """Comma-separated names, blanks around them dropped."""
    return [v.strip() for v in text.split(",") if v.strip()]


def value_type(action: argparse.Action) -> Any:
    """What an option's value is once parsed: the return type of its ``type``
    (``int``, ``float``, ``list[str]``, ...), ``str`` without one, ``bool`` for a switch."""
    if action.nargs == 0:
        return bool
    if action.type is None:
        return str
    if isinstance(action.type, type):
        return action.type
    return typing.get_type_hints(action.type).get("return", str)


def parse_pairs(items: Sequence[str], what: str, option: str) -> dict[str, str]:
    """``NAME=VALUE`` items as a dict; a malformed item is a :class:`UsageError`
    naming ``option``, the item and ``what`` was expected."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = str(item).partition("=")
        if not sep or not name.strip() or not value.strip():
            raise UsageError(f"{option} {item!r}: expected {what}")
        out[name.strip()] = value.strip()
    return out


# -- the commands' options -----------------------------------------------------------


def _add_logging_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("logging (stderr)")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    g.add_argument("-v", "--verbose", action="store_true",
                   help="debug messages, Dask's logs, and tracebacks on errors")
    g.add_argument("--log-format", choices=("text", "json"),
                   help="text lines (default) or one JSON object per line")


def _add_cluster_options(p: argparse.ArgumentParser, timeout_default: Any = 30.0) -> None:
    """The options choosing the cluster: an existing scheduler or an embedded one."""
    c = p.add_argument_group("cluster")
    c.add_argument("--scheduler", metavar="ADDRESS",
                   help="address of a running Dask scheduler, e.g. tcp://scheduler:8786")
    c.add_argument("--scheduler-timeout", type=_positive_float, default=timeout_default,
                   metavar="SECONDS",
                   help="how long to wait for --scheduler: to connect, and for each "
                        "answer during the run (default 30)")
    c.add_argument("--workers", type=_positive_int, metavar="N",
                   help="embedded cluster: worker processes (default: one per core, at most 8)")
    c.add_argument("--threads-per-worker", type=_positive_int, metavar="T",
                   help="embedded cluster: threads per worker (default 1)")
    c.add_argument("--memory-limit", type=_memory_limit, metavar="M",
                   help="embedded cluster: memory per worker, e.g. 4GiB (default auto)")
    c.add_argument("--tls-ca-file", metavar="FILE",
                   help="tls:// scheduler: the CA certificate(s) to trust, PEM (default: "
                        "Dask's distributed.comm.tls.ca-file configuration)")
    c.add_argument("--tls-cert", metavar="FILE",
                   help="tls:// scheduler: this client's certificate, PEM (default: Dask's "
                        "distributed.comm.tls.client.cert)")
    c.add_argument("--tls-key", metavar="FILE",
                   help="tls:// scheduler: the private key of --tls-cert, PEM, unless that "
                        "file holds it (default: Dask's distributed.comm.tls.client.key)")


def add_fit_options(fit: argparse.ArgumentParser) -> None:
    """The options of ``dlmm fit`` (the keys of a ``--config`` file).

    ``fit`` must have ``argument_default=argparse.SUPPRESS``: a flag not given is
    absent from the parsed namespace, so that it does not override the config file.
    """
    fit.add_argument("data", nargs="*", metavar="DATA",
                     help="Parquet file(s), folder, glob or fsspec URL (or 'data' in --config)")
    m = fit.add_argument_group("model")
    m.add_argument("-f", "--formula",
                   help="fixed effects, e.g. 'y ~ x1 + C(c)'; or the whole model in lme4's "
                        "spelling, e.g. 'y ~ x + (x | school) + (1 | school:class)'")
    m.add_argument("-g", "--groups", help="column of the group labels (default: one group)")
    m.add_argument("--re-formula", help="random effects, e.g. '~x1' ('0' for none)")
    m.add_argument("--vc", action="append", metavar="NAME=FORMULA",
                   help="a variance component, e.g. 'school=0 + C(school)' (repeatable)")
    m.add_argument("--weights", metavar="COLUMN",
                   help="column of precision weights (lme4's weights=: row i's residual "
                        "variance is scale / w_i; positive values)")
    m.add_argument("--residual-by", metavar="COLUMN",
                   help="a residual variance per level of this column (nlme's varIdent(form "
                        "= ~ 1 | COLUMN)), estimated with the fit")
    m.add_argument("--residual-ar1", metavar="TIME",
                   help="AR(1) errors within each group in the order of this column of "
                        "consecutive integer times (nlme's corAR1(form = ~ TIME | groups))")
    m.add_argument("--ml", dest="ml", action="store_true", help="maximum likelihood")
    m.add_argument("--reml", dest="ml", action="store_false", help="REML (the default)")
    m.add_argument("--missing", choices=("none", "drop", "raise"),
                   help="rows with missing values: error (none, raise; default) or drop")
    m.add_argument("--drop-collinear", action=argparse.BooleanOptionalAction,
                   help="drop fixed-effect columns that are linear combinations of earlier "
                        "ones (lme4's way) instead of stopping with an error")
    o = fit.add_argument_group("optimizer")
    o.add_argument("--method", type=_name_list, metavar="M[,M...]",
                   help=f"scipy methods to try in order ({', '.join(METHODS)}); "
                        "default newton,bfgs,lbfgs,nelder-mead; crossed designs "
                        "lbfgs,bfgs,nelder-mead")
    o.add_argument("--max-iter", type=_positive_int, metavar="N",
                   help="iterations per method (default 2000)")
    o.add_argument("--newton-steps", type=_nonnegative_int, metavar="N",
                   help="Newton polishing steps after the scipy methods (default 8)")
    o.add_argument("--no-newton", dest="newton_steps", action="store_const", const=0,
                   help="no Newton polishing (--newton-steps 0)")
    o.add_argument("--driver-memory", type=_memory_limit, metavar="M",
                   help="what the fit may hold on this machine (8GB by default; e.g. 2GB): "
                        "a crossed design whose dense part needs more is factored on the "
                        "cluster's workers, or refused with its sizes when they cannot "
                        "hold it either")
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
    n = fit.add_argument_group("nightly refits")
    n.add_argument("--cache", metavar="DIR",
                   help="statistics cache folder: keep each input file's sums there and read "
                        "only files that are new or changed (shared storage on a cluster)")
    n.add_argument("--start-from", metavar="PREVIOUS_OUTPUT",
                   help="start the optimizer at the optimum of a previous output of the same "
                        "model")
    n.add_argument("--skip-unchanged", action=argparse.BooleanOptionalAction,
                   help="exit 0 with status 'unchanged', reading no data, when the inputs and "
                        "the specification are those of the previous output (--start-from, "
                        "else --output)")
    fit.add_argument("--config", metavar="FILE.toml",
                     help="options from a TOML file; command-line flags override it")
    _add_logging_options(fit)


def fit_parser() -> argparse.ArgumentParser:
    """A parser of the ``dlmm fit`` options alone (what :mod:`dlmm.cli.config` checks
    a config file against)."""
    fit = _Parser(prog="dlmm fit", argument_default=argparse.SUPPRESS, add_help=False)
    add_fit_options(fit)
    return fit


def _add_simulate_options(sim: argparse.ArgumentParser) -> None:
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
    sim.add_argument("--partitions", type=_positive_int, metavar="P",
                     help="number of Parquet files (each holds whole groups; default one "
                          "per started million rows, at most one per group)")
    sim.add_argument("--seed", type=_nonnegative_int, default=0, metavar="S",
                     help="random seed: the same seed gives the same data (default 0)")
    sim.add_argument("-o", "--output", required=True, metavar="PATH",
                     help="output folder (must not exist unless --overwrite)")
    sim.add_argument("--overwrite", action="store_true", help="replace an existing folder")
    sim.add_argument("--batch-rows", type=_positive_int, default=1 << 20,
                     help=argparse.SUPPRESS)
    _add_logging_options(sim)


def _add_predict_options(pred: argparse.ArgumentParser) -> None:
    pred.add_argument("result_dir", metavar="RESULT_DIR",
                      help="output folder of dlmm fit (or a folder written by result.save)")
    pred.add_argument("data", metavar="DATA", help="Parquet file, folder, glob or URL")
    pred.add_argument("-o", "--output", required=True, metavar="PATH",
                      help="Parquet folder to write (must not exist unless --overwrite)")
    pred.add_argument("--overwrite", action="store_true", help="replace an existing folder")
    pred.add_argument("--no-random-effects", dest="random_effects", action="store_false",
                      help="the fixed part only, for every row")
    pred.add_argument("--keep", type=_name_list, default=[], metavar="COLUMN[,COLUMN...]",
                      help="columns of DATA to copy into the output beside 'predicted', "
                           "e.g. row IDs (comma-separated)")
    _add_cluster_options(pred)
    _add_logging_options(pred)


def _add_bench_options(bench: argparse.ArgumentParser) -> None:
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
    bench.add_argument("--peer-budget", type=_positive_float, default=120.0, metavar="SECONDS",
                       help="skip a peer whose predicted time exceeds this (default 120)")
    bench.add_argument("--no-peers", action="store_true", help="dlmm only")
    bench.add_argument("--crossed", nargs="?", const="insteval,1000000x50000x5000",
                       type=lambda t: [c for c in t.split(",") if c.strip()],
                       metavar="CASE[,CASE...]",
                       help="crossed designs instead of --sizes: 'insteval', 'star' (mlmRev, "
                            "through Rscript), 'd3' or 'd3xROWS' (three crossed factors "
                            "with slopes), 'kb07' (a maximal model, four correlated "
                            "effects on subjects and on items) and/or simulated "
                            "ROWSxUSERSxITEMS ('xheavy' after it: heavy-tailed users); "
                            "':ml' after a case fits ML (default with "
                            "no value: insteval,1000000x50000x5000)")
    bench.add_argument("--gpboost-python", metavar="PYTHON",
                       help="with --crossed: a Python that has gpboost, which then fits the "
                            "crossed-intercept cases as a peer (default: this Python if it "
                            "has gpboost, else gpboost is skipped)")
    bench.add_argument("--nested", nargs="?", const="chem97,1310x18x13,10000x100x10",
                       type=lambda t: [c for c in t.split(",") if c.strip()],
                       metavar="CASE[,CASE...]",
                       help="nested designs instead of --sizes: 'chem97' and/or simulated "
                            "OUTERxINNERxROWS, score ~ gcsecnt + gender + (1 | lea/school) "
                            "(default with no value: chem97,1310x18x13,10000x100x10)")
    bench.add_argument("--residual", nargs="?", const="orthodont,10000x10",
                       type=lambda t: [c for c in t.split(",") if c.strip()],
                       metavar="CASE[,CASE...]",
                       help="residual models instead of --sizes, beside nlme: 'orthodont' "
                            "and/or simulated GROUPSxROWS, a variance per stratum and AR(1) "
                            "errors (default with no value: orthodont,10000x10)")
    bench.add_argument("--io-limit", action="store_true",
                       help="the I/O limit instead of the peers: for each of --sizes, the "
                            "bare read of the model's columns with pyarrow (the floor), then "
                            "one 'dlmm fit' on --workers (default 2): its data pass, steps, "
                            "outputs and whole command, as ratios to the floor")
    bench.add_argument("--data-dir", metavar="DIR",
                       help="where simulated data sets are kept and reused "
                            "(default: the temp folder)")
    bench.add_argument("--seed", type=_nonnegative_int, default=0)
    bench.add_argument("-o", "--output", metavar="DIR",
                       help="write bench.json, bench.txt and bench.png here")
    _add_logging_options(bench)


def build_parser() -> argparse.ArgumentParser:
    """The ``dlmm`` argument parser (subcommands ``fit``, ``summary``, ``simulate``,
    ``predict``, ``bench``; the parsed namespace's ``command`` names the one given).

    Returns
    -------
    argparse.ArgumentParser
    """
    from .. import __version__

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
    add_fit_options(sub.add_parser(
        "fit", argument_default=argparse.SUPPRESS,
        help="fit a mixed model to Parquet data",
        description="Fit a linear mixed model to Parquet data on a Dask cluster.",
        epilog="Example: dlmm fit data/ --formula 'y ~ x1 + x2' --groups g "
               "--re-formula '~x1' --vc 'c=0 + C(c)' --output out/",
    ))

    summ = sub.add_parser("summary", help="print the summary of a fit's output folder",
                          description="Print summary.txt of an output folder of dlmm fit.")
    summ.add_argument("result_dir", metavar="RESULT_DIR")
    _add_logging_options(summ)

    _add_simulate_options(sub.add_parser(
        "simulate", help="write Parquet data from a known mixed model",
        description="Write a partitioned Parquet data set of GROUPS x PER_GROUP rows from a "
                    "known linear mixed model, one partition at a time (see dlmm.simulate); "
                    "the true parameters go to _truth.json in the output folder.",
    ))
    _add_predict_options(sub.add_parser(
        "predict", help="predict new Parquet data from a fit's output folder",
        description="Predict the response of new Parquet data with a saved fit: by default "
                    "conditionally, the fixed part plus, for groups seen in the fit, their "
                    "predicted random effects (unseen groups get the fixed part only; "
                    "--no-random-effects: the fixed part, the Python API's default). Writes "
                    "a Parquet folder with the model's columns and 'predicted'.",
    ))
    _add_bench_options(sub.add_parser(
        "bench", help="benchmark dlmm beside statsmodels (and lme4) on simulated data",
        description="Simulate (or reuse) Parquet data at each size, fit it with dlmm on a "
                    "local cluster and with statsmodels (and lme4 via Rscript when "
                    "installed) within a time budget; print a table and write bench.json, "
                    "bench.txt and bench.png (see dlmm.bench).",
    ))
    return parser
