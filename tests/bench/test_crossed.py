"""The crossed benchmark: its simulated data have the promised shape, and a tiny run
gives statsmodels' llf in the same run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dlmm.bench.crossed import movielens_like, run_crossed_bench


def test_movielens_like_is_skewed_as_ratings_are():
    frame = movielens_like(200_000, 5_000, 1_000, seed=3)
    assert list(frame.columns) == ["user", "item", "x", "y"] and len(frame) == 200_000
    items = frame["item"].value_counts()
    users = frame["user"].value_counts()
    # Zipf-like items: the top 1% of items hold far more than 1% of the rows.
    assert items.iloc[:10].sum() / len(frame) > 0.25
    # Gamma(0.6) activity: the busiest tenth of users hold about half the rows.
    assert 0.35 < users.iloc[: len(users) // 10].sum() / len(frame) < 0.7
    assert (items == 1).any() or (users == 1).any()  # levels seen once
    # The simulated variance components, roughly: Var(y | x) = 0.25 + 0.16 + 1.
    resid = frame["y"] - 3.5 - 0.3 * frame["x"]
    np.testing.assert_allclose(resid.var(), 1.41, rtol=0.1)



def test_heavy_tailed_users_as_movielens_has_them():
    """``users="lognormal"`` (the case ``ROWSxUSERSxITEMSxheavy``): a few users rate a
    large share of the items, so the sum over users of (items seen)^2, the Schur
    update's work, passes the gamma activity's on the same rows (2x at the ml-32m
    shape); the response keeps its simulated variances."""
    from dlmm.bench.crossed import _case

    def square_sum(frame):
        seen = frame[["user", "item"]].drop_duplicates()["user"].value_counts()
        return float((seen.to_numpy(dtype=float) ** 2).sum()), int(seen.max())

    gamma = movielens_like(300_000, 5_000, 2_000, seed=4)
    heavy = movielens_like(300_000, 5_000, 2_000, seed=4, users="lognormal")
    (sq_gamma, top_gamma), (sq_heavy, top_heavy) = square_sum(gamma), square_sum(heavy)
    assert sq_heavy > 1.3 * sq_gamma and top_heavy > 2.5 * top_gamma, (
        sq_heavy / sq_gamma, top_heavy, top_gamma)
    resid = heavy["y"] - 3.5 - 0.3 * heavy["x"]
    np.testing.assert_allclose(resid.var(), 1.41, rtol=0.1)
    case = _case("31500000x200000x16000xheavy:ml")
    assert (case["rows"], case["users"], case["items"], case["users_tail"], case["reml"]) \
        == (31_500_000, 200_000, 16_000, "lognormal", False)
    assert _case("1000x50x20")["users_tail"] == "gamma"
    with pytest.raises(ValueError, match="users='pareto'"):
        movielens_like(100, 10, 5, users="pareto")

def test_a_tiny_crossed_run_matches_statsmodels(tmp_path, dlmm_children_in_process):
    doc = run_crossed_bench(["1500x60x30"], workers=1, data_dir=tmp_path,
                            peers=("statsmodels",), log=lambda line: None)
    row = doc["results"][0]
    assert row["rows"] == 1500 and set(row["levels"]) == {"user", "item"}
    for mode in ("dlmm_pandas", "dlmm_parquet"):
        assert row[mode]["converged"] and row[mode]["driver_peak_mb"] > 0
    assert abs(row["statsmodels"]["llf_rel_diff"]) < 1e-8
    np.testing.assert_allclose(row["dlmm_parquet"]["llf"], row["statsmodels"]["llf"],
                               rtol=1e-8)


def test_a_design_over_the_driver_limit_is_reported_as_refused(tmp_path, monkeypatch, capsys):
    """A fit dlmm refuses (here: the level pairs over a lowered driver limit) is a
    result of the benchmark with dlmm's own words, not a crash or a traceback."""
    import json

    import dlmm.structure.crossed as crossed
    from dlmm.bench.crossed import _case, _child, _write_data, crossed_line

    path = _write_data(_case("800x40x20"), tmp_path, tmp_path / "unused.csv", 2, 0)
    monkeypatch.setattr(crossed, "MAX_DRIVER_BYTES", 4000.0)  # the 20 x 20 dense part fits
    _child(json.dumps({"mode": "pandas", "path": str(path), "formula": "y ~ x",
                       "factors": ["user", "item"], "workers": 1}))
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("DLMM-BENCH ")]
    out = json.loads(line[0][len("DLMM-BENCH "):])
    assert out["refused"].startswith("the crossed engine would need about")
    assert "'user'" in out["refused"] and "seconds" not in out
    row = {"case": "800x40x20", "rows": 800, "levels": {"user": 40, "item": 20},
           "dlmm_pandas": out, "dlmm_parquet": out}
    assert "dlmm pandas the crossed engine would need" in crossed_line(row)


def test_star_is_a_crossed_case_with_lme4s_three_factors():
    """``star`` parses as mlmRev's STAR model (three intercept factors, lme4's spelling
    beside statsmodels'); an unknown name is refused naming the cases there are."""

    from dlmm.bench.crossed import STAR_FORMULA, _case, _kind, check_cases

    check_cases(["star", "insteval", "1500x60x30"])
    case = _case("star")
    assert case["formula"] == STAR_FORMULA == "math ~ gr + sx + eth + cltype"
    assert case["factors"] == ["id", "tch", "sch"]
    assert _kind(Path("unused")).lme4_formula(case) == (
        "math ~ gr + sx + eth + cltype + (1 | id) + (1 | tch) + (1 | sch)")
    with pytest.raises(ValueError, match="'stars' is neither 'insteval', 'star'"):
        check_cases(["stars"])
