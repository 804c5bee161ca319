"""A column named with a Python keyword (``class``) at the command line (issue 20, item 8).

``--vc 'class=0 + C(class)'`` ended in "unexpected SyntaxError" (exit 1), with
backticks too, although ``dlmm simulate --vc class=0.7`` writes such a column itself.
The installed ``dlmm`` command now reads the column in both spellings
(:mod:`dlmm.spec.keywords` writes it ``Q('class')`` for formulaic's Python code), and
the saved result loads again: the fit is statsmodels' with ``C(Q('class'))``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

import dlmm
from tests.cli.helpers import TIMEOUT

DLMM = Path(sys.executable).with_name("dlmm")


def _dlmm(*args: str) -> subprocess.CompletedProcess:
    """The installed ``dlmm`` command, as a user runs it (this tree on PYTHONPATH)."""
    return subprocess.run([str(DLMM), *map(str, args)], capture_output=True, text=True,
                          timeout=TIMEOUT, env=os.environ.copy())


@pytest.fixture(scope="module")
def simulated(tmp_path_factory) -> Path:
    """``dlmm simulate --vc class=0.7``: a data set with a column named ``class``."""
    path = tmp_path_factory.mktemp("kw") / "sim"
    proc = _dlmm("simulate", "--groups", "30", "--per-group", "8", "--vc", "class=0.7",
                 "--seed", "3", "--output", path)
    assert proc.returncode == 0, proc.stderr
    return path


@pytest.fixture(scope="module")
def statsmodels_fit(simulated):
    frame = pd.read_parquet(simulated)
    assert "class" in frame.columns
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return smf.mixedlm("y ~ x1 + x2", frame, groups="g",
                           vc_formula={"class": "0 + C(Q('class'))"}).fit(reml=True)


@pytest.mark.parametrize("vc", ["class=0 + C(class)", "class=0 + C(`class`)"])
def test_fit_reads_a_keyword_column_as_statsmodels_q(simulated, statsmodels_fit, tmp_path, vc):
    proc = _dlmm("fit", simulated, "--formula", "y ~ x1 + x2", "--groups", "g", "--vc", vc,
                 "--output", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    result = dlmm.load_result(tmp_path / "out")  # the saved formula (with Q) loads
    sm = statsmodels_fit
    np.testing.assert_allclose(result.llf, sm.llf, rtol=1e-6)
    np.testing.assert_allclose(result.fe_params.to_numpy(), sm.fe_params.to_numpy(),
                               rtol=1e-5)
    np.testing.assert_allclose(result.vcomp, sm.vcomp, rtol=1e-3)
    np.testing.assert_allclose(result.scale, sm.scale, rtol=1e-4)
