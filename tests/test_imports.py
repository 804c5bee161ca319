"""The kernels, and ``import dlmm`` itself, must not pull in Dask."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("dask", "distributed")


def _modules_after(statement: str) -> list[str]:
    code = (
        f"import json, sys\n{statement}\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "statement",
    [
        "import dlmm.kernels",
        "import dlmm",
    ],
)
def test_import_leaves_dask_out(statement):
    modules = _modules_after(statement)
    assert any(m == "dlmm" for m in modules)  # the import did happen
    heavy = [m for m in modules if m.split(".")[0] in HEAVY]
    assert heavy == [], f"{statement!r} imported {heavy[:5]}"


def test_the_check_sees_dask():
    """The probe is able to fail: importing dask shows up."""
    modules = _modules_after("import dlmm.kernels, dask")
    assert "dask" in modules


def test_a_fit_and_its_summary_leave_scipy_stats_out():
    """scipy.stats costs every process (each ``dlmm`` command, each Dask worker) 0.4 to
    0.7 s of import; a fit, its summary, tests and intervals need only scipy.special."""
    modules = _modules_after(
        "import numpy as np, pandas as pd, dlmm\n"
        "rng = np.random.default_rng(0); g = np.repeat(np.arange(30), 8)\n"
        "x = rng.normal(size=g.size)\n"
        "y = 1 + x + rng.normal(size=30)[g] + rng.normal(size=g.size)\n"
        "r = dlmm.mixedlm('y ~ x', pd.DataFrame({'y': y, 'x': x, 'g': g}), groups='g').fit()\n"
        "r.summary(); r.conf_int(); r.pvalues; r.t_test(np.eye(2)); r.wald_test(np.eye(2))")
    assert "dlmm.results.summary" in modules  # the summary did run
    stats = [m for m in modules if m.startswith("scipy.stats")]
    assert stats == [], stats[:5]
