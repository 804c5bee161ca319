"""``dlmm bench`` at a tiny size."""

from __future__ import annotations

import json

from tests.cli.helpers import run_dlmm


def test_bench_runs_at_a_tiny_size_and_writes_valid_json(tmp_path):
    proc = run_dlmm("bench", "--sizes", "200,400", "--per-group", "6", "--fe", "3",
                    "--workers", "1", "--peer-budget", "30", "--data-dir", tmp_path / "data",
                    "--output", tmp_path / "bench", "--quiet", timeout=240)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "bench" / "bench.json").read_text())
    assert doc["schema"] == "dlmm.bench/1"
    rows = doc["results"]
    assert [r["n_groups"] for r in rows] == [200, 400]
    assert [r["rows"] for r in rows] == [1200, 2400]
    for r in rows:
        assert r["converged"] is True and r["evaluations"] > 0
        parts = (r["data_pass_seconds"] + r["optimizer_seconds"] + r["hessian_seconds"])
        assert 0 < parts <= r["fit_seconds"]
        # statsmodels ran in the same run on the same data: same llf.
        assert abs(r["statsmodels"]["llf_rel_diff"]) < 1e-6
        assert r["statsmodels"]["ratio"] > 0
    assert "groups" in (tmp_path / "bench" / "bench.txt").read_text()
    assert (tmp_path / "bench" / "bench.png").stat().st_size > 1000
    assert "200" in proc.stdout  # the table is printed
