"""``--config`` files: defaults < file < flags, and bad values named with their file."""

from __future__ import annotations

import re

import pytest

from dlmm import cli


def test_config_file_then_flags(tmp_path):
    config = tmp_path / "fit.toml"
    config.write_text(
        'data = "from/config"\nformula = "y ~ x1"\ngroups = "g"\nre-formula = "~x1"\n'
        'reml = false\nmissing = "drop"\nworkers = 3\noutput = "cfg-out"\n'
        'method = ["lbfgs", "bfgs"]\nlog_format = "json"\n'
        '[vc]\nc = "0 + C(c)"\nb = "0 + C(b)"\n'
    )
    parser = cli.build_parser()
    opts = cli.fit_options(parser.parse_args(["fit", "--config", str(config)]))
    assert opts["data"] == "from/config" and opts["re_formula"] == "~x1"
    assert opts["ml"] is True and opts["missing"] == "drop" and opts["workers"] == 3
    assert opts["vc"] == {"c": "0 + C(c)", "b": "0 + C(b)"}
    assert opts["method"] == ["lbfgs", "bfgs"] and opts["log_format"] == "json"
    opts = cli.fit_options(parser.parse_args(
        ["fit", "other/data", "--config", str(config), "--reml", "--vc", "a=0 + C(a)",
         "--workers", "1", "--output", "cli-out", "--log-format", "text"]))
    assert opts["data"] == "other/data" and opts["ml"] is False
    assert opts["vc"] == {"a": "0 + C(a)"} and opts["workers"] == 1
    assert opts["output"] == "cli-out" and opts["log_format"] == "text"
    assert opts["formula"] == "y ~ x1" and opts["config"] == str(config)


@pytest.mark.parametrize(
    ("text", "args", "message"),
    [
        ('workers = "two"', [], "workers must be int"),
        ("ml = 1", [], "ml must be bool"),
        ('formula = "y ~ x1"\nscheduler = "tcp://s:8786"', ["--workers", "2"],
         "give one or the other"),
        ('formula = "y ~ x1"\nmethod = "simplex"', [], "--method 'simplex' is not one of"),
        ('formula = "y ~ x1"', ["--quiet", "--verbose"], "exclude each other"),
        ("formula = ", [], "is not valid TOML"),
        ('groups = "g"', [], "--formula is required"),
        # keys are whole option names: a mistyped or shortened one names the option meant
        ('formla = "y ~ x1"', [], "unknown option 'formla'; did you mean formula?"),
        ('form = "y ~ x1"', [], "unknown option 'form'; did you mean formula?"),
        ('re-formla = "~x1"', [], "unknown option 're-formla'; did you mean re_formula?"),
    ],
)
def test_bad_config(tmp_path, text, args, message):
    config = tmp_path / "fit.toml"
    config.write_text(text + "\n")
    parser = cli.build_parser()
    with pytest.raises(cli.UsageError, match=re.escape(message)):
        cli.fit_options(parser.parse_args(["fit", "d/", "--config", str(config), *args]))
