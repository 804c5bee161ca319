"""The statistics cache: a cached refit reads only new or changed files and equals a full refit.

The reference is always a fit without a cache over the same files (a full
refit), made in the same session; a cached refit must give its estimates to
1e-10 relative. That the old files are not read is proved, not trusted: after
the first cached fit their bytes are replaced by garbage of the same size and
their modification times put back, so any read of them would fail.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import dlmm
from dlmm import InputError
from dlmm.io.stats_cache import aggregate_names

FORMULA = "y ~ x1 + C(c)"
KW = dict(groups="g", re_formula="~x1")
REL = 1e-10


def _file(j: int, seed: int = 0, levels=("a", "b", "c")) -> pd.DataFrame:
    """File j: four groups of its own and one group shared with a neighbour file
    (``s{(j + 1) // 2}``: files 99 and 100 share one), five rows each."""
    rng = np.random.default_rng(1000 * seed + j)
    labels = [f"g{j}-{k}" for k in range(4)] + [f"s{(j + 1) // 2}"]
    g = np.repeat(labels, 5)
    x1 = rng.normal(3.0, 1.0, g.shape[0])
    c = rng.choice(list(levels), g.shape[0])
    b0 = rng.normal(0, 1.0, len(labels)).repeat(5)
    b1 = rng.normal(0, 0.4, len(labels)).repeat(5)
    effect = pd.Series(c).map({"a": 0.0, "b": 0.3, "c": -0.2, "d": 0.5}).to_numpy()
    y = 1 + 0.5 * x1 + effect + b0 + b1 * x1 + rng.normal(0, 0.7, g.shape[0])
    return pd.DataFrame({"y": y, "x1": x1, "c": c, "g": g})


def _write(folder: Path, js, **kw) -> None:
    folder.mkdir(exist_ok=True)
    for j in js:
        _file(j, **kw).to_parquet(folder / f"part-{j:05d}.parquet", index=False)


def _fit(data, client, cache=None):
    model = dlmm.mixedlm(FORMULA, str(data), client=client, cache=cache, **KW)
    return model, model.fit()


def _full(folder):
    """A full refit: every file's rows in one pandas frame (file order), no cache."""
    frame = pd.concat([pd.read_parquet(f) for f in sorted(Path(folder).glob("*.parquet"))],
                      ignore_index=True)
    return dlmm.mixedlm(FORMULA, frame, **KW).fit()


def _same(a, b) -> None:
    np.testing.assert_allclose(a.params, b.params, rtol=REL, atol=0)
    np.testing.assert_allclose(a.bse, b.bse, rtol=REL, atol=0)
    np.testing.assert_allclose(np.asarray(a.cov_re), np.asarray(b.cov_re), rtol=REL, atol=0)
    assert a.llf == pytest.approx(b.llf, rel=REL, abs=0)
    assert a.scale == pytest.approx(b.scale, rel=REL, abs=0)
    assert (a.nobs, a.n_groups) == (b.nobs, b.n_groups)


def _garble(paths) -> None:
    """Replace each file's bytes by garbage of the same size; keep its mtime."""
    for p in paths:
        st = os.stat(p)
        Path(p).write_bytes(os.urandom(st.st_size))
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_five_new_files_read_alone_and_equal_a_full_refit(tmp_path, dask_client):
    data, ref, cache = tmp_path / "data", tmp_path / "ref", tmp_path / "cache"
    _write(data, range(100))
    first, _ = _fit(data, dask_client, cache)
    assert len(first.cache_report.read) == 100 and first.cache_report.rebuilt

    _write(ref, range(105))
    full = _full(ref)
    _garble(sorted(data.glob("*.parquet")))  # a read of an old file would now fail
    _write(data, range(100, 105))
    model, cached = _fit(data, dask_client, cache)
    report = model.cache_report
    assert sorted(Path(p).name for p in report.read) == [
        f"part-{j:05d}.parquet" for j in range(100, 105)]
    assert (report.reused, report.dropped, report.rebuilt) == (100, [], None)
    # The 100 old files' sums come from the aggregate alone: no per-file sums loaded.
    assert report.aggregate.startswith("used: the sums of 100 files in ")
    assert report.loaded == []
    _same(cached, full)
    assert cached.n_groups == 105 * 4 + 53  # s50 spans files 99 (old) and 100 (new)


def test_changed_removed_and_corrupt_files(tmp_path, dask_client, caplog):
    data, cache = tmp_path / "data", tmp_path / "cache"
    _write(data, range(12))
    _fit(data, dask_client, cache)
    (data / "part-00003.parquet").unlink()
    _write(data, [7], seed=1)  # new rows in an old file
    model, cached = _fit(data, dask_client, cache)
    report = model.cache_report
    assert [Path(p).name for p in report.read] == ["part-00007.parquet"]
    assert [Path(p).name for p in report.dropped] == ["part-00003.parquet"]
    assert report.reused == 10 and report.rebuilt is None
    # The aggregate summed files 3 and 7 as they were: the 10 unchanged files' own
    # sums are added instead (never a subtraction).
    assert report.aggregate.startswith("not used: 2 of the 12 files it sums changed")
    assert len(report.loaded) == 10
    _same(cached, _full(data))
    manifest = json.loads(next(cache.glob("manifest-*.json")).read_text())
    assert len(manifest["files"]) == 11
    assert len(list((cache / "stats").glob("*.npz"))) == 11  # the dropped ones removed
    assert sorted(manifest["aggregate"]["files"]) == sorted(manifest["files"])
    assert sorted(p.name for p in (cache / "aggregate").iterdir()) == sorted(
        aggregate_names(manifest["aggregate"]))  # the previous aggregate removed

    # A stats file that fails its check: that file alone is read again (once the
    # aggregate, which sums it, cannot be used: here file 0 is removed).
    entry = manifest["files"][str(data / "part-00005.parquet")]
    stats = cache / "stats" / entry["stats"]
    stats.write_bytes(stats.read_bytes()[:-10])
    (data / "part-00000.parquet").unlink()
    with caplog.at_level("WARNING", logger="dlmm"):
        model, cached = _fit(data, dask_client, cache)
    assert "does not match its SHA-256" in caplog.text
    assert [Path(p).name for p in model.cache_report.recomputed] == ["part-00005.parquet"]
    assert [Path(p).name for p in model.cache_report.read] == ["part-00005.parquet"]
    assert len(model.cache_report.loaded) == 9
    full = _full(data)
    _same(cached, full)

    # An untrusted manifest: every file read again.
    next(cache.glob("manifest-*.json")).write_text("{not json")
    model, again = _fit(data, dask_client, cache)
    assert model.cache_report.rebuilt.startswith("its manifest could not be trusted: it "
                                                 "cannot be read")
    assert len(model.cache_report.read) == 10
    _same(again, full)


def _aggregate(cache: Path) -> dict:
    return json.loads(next(cache.glob("manifest-*.json")).read_text())["aggregate"]


@pytest.mark.parametrize("damage", ["piece", "totals"])
def test_a_damaged_aggregate_falls_back_to_the_per_file_sums(tmp_path, dask_client, caplog,
                                                             damage):
    data, cache = tmp_path / "data", tmp_path / "cache"
    _write(data, range(8))
    _fit(data, dask_client, cache)
    agg = _aggregate(cache)
    assert len(agg["files"]) == 8 and agg["pieces"]
    entry = agg["pieces"][0] if damage == "piece" else agg["totals"]
    target = cache / "aggregate" / entry["stats"]
    target.write_bytes(target.read_bytes()[:-7])
    _write(data, [8])
    with caplog.at_level("WARNING", logger="dlmm"):
        model, cached = _fit(data, dask_client, cache)
    report = model.cache_report
    assert "does not match its SHA-256" in caplog.text
    assert [Path(p).name for p in report.read] == ["part-00008.parquet"]
    assert len(report.loaded) == 8 and report.recomputed == []
    _same(cached, _full(data))
    # A new aggregate was written: the next refit uses it, and it is right.
    _write(data, [9])
    model, cached = _fit(data, dask_client, cache)
    assert model.cache_report.aggregate.startswith("used: the sums of 9 files")
    assert model.cache_report.loaded == []
    _same(cached, _full(data))


def _manifest_path(cache: Path) -> Path:
    return next(cache.glob("manifest-*.json"))


def _forget(doc: dict, path: str, counts: bool) -> None:
    """Drop ``path`` from the manifest's files and its aggregate's file list (and, with
    ``counts``, from the aggregate's counts), as a hand edit might."""
    entry = doc["files"].pop(path)
    del doc["aggregate"]["files"][path]
    if counts:
        agg = doc["aggregate"]
        agg["n_files"] -= 1
        agg["n_rows"] -= entry["n_rows"]
        agg["n_dropped"] -= entry["n_dropped"]
        agg["n_groups"] -= entry["n_groups"]


@pytest.fixture(scope="module")
def filled(tmp_path_factory, dask_client):
    """Six files and a cache filled by a fit of them (copied by each test)."""
    root = tmp_path_factory.mktemp("filled")
    _write(root / "data", range(6))
    _fit(root / "data", dask_client, root / "cache")
    return root


@pytest.mark.parametrize("tamper", ["aggregate forgets a file", "a file forgotten",
                                    "a file forgotten, counts too", "a bad formula",
                                    "a file's counts"])
def test_a_manifest_that_does_not_add_up_is_never_trusted(filled, tmp_path, dask_client,
                                                         caplog, tamper):
    """Edits that keep the checksum right (recomputed, as a tool might): the counts and
    items are checked too. Whatever the edit, the rows are counted once."""
    import shutil

    from dlmm.io.cache_manifest import manifest_checksum

    data, cache = tmp_path / "data", tmp_path / "cache"
    shutil.copytree(filled / "data", data)
    shutil.copytree(filled / "cache", cache)
    doc = json.loads(_manifest_path(cache).read_text())
    doc = json.loads(json.dumps(doc).replace(str(filled / "data"), str(data)))
    gone = str(data / "part-00002.parquet")
    if tamper == "aggregate forgets a file":
        del doc["aggregate"]["files"][gone]
    elif tamper == "a bad formula":
        doc["spec"]["formula"] = "y ~ x1 + C(c"
    elif tamper == "a file's counts":  # and its aggregate's: only the sums can tell
        doc["files"][gone]["n_rows"] += 5
        doc["aggregate"]["n_rows"] += 5
        (data / "part-00005.parquet").unlink()  # so that the per-file sums are added
    else:
        _forget(doc, gone, counts=tamper.endswith("too"))
    doc["checksum"] = manifest_checksum(doc)
    _manifest_path(cache).write_text(json.dumps(doc))
    with caplog.at_level("WARNING", logger="dlmm"):
        model, cached = _fit(data, dask_client, cache)
    report = model.cache_report
    full = _full(data)
    _same(cached, full)
    n_files = 5 if tamper == "a file's counts" else 6
    assert cached.nobs == n_files * 25  # 25 rows a file
    if tamper == "a file forgotten, counts too":
        # The manifest adds up; the aggregate's totals archive does not (it sums 6 files).
        assert report.rebuilt is None
        assert report.aggregate.startswith("not used: its totals count 150 rows, the "
                                           "manifest 125")
        assert [Path(p).name for p in report.read] == ["part-00002.parquet"]
        return
    why = {"aggregate forgets a file": "its aggregate does not name exactly the files of "
           f"the manifest (not {gone!r})",
           "a file forgotten": "its aggregate counts 6 files and 150 rows, its files 5 and 125",
           "a bad formula": "its specification cannot be rebuilt",
           "a file's counts": "its sums did not add up (the sums count 125 rows used and 0 "
           "dropped, the files 130 and 0)"}[tamper]
    logged = ("the sums count 125 rows used and 0 dropped, the files 130 and 0; reading "
              "every file again") if tamper == "a file's counts" else why
    assert logged in caplog.text
    assert report.rebuilt.startswith(f"its manifest could not be trusted: {why}")
    assert len(report.read) == n_files


def test_a_new_level_learns_the_spec_again(tmp_path, dask_client):
    data, cache = tmp_path / "data", tmp_path / "cache"
    _write(data, range(6))
    _fit(data, dask_client, cache)
    _write(data, [6], levels=("a", "d"))
    model, cached = _fit(data, dask_client, cache)
    assert "column 'c': new level(s) 'd'" in model.cache_report.rebuilt
    assert len(model.cache_report.read) == 7
    assert "C(c)[T.d]" in cached.fe_params.index
    _same(cached, _full(data))
    # The only file with level d is gone: learned again without it.
    (data / "part-00006.parquet").unlink()
    model, cached = _fit(data, dask_client, cache)
    assert "level(s) 'd' no longer in the data" in model.cache_report.rebuilt
    assert "C(c)[T.d]" not in cached.fe_params.index


def test_foreign_folders_are_refused(tmp_path):
    data = tmp_path / "data"
    _write(data, range(2))
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match=r"is not empty and is not a dlmm statistics cache"):
        dlmm.mixedlm(FORMULA, str(data), cache=foreign, **KW).fit()
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    other = tmp_path / "other"
    other.mkdir()
    (other / "dlmm-cache.json").write_text('{"schema": "dlmm.stats-cache/9"}')
    with pytest.raises(InputError, match=r"format 'dlmm.stats-cache/9'; this dlmm reads"):
        dlmm.mixedlm(FORMULA, str(data), cache=other, **KW).fit()
    with pytest.raises(InputError, match=r"lies inside the input DATA"):
        dlmm.mixedlm(FORMULA, str(data), cache=data / "c", **KW).fit()
    with pytest.raises(InputError, match=r"need Parquet path"):
        dlmm.mixedlm(FORMULA, _file(0), cache=tmp_path / "c", **KW).fit()
