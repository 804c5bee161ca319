"""A column named with a Python keyword (``class``) at the command line (issue 20, item 8).

``--vc 'class=0 + C(class)'`` ended in "unexpected SyntaxError" (exit 1), with
backticks too, and ``dlmm simulate --vc class=0.7`` wrote such a column itself. The
installed ``dlmm`` command now stops with exit 2 and one line naming the column and
the spelling that reads it, ``C(Q('class'))`` (statsmodels' and formulaic's), before any
cluster starts; ``simulate`` refuses the name before writing anything.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.cli.helpers import TIMEOUT, _error_line, _no_output

DLMM = Path(sys.executable).with_name("dlmm")


def _dlmm(*args: str) -> subprocess.CompletedProcess:
    """The installed ``dlmm`` command, as a user runs it (this tree on PYTHONPATH)."""
    return subprocess.run([str(DLMM), *map(str, args)], capture_output=True, text=True,
                          timeout=TIMEOUT, env=os.environ.copy())


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    rng = np.random.default_rng(5)
    n = 48
    frame = pd.DataFrame({"y": rng.standard_normal(n), "x1": rng.standard_normal(n),
                          "g": np.repeat(np.arange(8), 6),
                          "class": rng.choice(["a", "b", "c"], n)})
    path = tmp_path_factory.mktemp("kw") / "data.parquet"
    frame.to_parquet(path)
    return path


@pytest.mark.parametrize("vc", ["class=0 + C(class)", "class=0 + C(`class`)"])
def test_fit_keyword_column_in_c_is_exit_2_one_line(data, tmp_path, vc):
    proc = _dlmm("fit", data, "--formula", "y ~ x1", "--groups", "g", "--vc", vc,
                 "--output", tmp_path / "out")
    assert proc.returncode == 2, proc.stderr
    line = _error_line(proc)
    assert "column 'class' is named with a Python keyword" in line, line
    assert "C(Q('class'))" in line and "unexpected" not in line, line
    _no_output(tmp_path)


def test_simulate_refuses_a_keyword_vc_name(tmp_path):
    proc = _dlmm("simulate", "--groups", "4", "--per-group", "3", "--vc", "class=0.7",
                 "--output", tmp_path / "sim")
    assert proc.returncode == 2, proc.stderr
    line = _error_line(proc)
    assert "--vc name 'class'" in line and "'class_'" in line, line
    _no_output(tmp_path, "sim")
