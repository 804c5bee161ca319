"""The command's process ends as soon as its run is done (issue 27: the interpreter's
finalization took 1.5-4 s after the outputs were written): ``atexit`` handlers still
run, the exit code is the run's, the outputs are complete; only the finalization (here:
an object of the script's that says when it is collected) is skipped. A program that
calls ``main`` with arguments gets its code back."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from dlmm.cli import main
from tests.conftest import REFERENCE

# The console script's shape (``from dlmm.cli import main; sys.exit(main())``) with two
# witnesses: an atexit handler and an object collected at the interpreter's finalization.
_SCRIPT = r"""
import atexit, sys
from dlmm.cli import main

class Witness:
    def __del__(self):
        sys.stderr.write("WITNESS finalized\n")

witness = Witness()
atexit.register(lambda: sys.stderr.write("WITNESS atexit\n"))
sys.argv = ["dlmm", *sys.argv[1:]]
sys.exit(main())
"""


def _witnesses(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("WITNESS")]


@pytest.fixture(scope="module")
def sleepstudy(tmp_path_factory):
    path = tmp_path_factory.mktemp("fast-exit") / "sleep.parquet"
    pd.read_csv(REFERENCE / "data" / "sleepstudy.csv").to_parquet(path, index=False)
    return path


def test_fit_exits_at_once_with_complete_outputs(sleepstudy, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT, "fit", str(sleepstudy), "--formula", "Reaction ~ Days",
         "--groups", "Subject", "--re-formula", "~Days", "--output", str(out), "-q"],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert _witnesses(proc.stderr) == ["WITNESS atexit"], proc.stderr
    import statsmodels.formula.api as smf

    frame = pd.read_parquet(sleepstudy)
    expected = smf.mixedlm("Reaction ~ Days", frame, groups="Subject",
                           re_formula="~Days").fit(reml=True)
    doc = json.loads((out / "result.json").read_text())
    assert doc["estimates"]["llf"] == pytest.approx(expected.llf, rel=1e-8)
    assert list(doc["estimates"]["fe_params"].values()) == pytest.approx(
        list(expected.fe_params), rel=1e-5)
    effects = pd.read_parquet(out / "random_effects.parquet")
    assert len(effects) == 18 and effects.notna().all().all()


def test_usage_error_keeps_its_exit_code(tmp_path):
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, "fit", str(tmp_path / "none.parquet"),
                           "--formula", "y ~ x", "--groups", "g", "--workers", "0"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if not ln.startswith("WITNESS")]
    assert len(lines) == 1 and lines[0].startswith("dlmm: error:"), proc.stderr
    assert _witnesses(proc.stderr) == ["WITNESS atexit"], proc.stderr


def test_main_called_with_arguments_returns():
    assert main(["fit", "--formula", "y ~ x"]) == 2  # no data: a usage error, returned
