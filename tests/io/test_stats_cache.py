"""The statistics cache format: sums round-trip exactly, checks refuse what cannot be trusted."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from dlmm import InputError
from dlmm.io.cache_manifest import manifest_checksum
from dlmm.io.stats_cache import (
    MARKER,
    SCHEMA,
    StatsCache,
    load_sums,
    save_sums,
)
from dlmm.kernels.block import KeyedCrossProducts
from dlmm.kernels.crossprod import group_crossproducts, row_crossproduct
from dlmm.kernels.pieces import RowTotals


def _sums(labels):
    rng = np.random.default_rng(4)
    n = 12
    codes = np.arange(n) % len(labels)
    z = np.column_stack([np.ones(n), rng.normal(size=n)])
    xy = np.column_stack([np.ones(n), rng.normal(size=(n, 2))])
    w = pd.get_dummies(rng.choice(3, n)).to_numpy(float)
    import scipy.sparse as sp

    cp = group_crossproducts(codes, len(labels), z, xy, sp.csr_array(w))
    totals = RowTotals(row_crossproduct(xy), float(n), 1.0, np.array([0.0, 1.0]),
                       np.zeros(2), z.T @ z)
    return KeyedCrossProducts(np.asarray(labels, dtype=object), cp), totals


@pytest.mark.parametrize("labels", [["a", "b", "c"], [3, 7, 11], [0.5, 1.5, 2.5]])
def test_sums_round_trip_bit_for_bit(tmp_path, labels):
    keyed, totals = _sums(labels)
    info = save_sums(keyed, totals, str(tmp_path / "x.npz"))
    assert info["stats"] == "x.npz" and info["bytes"] == (tmp_path / "x.npz").stat().st_size
    back_keyed, back_totals = load_sums(str(tmp_path / "x.npz"), info["sha256"])
    assert back_keyed.labels.tolist() == labels
    for name in ("n", "zz", "zr", "wz_group", "wz_slot", "wz", "wr", "ww_group", "ww_slot_a",
                 "ww_slot_b", "ww"):
        np.testing.assert_array_equal(getattr(back_keyed.cp, name), getattr(keyed.cp, name))
    for name in ("xy_cross", "missing_by_column", "infinite_by_column", "z_cross"):
        np.testing.assert_array_equal(getattr(back_totals, name), getattr(totals, name))
    assert (back_totals.n_rows, back_totals.n_dropped) == (12.0, 1.0)
    assert [p.name for p in tmp_path.iterdir()] == ["x.npz"]  # no temporary left


def test_untrusted_sums_are_named(tmp_path):
    keyed, totals = _sums(["a", "b"])
    info = save_sums(keyed, totals, str(tmp_path / "x.npz"))
    assert "does not match its SHA-256" in load_sums(str(tmp_path / "x.npz"), "0" * 64)
    assert load_sums(str(tmp_path / "gone.npz"), info["sha256"]).startswith("cannot read")
    with pytest.raises(InputError, match=r"group labels of type Timestamp cannot be kept"):
        save_sums(KeyedCrossProducts(np.array([pd.Timestamp(0)], dtype=object), keyed.cp),
                  totals, str(tmp_path / "y.npz"))


def _entry(path: str, stats: str, n_rows: int) -> dict:
    return {"identity": {"path": path, "size": 10, "modified": "1", "content": ""},
            "stats": stats, "sha256": "0" * 64, "bytes": 1, "levels": {"c": ["a"]},
            "n_rows": n_rows, "n_dropped": 1, "n_groups": 2}


def _doc() -> dict:
    """A manifest as the cached pass writes it (two files, an aggregate)."""
    files = {"/d/a.parquet": _entry("/d/a.parquet", "k1.npz", 5),
             "/d/b.parquet": _entry("/d/b.parquet", "k2.npz", 7)}
    return {"model_key": {}, "engine": "grouped",
            "spec": {"formula": "y ~ x1", "groups": "g", "re_formula": None,
                     "vc_formula": {}, "columns": ["y", "x1", "g"], "levels": {},
                     "stateful": False},
            "centering": {"xy_shift": [0.0, 1.5, 2.0], "z_shift": [0.0],
                          "x_intercept": 0, "z_intercept": 0},
            "dtypes": {"y": "float64", "x1": "float64", "g": "int64"},
            "files": files, "shape": {"rows": 14, "groups": 3},
            "aggregate": {"files": {p: e["stats"] for p, e in files.items()},
                          "pieces": [{"stats": "p1.npz", "sha256": "1" * 64}],
                          "totals": {"stats": "t.npz", "sha256": "2" * 64},
                          "n_files": 2, "n_rows": 12, "n_dropped": 2, "n_groups": 3}}


def test_cache_folder_marker_and_manifest(tmp_path):
    cache = StatsCache(tmp_path / "c")
    assert json.loads((tmp_path / "c" / MARKER).read_text()) == {"schema": SCHEMA}
    assert cache.read_manifest("ab" * 32) is None
    doc = _doc()
    for name in ("k1.npz", "k2.npz", "k9.npz"):
        (tmp_path / "c" / "stats" / name).write_bytes(b"1")
    cache.write_manifest("ab" * 32, doc, None)
    back = StatsCache(tmp_path / "c").read_manifest("ab" * 32)
    assert back["files"] == doc["files"] and back["schema"] == SCHEMA
    assert back["checksum"] == manifest_checksum(back)
    # A new manifest removes the stats files only the previous one named.
    new = _doc()
    new["files"]["/d/a.parquet"]["stats"] = new["aggregate"]["files"]["/d/a.parquet"] = "k3.npz"
    cache.write_manifest("ab" * 32, new, back)
    assert sorted(p.name for p in (tmp_path / "c" / "stats").iterdir()) == ["k2.npz", "k9.npz"]
    cache.manifest_path("ab" * 32).write_text('{"schema": "dlmm.stats-cache/1"}')
    assert cache.read_manifest("ab" * 32) is None  # malformed: rebuilt, not trusted
    assert not [p for p in (tmp_path / "c").iterdir() if ".tmp-" in p.name]


def _without(doc: dict, *keys) -> dict:
    doc = json.loads(json.dumps(doc))
    target = doc
    for k in keys[:-1]:
        target = target[k]
    del target[keys[-1]]
    return doc


@pytest.mark.parametrize(("keys", "why"), [
    (("dtypes",), "its 'dtypes' is missing"),
    (("centering", "xy_shift"), "its 'centering.xy_shift' is missing"),
    (("spec", "formula"), "its 'spec.formula' is missing"),
    (("files", "/d/b.parquet", "identity", "size"),
     "its files['/d/b.parquet']'s identity (path, size, modified, content) is missing"),
    (("files", "/d/a.parquet", "n_rows"), "its files['/d/a.parquet']'s counts"),
    (("aggregate", "files", "/d/b.parquet"),
     "its aggregate does not name exactly the files of the manifest (not '/d/b.parquet')"),
    (("shape",), "its 'shape' is missing"),
])
@pytest.mark.parametrize("sealed", [False, True])
def test_a_manifest_missing_an_item_is_not_trusted(tmp_path, caplog, keys, why, sealed):
    """Edited by hand (the checksum no longer matches), or so that it does (a tool that
    recomputes it): either way a warning names the problem and the cache is rebuilt."""
    cache = StatsCache(tmp_path / "c")
    cache.write_manifest("ab" * 32, _doc(), None)
    doc = _without(json.loads(cache.manifest_path("ab" * 32).read_text()), *keys)
    if sealed:
        doc["checksum"] = manifest_checksum(doc)
    cache.manifest_path("ab" * 32).write_text(json.dumps(doc))
    with caplog.at_level("WARNING", logger="dlmm"):
        assert cache.read_manifest("ab" * 32) is None
    expected = why if sealed else "its checksum does not match its content"
    assert cache.distrust.startswith(expected)
    assert f"cannot be trusted: {expected}" in caplog.text
    assert "rebuilding the cache from the data" in caplog.text


def test_counts_that_do_not_add_up_and_an_old_manifest(tmp_path):
    cache = StatsCache(tmp_path / "c")
    doc = _doc()
    doc["aggregate"]["n_rows"] = 13  # its files count 12
    cache.write_manifest("ab" * 32, doc, None)
    assert cache.read_manifest("ab" * 32) is None
    assert cache.distrust == "its aggregate counts 2 files and 13 rows, its files 2 and 12"
    # One written before checksums: rebuilt once (it cannot be told from an edit).
    doc = json.loads(cache.manifest_path("ab" * 32).read_text())
    del doc["checksum"]
    cache.manifest_path("ab" * 32).write_text(json.dumps(doc))
    assert cache.read_manifest("ab" * 32) is None
    assert cache.distrust.startswith("it has no checksum")


def test_what_is_not_a_cache_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError, match=r"is a file, not a folder"):
        StatsCache(tmp_path / "f")
    with pytest.raises(InputError, match=r"must be a local \(or shared\) folder, not a URL"):
        StatsCache("s3://bucket/cache")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / MARKER).write_text("not json")
    with pytest.raises(InputError, match=r"cannot read its dlmm-cache.json"):
        StatsCache(tmp_path / "d")
