"""``dlmm simulate``: write Parquet data from a known mixed model (see :mod:`dlmm.simulate`)."""

from __future__ import annotations

import argparse
import json
import time

from .errors import EXIT_OK, UsageError
from .log import event
from .parser import parse_pairs

#: Rows per Parquet file of ``dlmm simulate`` without ``--partitions``.
ROWS_PER_PARTITION = 1_000_000


def run(args: argparse.Namespace) -> int:
    """Write the data set and its ``_truth.json``, logging each partition.

    Returns
    -------
    int
        0.
    """
    from ..io.folders import SIMULATED_DATA, check_output_folder
    from ..simulate import SimulationModel, simulate_parquet

    # --overwrite replaces only a data set of dlmm simulate (its _truth.json): checked
    # before anything is logged or written.
    check_output_folder(args.output, args.overwrite, kind=SIMULATED_DATA)
    vc = parse_pairs(args.vc, "NAME=SD, e.g. 'school=0.5'", "--vc")
    try:
        vc_sd = {k: float(v) for k, v in vc.items()}
    except ValueError:
        bad = next(k for k, v in vc.items() if not _is_float(v))
        raise UsageError(f"--vc {bad}={vc[bad]!r}: the standard deviation must be a number") \
            from None
    # The model's options (a --vc name such as 'class' that its formula cannot read) are
    # checked before anything is logged or written.
    SimulationModel(k_fe=args.fe, re_formula=args.re_formula, re_sd=args.re_sd,
                    re_corr=args.re_corr, vc=vc_sd, vc_levels=args.vc_levels, beta=args.beta,
                    scale=args.scale)
    if args.partitions is None:
        args.partitions = default_partitions(args.groups, args.per_group)
    start = time.perf_counter()
    rows_done = [0]

    def progress(p: int, n: int, rows: int) -> None:
        rows_done[0] += rows
        event("partition", "wrote partition %d/%d: %d rows", p + 1, n, rows,
              partition=p, partitions=n, rows=rows)

    event("simulate", "writing %d x %d rows in %d files to %s", args.groups, args.per_group,
          args.partitions, args.output, output=args.output)
    truth = simulate_parquet(
        args.output, args.groups, args.per_group, k_fe=args.fe, re_formula=args.re_formula,
        re_sd=args.re_sd, re_corr=args.re_corr, vc=vc_sd, vc_levels=args.vc_levels,
        beta=args.beta, scale=args.scale, partitions=args.partitions, seed=args.seed,
        overwrite=args.overwrite, batch_rows=args.batch_rows, progress=progress,
    )
    event("done", "wrote %d rows in %.2f s; model: %s", rows_done[0],
          time.perf_counter() - start, json.dumps(truth["model"]), rows=rows_done[0])
    return EXIT_OK


def default_partitions(n_groups: int, per_group: int) -> int:
    """``--partitions`` when not given: one file per started million rows
    (``ceil(groups * per_group / ROWS_PER_PARTITION)``), at least 1 and at most one per
    group (each file holds whole groups)."""
    rows = n_groups * per_group
    return max(1, min(n_groups, -(-rows // ROWS_PER_PARTITION)))


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
