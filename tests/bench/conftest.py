"""Fixtures of the benchmark tests."""

from __future__ import annotations

import contextlib
import io
import json

import pytest


@pytest.fixture
def dlmm_children_in_process(monkeypatch):
    """Run a benchmark's dlmm fits (``fit_child``, pandas and Parquet modes) in this
    process instead of a fresh interpreter each: the same function, its same
    ``DLMM-BENCH`` line read back, without two interpreter starts and kernel loads per
    case. The child processes themselves are run by ``dlmm bench --crossed`` in
    ``tests/cli/test_bench.py``, on the same code (``dlmm.bench.cases.run_cases``)."""
    import dlmm.bench.cases as cases

    def in_process(args: dict, timeout: float) -> dict:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            cases.fit_child(json.dumps(args))
        lines = [x for x in out.getvalue().splitlines() if x.startswith("DLMM-BENCH ")]
        assert len(lines) == 1, out.getvalue()
        return json.loads(lines[0][len("DLMM-BENCH "):])

    monkeypatch.setattr(cases, "_dlmm_in_child", in_process)
