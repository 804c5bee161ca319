"""``dlmm fit --driver-memory``: the driver's limit of a crossed fit (issue 24, item 3)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .helpers import _error_line, run_dlmm


def test_a_dense_part_beyond_the_driver_memory_is_refused_in_process(tmp_path):
    """60 users x 30 items in process (small local data, no cluster): a 30 x 30 dense
    part over ``--driver-memory 5kB`` is refused with exit 2 in one line naming the
    flag, the factors and the sizes, before the fit."""
    rng = np.random.default_rng(5)
    n = 600
    user = np.concatenate([np.arange(60), rng.integers(0, 60, n - 60)])
    item = np.concatenate([np.arange(30), rng.integers(0, 30, n - 30)])
    path = tmp_path / "ratings.parquet"
    pd.DataFrame({"y": rng.normal(size=n), "x": rng.normal(size=n), "user": user,
                  "item": item}).to_parquet(path)
    proc = run_dlmm("fit", path, "--formula", "y ~ x", "--vc", "user=0 + C(user)",
                    "--vc", "item=0 + C(item)", "--driver-memory", "5kB", "--quiet")
    assert proc.returncode == 2, proc.stderr
    line = _error_line(proc)
    assert "the factors after 'user' ('item': 30 levels) (30 x 30 random effects" in line
    assert "more than its limit of 5e-06 GB (--driver-memory)" in line
    assert "dlmm fit --workers or --scheduler" in line
    assert proc.stdout == ""
