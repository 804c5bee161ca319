"""``dlmm bench``: benchmark dlmm beside statsmodels and lme4 (see :mod:`dlmm.bench`)."""

from __future__ import annotations

import argparse
import sys

from .errors import EXIT_OK
from .log import event


def run(args: argparse.Namespace) -> int:
    """Run the benchmark, print its table, write the report if ``--output``.

    Returns
    -------
    int
        0.
    """
    from ..bench import format_table, run_bench, write_report

    kinds = [k for k in ("crossed", "nested", "residual") if getattr(args, k, None)]
    if len(kinds) > 1:
        from .errors import UsageError

        raise UsageError(f"--{kinds[0]} and --{kinds[1]} exclude each other: run them one at "
                         "a time")
    if getattr(args, "io_limit", False) and (getattr(args, "crossed", None)
                                             or getattr(args, "nested", None)):
        from .errors import UsageError

        raise UsageError("--io-limit measures the grouped sizes (--sizes): leave out "
                         "--crossed and --nested")
    if getattr(args, "io_limit", False):
        return _run_io_limit(args)
    if getattr(args, "crossed", None):
        return _run_crossed(args)
    if getattr(args, "nested", None):
        return _run_nested(args)
    if getattr(args, "residual", None):
        return _run_residual(args)
    doc = run_bench(
        args.sizes, per_group=args.per_group, k_fe=args.fe, re_formula=args.re_formula,
        partitions=args.partitions, workers=args.workers,
        threads_per_worker=args.threads_per_worker, data_dir=args.data_dir,
        peers=() if args.no_peers else ("statsmodels", "lme4"),
        peer_budget=args.peer_budget, seed=args.seed,
        log=lambda line: event("bench", "%s", line),
    )
    sys.stdout.write(format_table(doc) + "\n")
    if args.output:
        files = write_report(doc, args.output)
        event("done", "wrote %s", ", ".join(files.values()), **files)
    return EXIT_OK


def _run_crossed(args: argparse.Namespace) -> int:
    """``dlmm bench --crossed CASES``: the crossed data sets (see :mod:`dlmm.bench.crossed`)."""
    from ..bench.crossed import check_cases, run_crossed_bench

    return _run_cases(args, "crossed", check_cases, run_crossed_bench,
                      ("statsmodels", "lme4", "gpboost"),
                      gpboost_python=getattr(args, "gpboost_python", None))


def _run_nested(args: argparse.Namespace) -> int:
    """``dlmm bench --nested CASES``: the nested data sets (see :mod:`dlmm.bench.nested`)."""
    from ..bench.nested import check_cases, run_nested_bench

    return _run_cases(args, "nested", check_cases, run_nested_bench, ("statsmodels", "lme4"))


def _run_residual(args: argparse.Namespace) -> int:
    """``dlmm bench --residual CASES``: residual models beside nlme (see
    :mod:`dlmm.bench.residual`)."""
    from ..bench.residual import check_cases, run_residual_bench

    return _run_cases(args, "residual", check_cases, run_residual_bench, ("nlme",))


def _run_cases(args: argparse.Namespace, kind: str, check_cases, run, peers,
               **options) -> int:
    """A case benchmark (:mod:`dlmm.bench.cases`) of ``--KIND CASES``: the cases checked
    before any work, ``run`` beside ``peers`` (and the ``options`` of its kind), its
    table printed, its report written."""
    from ..bench.cases import format_case_table, write_case_report
    from .errors import UsageError

    cases = getattr(args, kind)
    try:
        check_cases(cases)
    except ValueError as exc:
        raise UsageError(f"--{kind}: {exc}") from None
    doc = run(cases, workers=args.workers or 2, data_dir=args.data_dir,
              peers=() if args.no_peers else peers, peer_budget=args.peer_budget,
              seed=args.seed, log=lambda line: event("bench", "%s", line), **options)
    sys.stdout.write(format_case_table(doc) + "\n")
    if args.output:
        files = write_case_report(doc, args.output, kind)
        event("done", "wrote %s", ", ".join(files.values()), **files)
    return EXIT_OK


def _run_io_limit(args: argparse.Namespace) -> int:
    """``dlmm bench --io-limit``: the grouped engine beside the bare read of its columns
    (see :mod:`dlmm.bench.io_limit`)."""
    from ..bench.io_limit import format_io_table, run_io_bench, write_io_report

    doc = run_io_bench(
        args.sizes, per_group=args.per_group, k_fe=args.fe, re_formula=args.re_formula,
        partitions=args.partitions, workers=args.workers or 2, data_dir=args.data_dir,
        seed=args.seed, log=lambda line: event("bench", "%s", line),
    )
    sys.stdout.write(format_io_table(doc) + "\n")
    if args.output:
        files = write_io_report(doc, args.output)
        event("done", "wrote %s", ", ".join(files.values()), **files)
    return EXIT_OK
