"""The statistics cache format: sums round-trip exactly, checks refuse what cannot be trusted."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from dlmm import InputError
from dlmm.io.stats_cache import MARKER, SCHEMA, StatsCache, load_sums, save_sums
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


def test_cache_folder_marker_and_manifest(tmp_path):
    cache = StatsCache(tmp_path / "c")
    assert json.loads((tmp_path / "c" / MARKER).read_text()) == {"schema": SCHEMA}
    assert cache.read_manifest("ab" * 32) is None
    doc = {"files": {"/d/a.parquet": {"identity": {}, "stats": "k1.npz", "sha256": "0",
                                      "levels": {}}},
           "spec": {}, "centering": {}}
    (tmp_path / "c" / "stats" / "k1.npz").write_bytes(b"1")
    (tmp_path / "c" / "stats" / "k2.npz").write_bytes(b"2")
    cache.write_manifest("ab" * 32, doc, None)
    back = StatsCache(tmp_path / "c").read_manifest("ab" * 32)
    assert back["files"] == doc["files"] and back["schema"] == SCHEMA
    # A new manifest removes the stats files only the previous one named.
    new = dict(doc, files={"/d/b.parquet": dict(doc["files"]["/d/a.parquet"], stats="k3.npz")})
    cache.write_manifest("ab" * 32, new, back)
    assert sorted(p.name for p in (tmp_path / "c" / "stats").iterdir()) == ["k2.npz"]
    cache.manifest_path("ab" * 32).write_text('{"schema": "dlmm.stats-cache/1"}')
    assert cache.read_manifest("ab" * 32) is None  # malformed: rebuilt, not trusted
    assert not [p for p in (tmp_path / "c").iterdir() if ".tmp-" in p.name]


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
