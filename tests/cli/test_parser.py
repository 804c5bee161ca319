"""The ``dlmm`` argument parser, in process."""

from __future__ import annotations

from dlmm import cli


def test_parser_has_every_fit_option():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    fit = sub.choices["fit"]
    flags = {s for a in fit._actions for s in a.option_strings}
    for flag in ("--formula", "--groups", "--re-formula", "--vc", "--ml", "--reml", "--missing",
                 "--scheduler", "--workers", "--threads-per-worker", "--memory-limit",
                 "--output", "--overwrite", "--config", "--quiet", "--verbose", "--log-format",
                 "--max-iter", "--method", "--no-newton", "--newton-steps",
                 "--drop-collinear", "--no-drop-collinear"):
        assert flag in flags
    assert {"fit", "summary", "simulate", "predict", "bench"} <= set(sub.choices)
