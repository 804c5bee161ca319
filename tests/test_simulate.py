"""``dlmm.simulate``: exact sizes, whole groups per file, determinism, bounded memory."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import dlmm
from dlmm.cli import main
from dlmm.simulate import TRUTH_FILE, read_truth, simulate_parquet


def _files(path: Path) -> list[Path]:
    return sorted(path.glob("*.parquet"))


def test_exact_rows_in_files_of_whole_groups(tmp_path):
    out = tmp_path / "data"
    truth = simulate_parquet(out, n_groups=37, per_group=11, k_fe=4, re_formula="~x2",
                             vc={"c": 0.5, "b": 0.3}, vc_levels=3, partitions=5, seed=7)
    files = _files(out)
    assert [f.name for f in files] == [f"part-{p:05d}.parquet" for p in range(5)]
    frames = [pd.read_parquet(f) for f in files]
    assert sum(len(f) for f in frames) == 37 * 11
    assert list(frames[0].columns) == ["y", "x1", "x2", "x3", "g", "b", "c"]
    seen: set[int] = set()
    last = -1
    for frame in frames:
        groups = frame["g"].to_numpy()
        assert np.all(np.diff(groups) >= 0)  # contiguous, ascending
        assert groups[0] > last  # each group in one file only
        last = groups[-1]
        assert not seen & set(groups.tolist())
        seen |= set(groups.tolist())
        assert (frame.groupby("g").size() == 11).all()
    assert seen == set(range(37))
    assert set(frames[0]["c"]) <= {"c0", "c1", "c2"}
    assert pq.ParquetFile(files[0]).schema_arrow.field("g").type == "int64"

    on_disk = json.loads((out / TRUTH_FILE).read_text())
    assert on_disk == json.loads(json.dumps(truth)) == read_truth(out)
    assert on_disk["schema"] == "dlmm.truth/1"
    assert on_disk["simulation"]["nobs"] == 37 * 11
    assert [f["rows"] for f in on_disk["files"]] == [len(f) for f in frames]
    assert on_disk["model"] == {
        "formula": "y ~ x1 + x2 + x3", "groups": "g", "re_formula": "~x2",
        "vc": {"b": "0 + C(b)", "c": "0 + C(c)"},
    }
    t = on_disk["truth"]
    assert t["fe_params"] == pytest.approx({"Intercept": 1.0, "x1": 1 - 0.8 / 3,
                                            "x2": 1 - 1.6 / 3, "x3": 0.2})
    assert t["cov_re"]["names"] == ["g", "x2"]
    np.testing.assert_allclose(t["cov_re"]["matrix"], [[1.0, 0.1], [0.1, 0.25]])
    assert t["vcomp"] == pytest.approx({"b": 0.09, "c": 0.25})
    assert t["scale"] == 1.0
    # Dask reads the folder as the Parquet data set (the sidecar is skipped).
    import dask.dataframe as dd

    assert len(dd.read_parquet(str(out))) == 37 * 11


def test_same_rows_for_any_partitioning_and_batch(tmp_path):
    kw = {"n_groups": 23, "per_group": 9, "re_formula": "~x1", "vc": {"c": 1.0}, "seed": 3}
    a = simulate_parquet(tmp_path / "a", partitions=1, **kw)
    simulate_parquet(tmp_path / "b", partitions=6, batch_rows=10, **kw)
    simulate_parquet(tmp_path / "c", partitions=2, seed=4,
                     **{k: v for k, v in kw.items() if k != "seed"})
    frame_a = pd.read_parquet(tmp_path / "a")
    frame_b = pd.concat([pd.read_parquet(f) for f in _files(tmp_path / "b")],
                        ignore_index=True)
    pd.testing.assert_frame_equal(frame_a, frame_b)
    assert len(_files(tmp_path / "b")) == 6
    assert not np.allclose(frame_a["y"], pd.read_parquet(tmp_path / "c")["y"])
    assert a["truth"] == read_truth(tmp_path / "b")["truth"]


def test_data_follow_the_documented_model(tmp_path):
    truth = simulate_parquet(tmp_path / "d", n_groups=400, per_group=25, re_formula="~x1",
                             vc={"c": 0.8}, beta=[2.0, -1.0, 0.5], scale=0.5, partitions=3,
                             seed=11)
    m = truth["model"]
    frame = pd.read_parquet(tmp_path / "d")
    result = dlmm.mixedlm(m["formula"], frame, groups=m["groups"], re_formula=m["re_formula"],
                          vc_formula=m["vc"]).fit()
    t = truth["truth"]
    assert list(result.fe_params.index) == list(t["fe_params"])
    np.testing.assert_allclose(result.fe_params, [2.0, -1.0, 0.5], atol=0.12)
    assert list(result.cov_re.columns) == t["cov_re"]["names"]
    np.testing.assert_allclose(result.cov_re, t["cov_re"]["matrix"], atol=0.15)
    assert result.vcomp[0] == pytest.approx(0.64, rel=0.2)
    assert result.scale == pytest.approx(0.5, rel=0.05)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"partitions": 9}, "--partitions 9 is more than --groups 5"),
        ({"re_formula": "~z"}, "term 'z' is not one of the simulated columns"),
        ({"re_sd": [1.0, 2.0]}, "--re-sd gives 2 standard deviations"),
        ({"vc": {"x1": 1.0}}, "--vc name 'x1'"),
        ({"beta": [1.0]}, "--beta gives 1 values"),
        ({"per_group": 0}, "--per-group must be an integer >= 1"),
        ({"seed": -1}, "--seed must be an integer >= 0"),
    ],
)
def test_bad_arguments_name_the_option(tmp_path, kwargs, message):
    args = {"n_groups": 5, "per_group": 4, "partitions": 2, "seed": 0, **kwargs}
    with pytest.raises(dlmm.InputError, match=message.replace("[", r"\[")):
        simulate_parquet(tmp_path / "x", **args)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_refused_unless_overwrite(tmp_path):
    out = tmp_path / "data"
    simulate_parquet(out, 4, 3, partitions=2, seed=0)
    with pytest.raises(dlmm.InputError, match="exists; pass --overwrite"):
        simulate_parquet(out, 4, 3, partitions=1, seed=0)
    assert len(_files(out)) == 2
    simulate_parquet(out, 4, 3, partitions=1, seed=0, overwrite=True)
    assert len(_files(out)) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no temporary folders


def test_command_line(tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["simulate", "--groups", "6", "--per-group", "5", "--fe", "2", "--re-formula",
                 "~x1", "--vc", "c=0.5", "--partitions", "3", "--seed", "1", "--output",
                 str(out), "--quiet"])
    assert code == 0
    assert capsys.readouterr().err == ""
    truth = read_truth(out)
    assert truth["simulation"]["nobs"] == 30 and len(_files(out)) == 3
    assert truth["model"]["vc"] == {"c": "0 + C(c)"}
    code = main(["simulate", "--groups", "6", "--per-group", "5", "--vc", "c=big",
                 "--partitions", "1", "--seed", "1", "--output", str(tmp_path / "bad")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("dlmm: error: --vc c='big'")
    assert not (tmp_path / "bad").exists()


_PROBE = textwrap.dedent("""
    import json, resource, sys, tracemalloc
    import pyarrow as pa
    from dlmm.simulate import simulate_parquet
    out, groups, per_group, parts = sys.argv[1], *map(int, sys.argv[2:5])
    # Warm up every code path at the same partition size, then measure.
    simulate_parquet(out + "/warm", groups // parts, per_group, re_formula="~x1",
                     vc={"c": 1.0}, partitions=1, seed=1)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tracemalloc.start()
    simulate_parquet(out + "/big", groups, per_group, re_formula="~x1", vc={"c": 1.0},
                     partitions=parts, seed=2)
    peak = tracemalloc.get_traced_memory()[1]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss0
    print(json.dumps({"traced_peak": peak, "rss_growth": rss,
                      "arrow_peak": pa.default_memory_pool().max_memory()}))
""")


@pytest.mark.skipif(sys.platform == "win32", reason="resource module")
def test_memory_is_bounded_by_a_partition(tmp_path):
    """A data set 16 partitions large is written in about one partition's memory."""
    groups, per_group, parts = 8000, 500, 16
    rows = groups * per_group
    row_bytes = 8 * 4 + 6  # y, x1, x2, g; the string column c ("c0".."c3" + offset)
    table_bytes = rows * row_bytes  # ~152 MB in Arrow
    partition_bytes = table_bytes / parts  # ~9.5 MB
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, str(tmp_path), str(groups), str(per_group), str(parts)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    probe = json.loads(proc.stdout)
    assert len(_files(tmp_path / "big")) == parts
    assert pq.ParquetDataset(tmp_path / "big").read(columns=["g"]).num_rows == rows
    # numpy (traced) and Arrow (its pool) stay within a few partitions' worth ...
    assert probe["traced_peak"] < 3 * partition_bytes, probe
    assert probe["arrow_peak"] < 3 * partition_bytes, probe
    # ... and the process grows by a small fraction of the table, not the table.
    assert probe["rss_growth"] < min(6 * partition_bytes, table_bytes / 3), probe
