"""Helpers of the ``dlmm`` command's tests: run it, check its one error line and outputs.

``dlmm`` runs as a subprocess (``python -m dlmm.cli``) with a timeout.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TIMEOUT = 300
FORMULA = "y ~ x1 + x2"


def run_dlmm(*args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    """``python -m dlmm.cli ARGS`` in a subprocess, time-bounded."""
    return subprocess.run([sys.executable, "-m", "dlmm.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def _fit_args(data, *extra):
    return ["fit", data, "--formula", FORMULA, "--groups", "g", "--re-formula", "~x1",
            "--vc", "c=0 + C(c)", *extra]


def _error_line(proc) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("dlmm: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def _no_output(tmp_path: Path, name: str = "out") -> None:
    assert not (tmp_path / name).exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(f".{name}.")]


def run_dlmm_here(*args: str) -> subprocess.CompletedProcess:
    """``dlmm ARGS`` run by :func:`dlmm.cli.main` in this process, its exit code, stdout
    and stderr as :func:`run_dlmm` gives them. For runs refused before any work (exit 2),
    where a new interpreter's start would be nearly all the time; the runs that do the
    work, and the command's life as a process, go through :func:`run_dlmm`."""
    import contextlib
    import io

    from dlmm import cli

    argv = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return subprocess.CompletedProcess(["dlmm", *argv], code, out.getvalue(), err.getvalue())
