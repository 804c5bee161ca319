"""``dlmm bench`` at a tiny size."""

from __future__ import annotations

import json

import pytest

from tests.cli.helpers import run_dlmm, run_dlmm_here


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


def test_bench_crossed_runs_a_tiny_case_and_stops_peers_at_their_budget(tmp_path):
    """``--crossed``: dlmm from pandas and from Parquet on the same simulated ratings;
    a peer budget far below any peer's start-up stops the peers (reported, not
    waited for). The llf is checked against statsmodels fitted here on the same data."""
    import warnings

    import pandas as pd
    import statsmodels.formula.api as smf

    proc = run_dlmm("bench", "--crossed", "1500x60x30", "--workers", "1",
                    "--peer-budget", "0.2", "--data-dir", tmp_path / "data",
                    "--output", tmp_path / "out", "--quiet", timeout=300)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "out" / "bench-crossed.json").read_text())
    assert doc["schema"] == "dlmm.bench-crossed/1"
    (row,) = doc["results"]
    assert row["rows"] == 1500 and set(row["levels"]) == {"user", "item"}
    assert "timed_out" in row["statsmodels"]
    assert "lme4" not in row or "timed_out" in row["lme4"]
    (folder,) = [p for p in (tmp_path / "data").glob("crossed_1500x60x30_*") if p.is_dir()]
    frame = pd.read_parquet(folder).assign(one=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = smf.mixedlm("y ~ x", frame, groups="one", re_formula="0",
                          vc_formula={"user": "0 + C(user)", "item": "0 + C(item)"}).fit()
    for mode in ("dlmm_pandas", "dlmm_parquet"):
        assert row[mode]["converged"] and row[mode]["evaluations"] > 0
        # the polish's gradient differences are factorizations the steps do not count
        # (forward differences for the crossed engine: one per parameter, while the
        # polish's first point, already factored, is logged again)
        assert row[mode]["factorizations"] >= row[mode]["evaluations"] + 1
        assert row[mode]["seconds_per_factorization"] * row[mode]["factorizations"] == \
            pytest.approx(row[mode]["optimizer_seconds"], rel=1e-9)
        assert abs(row[mode]["llf"] - ref.llf) < 1e-6 * abs(ref.llf)
    assert row["dlmm_parquet"]["cluster_seconds"] > 0  # reported apart from the fit
    table = (tmp_path / "out" / "bench-crossed.txt").read_text()
    assert "1500x60x30" in table and ">0" in table and "1500x60x30" in proc.stdout


def test_bench_crossed_refuses_an_unknown_case_before_any_work(tmp_path):
    proc = run_dlmm_here("bench", "--crossed", "insteval,10x2", "--data-dir", tmp_path / "d")
    assert proc.returncode == 2
    assert "--crossed" in proc.stderr and "'10x2'" in proc.stderr
    assert not (tmp_path / "d").exists()


def test_bench_nested_refuses_an_unknown_case_before_any_work(tmp_path):
    proc = run_dlmm_here("bench", "--nested", "chem97,10x2", "--data-dir", tmp_path / "d")
    assert proc.returncode == 2
    assert "--nested" in proc.stderr and "'10x2'" in proc.stderr
    assert not (tmp_path / "d").exists()
