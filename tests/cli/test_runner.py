"""``dlmm.cli.main``: exit codes 1 and 2 and their one error line."""

from __future__ import annotations

import dlmm
from dlmm import cli
from dlmm.cli import cluster
from tests.cli.helpers import _fit_args, _no_output, run_dlmm


def test_unexpected_error_exits_1(simulated, tmp_path, monkeypatch, capsys):
    def boom(opts):
        raise RuntimeError("the network fell over")

    monkeypatch.setattr(cluster, "connect", boom)
    # --workers: a cluster, asked for (data this small would fit in process)
    code = cli.main(_fit_args(str(simulated), "--workers", "1", "--output",
                              str(tmp_path / "out")))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err[-1] == ("dlmm: error: unexpected RuntimeError: the network fell over "
                       "(run with --verbose for the traceback)")
    _no_output(tmp_path)
    code = cli.main(_fit_args(str(simulated), "--workers", "1", "--verbose", "--output",
                              str(tmp_path / "out")))
    assert code == 1 and "Traceback" in capsys.readouterr().err


def test_usage_errors_exit_2(tmp_path, capsys):
    def one_line(code):
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and err[0].startswith("dlmm: error: "), err
        return err[0]

    assert "--workers" in one_line(cli.main(["fit", "--workers", "zero"]))
    assert "invalid choice: 'train'" in one_line(cli.main(["train", str(tmp_path)]))
    assert "required: DATA, -o/--output" in one_line(cli.main(["predict", str(tmp_path)]))
    assert "is not a folder" in one_line(cli.main(["summary", str(tmp_path / "none")]))
    assert "no DATA" in one_line(cli.main(["fit", "--formula", "y ~ x"]))
    assert "required: --groups" in one_line(cli.main(["simulate", "--per-group", "2"]))
    proc = run_dlmm("--version", timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == f"dlmm {dlmm.__version__}"


def test_bare_dlmm_prints_the_usage_and_exits_2(capsys):
    # A missing command is a usage error: exit 2, as argparse exits for one and as
    # dlmm's table of exit codes says (git exits 1 here, but dlmm's 1 means an
    # unexpected error). The usage and the commands go to stderr, not one line.
    assert cli.main([]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("usage: dlmm ")
    for command in ("fit", "summary", "simulate", "predict", "bench"):
        assert f"\n    {command} " in err
    assert "exit codes: 0 done/converged" in err
