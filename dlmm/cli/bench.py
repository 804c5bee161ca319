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
