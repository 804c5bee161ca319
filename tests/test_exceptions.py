"""``dlmm.ConvergenceWarning``: statsmodels' subclass when statsmodels is installed,
made on first use (importing dlmm imports no statsmodels), a ``UserWarning`` without it."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
from statsmodels.tools.sm_exceptions import ConvergenceWarning as SMConvergenceWarning

import dlmm
import dlmm.exceptions


def _run(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    return proc.stdout.strip()


def test_one_class_that_statsmodels_filters_catch():
    assert dlmm.ConvergenceWarning is dlmm.exceptions.ConvergenceWarning
    assert issubclass(dlmm.ConvergenceWarning, SMConvergenceWarning)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SMConvergenceWarning)
        with pytest.raises(dlmm.ConvergenceWarning):
            warnings.warn("stopped", dlmm.ConvergenceWarning, stacklevel=2)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = dlmm.exceptions.Nope


def test_statsmodels_is_imported_only_when_the_class_is_asked_for():
    out = _run("import sys, dlmm; a = 'statsmodels' in sys.modules; "
               "c = dlmm.ConvergenceWarning; print(a, 'statsmodels' in sys.modules)")
    assert out == "False True"


def test_without_statsmodels_a_user_warning():
    out = _run("import sys; sys.modules['statsmodels'] = None; import dlmm; "
               "c = dlmm.ConvergenceWarning; print(c.__mro__[1].__name__)")
    assert out == "UserWarning"
