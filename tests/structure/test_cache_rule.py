"""When the statistics cache is used: the rule's decision (not a timing; the
measurements behind it are in :mod:`dlmm.structure.cache_rule`)."""

from __future__ import annotations

import json
from pathlib import Path

from dlmm.structure import cache_rule
from dlmm.structure.cache_rule import MIN_ROWS_PER_GROUP, cache_pays
from tests.structure.test_cached import _fit, _full, _same, _write


def test_the_rule_decides_on_rows_per_group():
    assert MIN_ROWS_PER_GROUP == 2.5
    assert cache_pays(None) == (True, "no previous run to decide on: filling the cache")
    assert cache_pays({"rows": 20_000, "groups": 10_000}) == (False, (
        "2 rows per group at the last run (20000 rows, 10000 groups), fewer than 2.5: "
        "loading and merging the cached sums would cost as much as reading the rows; a "
        "full pass over every file instead"))
    assert cache_pays({"rows": 24_999, "groups": 10_000})[0] is False
    assert cache_pays({"rows": 25_000, "groups": 10_000}) == (
        True, "2.5 rows per group at the last run (25000 rows, 10000 groups), at least 2.5")
    assert cache_pays({"rows": 10**9, "groups": 10**6})[0] is True
    assert cache_pays({"rows": 0, "groups": 0})[0] is True  # no groups: nothing to decide


def test_a_plain_pass_keeps_the_sums_and_records_the_shape(tmp_path, dask_client,
                                                          monkeypatch):
    """A run that does not use the cache leaves its sums as they are and records the
    data's new shape, so that the next run decides on today's data: the cache is never
    left behind for good."""
    data, cache = tmp_path / "data", tmp_path / "cache"
    _write(data, range(4))
    _fit(data, dask_client, cache)
    manifest = next(cache.glob("manifest-*.json"))
    before = json.loads(manifest.read_text())
    stats = sorted(p.name for p in (cache / "stats").iterdir())
    assert before["shape"] == {"rows": 100, "groups": 19}  # 4 groups a file, s0 to s2

    monkeypatch.setattr(cache_rule, "MIN_ROWS_PER_GROUP", 6.0)
    _write(data, [4])
    model, plain = _fit(data, dask_client, cache)
    report = model.cache_report
    assert (report.used, len(report.read), report.reused) == (False, 5, 0)
    assert report.decision.startswith("not used: 5.26 rows per group at the last run "
                                      "(100 rows, 19 groups), fewer than 6:")
    _same(plain, _full(data))
    after = json.loads(manifest.read_text())
    assert after["shape"] == {"rows": 125, "groups": 23}
    assert {k: v for k, v in after.items() if k not in ("shape", "checksum", "created")} == {
        k: v for k, v in before.items() if k not in ("shape", "checksum", "created")}
    assert sorted(p.name for p in (cache / "stats").iterdir()) == stats

    monkeypatch.setattr(cache_rule, "MIN_ROWS_PER_GROUP", 5.0)
    model, cached = _fit(data, dask_client, cache)
    assert model.cache_report.used and model.cache_report.decision.startswith("used: 5.43")
    assert [Path(p).name for p in model.cache_report.read] == ["part-00004.parquet"]
    _same(cached, _full(data))
