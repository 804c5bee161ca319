"""Mistyped options, abbreviations and mistyped commands: one error line naming the one
meant, exit code 2 (in process, through ``dlmm.cli.main``)."""

from __future__ import annotations

import pytest

from dlmm import cli
from dlmm.cli.suggest import closest, unknown_option


def _error(capsys, code: int) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("dlmm: error: "), err
    return err[0]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        # a mistyped option of the subcommand, with and without a value after it
        (["fit", "d/", "--formla", "y ~ x"],
         "unrecognized option --formla; did you mean --formula? (see 'dlmm fit --help')"),
        (["fit", "d/", "--formula", "y ~ x", "--grups=g"],
         "unrecognized option --grups; did you mean --groups?"),
        (["predict", "r/", "d/", "-o", "p/", "--kep", "id"],
         "unrecognized option --kep; did you mean --keep?"),
        # reported before argparse's own "the following arguments are required"
        (["simulate", "--grups", "5", "--per-group", "2", "-o", "x"],
         "unrecognized option --grups; did you mean --groups? (see 'dlmm simulate --help')"),
        # abbreviations are refused, naming the option they start
        (["fit", "d/", "--form", "y ~ x"], "unrecognized option --form; did you mean --formula?"),
        (["simulate", "--groups", "5", "--per", "2", "-o", "x"],
         "unrecognized option --per; did you mean --per-group?"),
        # mistyped commands and choices
        (["fitt", "d/"], "invalid choice: 'fitt'; did you mean 'fit'? (see 'dlmm --help')"),
        (["sumary", "r/"], "invalid choice: 'sumary'; did you mean 'summary'?"),
        (["fit", "d/", "--missing", "drp"], "invalid choice: 'drp'; did you mean 'drop'?"),
        # nothing close: said without a guess
        (["fit", "d/", "--zzz"], "unrecognized option --zzz (see 'dlmm fit --help')"),
        (["--verson"], "unrecognized option --verson; did you mean --version?"),
    ],
)
def test_mistyped_option_names_the_closest(capsys, argv, message):
    assert message in _error(capsys, cli.main(argv))


def test_no_abbreviation_is_accepted_by_any_parser():
    parsers = [cli.build_parser()]
    parsers += list(next(a for a in parsers[0]._actions if a.dest == "command").choices.values())
    assert all(p.allow_abbrev is False for p in parsers)
    # The --config keys are the options' full names, unaffected.
    from dlmm.cli.config import _config_keys

    assert {"formula", "re_formula", "scheduler_timeout"} <= set(_config_keys())


def test_valid_spellings_are_not_reported():
    known = ["--formula", "-f", "--quiet", "-q", "--verbose", "-v"]
    assert unknown_option(["d/", "-fy ~ x", "-qv", "--formula=y~x", "--", "--zzz"],
                          known) is None
    assert unknown_option(["-0.5", "-", "a -b"], known) is None
    # a parser of subcommands looks only before the command
    assert unknown_option(["fit", "--formula"], ["--version"], stop_at_positional=True) is None
    assert unknown_option(["-x"], known) == "unrecognized option -x"


def test_closest_prefers_the_one_option_a_prefix_starts():
    options = ["--re-formula", "--formula", "--fitted", "--max-iter", "--method"]
    assert closest("--re", options) == "--re-formula"
    assert closest("--fi", options) == "--fitted"
    assert closest("--m", options) is None  # --max-iter or --method: no guess
    assert closest("--methd", options) == "--method"
    assert closest("--xyz", options) is None
