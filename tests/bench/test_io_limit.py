"""``dlmm bench --io-limit`` at a tiny size: the floor, pass, steps, outputs and command,
their ratios, and the fit: statsmodels' likelihood at dlmm's estimates."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd

from tests.cli.helpers import run_dlmm


def test_a_tiny_io_limit_run_measures_each_part_beside_the_floor(tmp_path):
    import statsmodels.formula.api as smf
    from statsmodels.regression.mixed_linear_model import MixedLMParams

    proc = run_dlmm("bench", "--io-limit", "--sizes", "40", "--per-group", "6", "--fe", "3",
                    "--workers", "1", "--data-dir", tmp_path / "data",
                    "--output", tmp_path / "out", "--quiet", timeout=240)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "out" / "bench-io.json").read_text())
    assert doc["schema"] == "dlmm.bench-io/1"
    (row,) = doc["results"]
    assert (row["rows"], row["files"]) == (240, 1)  # the bare read read every row
    assert row["floor_seconds"] > 0 and row["converged"] and row["steps"] >= 1
    assert 0 < row["pass_seconds"] < row["command_seconds"]
    assert 0 <= row["outputs_seconds"] < row["command_seconds"]
    parts = ("start", "cluster", "pass", "optimizer", "outputs", "close")
    assert all(row[f"{k}_seconds"] > 0 for k in parts)
    assert sum(row[f"{k}_seconds"] for k in parts) < row["command_seconds"]
    for key in ("pass", "outputs", "command"):
        assert row[f"{key}_vs_floor"] == row[f"{key}_seconds"] / row["floor_seconds"]
    assert np.isclose(row["step_seconds"] * row["steps"], row["optimizer_seconds"])
    # the worker process's peak resident memory: Python, Dask and dlmm's modules at least
    assert 50 * 2**20 < row["worker_peak_bytes"] < 1.5 * 2**30
    assert "240" in proc.stdout  # the table is printed
    assert "240" in (tmp_path / "out" / "bench-io.txt").read_text()

    frame = pd.read_parquet(row["data"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = smf.mixedlm("y ~ x1 + x2", frame, groups="g", re_formula="~x1")
    est = row["estimates"]
    params = MixedLMParams.from_components(
        fe_params=np.array(list(est["fe_params"].values())),
        cov_re=np.array(est["cov_re"]["matrix"]) / est["scale"])
    model.reml, model.cov_pen = True, None  # what statsmodels' fit sets first
    np.testing.assert_allclose(row["llf"], model.loglike(params, profile_fe=True), rtol=1e-9)


def test_a_workers_peak_is_its_high_water_mark_not_its_memory_at_the_read():
    """The peak watch reads the kernel's high-water mark of a child: a child that held
    300 MB and gave them back still shows them (its resident size no longer does)."""
    import subprocess
    import sys

    import psutil

    from dlmm.bench.io_limit import _PeakWatch

    code = ("import sys\nb = b'x' * (300 * 2**20)\ndel b\nprint('freed', flush=True)\n"
            "sys.stdin.readline()\n")
    with subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True) as child:
        try:
            assert child.stdout.readline().strip() == "freed"  # waits for the child
            proc = psutil.Process(child.pid)
            assert proc.memory_info().rss < 150 * 2**20
            assert _PeakWatch._high_water(proc) >= 300 * 2**20
        finally:
            child.stdin.write("\n")
            child.stdin.flush()
