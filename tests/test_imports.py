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
