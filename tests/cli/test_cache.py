"""``dlmm fit --cache``, ``--start-from`` and ``--skip-unchanged`` on a real scheduler.

The references are fits of the same command without the option in question
(a full refit, a cold start); ``--skip-unchanged`` runs in process with every
Parquet reader and the cluster connection replaced by counters.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.cli.helpers import run_dlmm, run_dlmm_here
from tests.structure.test_cached import _write

MODEL = ["--formula", "y ~ x1 + C(c)", "--groups", "g", "--re-formula", "~x1"]


def _fit(data, scheduler, out, *extra):
    proc = run_dlmm("fit", data, *MODEL, "--scheduler", scheduler, "--output", out,
                    "--log-format", "json", *extra)
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    return json.loads((Path(out) / "result.json").read_text()), events


def _params(doc) -> np.ndarray:
    return np.array(list(doc["estimates"]["params"].values()))


def test_cached_refit_reads_the_new_files_only_and_a_warm_start_is_shorter(
        scheduler, tmp_path):
    data, cache = tmp_path / "data", tmp_path / "cache"
    _write(data, range(10))
    first, _ = _fit(data, scheduler, tmp_path / "yesterday", "--cache", cache)
    assert first["cache"]["files_read"] == 10
    _write(data, [10, 11])  # tonight's files
    doc, events = _fit(data, scheduler, tmp_path / "cached", "--cache", cache)
    logged = [e for e in events if e.get("event") == "cache"]
    assert len(logged) == 1 and logged[0]["files_read"] == 2
    assert logged[0]["message"].endswith("read 2 of 12 files (10 reused, 0 dropped)")
    assert (doc["cache"]["files_read"], doc["cache"]["files_reused"]) == (2, 10)
    assert sorted(Path(p).name for p in doc["cache"]["read"]) == [
        "part-00010.parquet", "part-00011.parquet"]
    assert doc["inputs"]["files"] == 12
    # (that the estimates are a full refit's: tests/structure/test_cached.py)

    # The same data from yesterday's optimum: fewer steps than the cold start above.
    warm, events = _fit(data, scheduler, tmp_path / "warm", "--start-from",
                        tmp_path / "yesterday")
    assert any(e.get("event") == "start_from" for e in events)
    assert warm["converged"] and doc["converged"]
    assert warm["optimizer"]["evaluations"] < doc["optimizer"]["evaluations"]
    np.testing.assert_allclose(_params(warm), _params(doc), rtol=1e-6)
    assert warm["inputs"] == doc["inputs"]

    proc = run_dlmm_here("fit", data, "--formula", "y ~ x1", "--groups", "g", "--re-formula",
                         "~x1", "--scheduler", scheduler, "--start-from",
                         tmp_path / "yesterday")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"dlmm: error: --start-from {str(tmp_path / 'yesterday')!r} fitted another model: "
        "its --formula is 'y ~ x1 + C(c)', this run's 'y ~ x1'")


def _count_reads(monkeypatch) -> list[str]:
    """Every way dlmm opens Parquet data (and the cluster) replaced by a counter."""
    import dask.dataframe as dd
    import pandas as pd
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    import dlmm.cli.cluster
    import dlmm.distributed.files

    calls: list[str] = []

    def counter(name):
        def called(*args, **kwargs):
            calls.append(name)
            raise AssertionError(f"{name} called")
        return called

    for mod, name in [(pq, "read_table"), (pq, "ParquetFile"), (pq, "read_schema"),
                      (pq, "read_metadata"), (pq, "ParquetDataset"), (ds, "dataset"),
                      (pd, "read_parquet"), (dd, "read_parquet"),
                      (dlmm.distributed.files, "read_file"), (dlmm.cli.cluster, "connected")]:
        monkeypatch.setattr(mod, name, counter(f"{mod.__name__}.{name}"))
    return calls


def test_skip_unchanged_reads_no_data(scheduler, tmp_path, monkeypatch, capsys):
    from dlmm.cli.runner import main

    data, out = tmp_path / "data", tmp_path / "out"
    _write(data, range(4))
    _fit(data, scheduler, out)
    before = (out / "result.json").stat().st_mtime_ns
    calls = _count_reads(monkeypatch)
    code = main(["fit", str(data), *MODEL, "--scheduler", scheduler, "--output", str(out),
                 "--overwrite", "--skip-unchanged", "--log-format", "json"])
    monkeypatch.undo()
    assert code == 0 and calls == []
    lines = [json.loads(x) for x in capsys.readouterr().err.splitlines()]
    result = [e for e in lines if e.get("event") == "result"]
    assert len(result) == 1 and result[0]["status"] == "unchanged"
    assert result[0]["files"] == 4
    assert (out / "result.json").stat().st_mtime_ns == before

    # What would not be skipped, and why (the run then fits as usual).
    from dlmm.cli.config import fit_options
    from dlmm.cli.nightly import list_inputs, unchanged
    from dlmm.cli.parser import build_parser

    def check(*extra):
        args = build_parser().parse_args(["fit", str(data), *MODEL, "--output", str(out),
                                          "--skip-unchanged", *extra])
        opts = fit_options(args)
        return unchanged(opts, list_inputs(opts["data"]))

    assert check() == (str(out), "")
    assert check("--ml") == (None, "the specification changed")
    _write(data, [2], seed=5)
    assert check() == (None, "the input files changed")
    (data / "part-00002.parquet").unlink()
    assert check() == (None, "the input files changed")
    assert check("--start-from", str(tmp_path / "none")) == (
        None, f"no previous result in {str(tmp_path / 'none')!r}")


# -- the cache's checks, its rule, and a cache that cannot be written ------------------

SIM_MODEL = ["--formula", "y ~ x1 + x2", "--groups", "g", "--re-formula", "~x1"]


def _sim_fit(data, scheduler, out, *extra, model=SIM_MODEL):
    """``dlmm fit`` of the simulated data: its exit code, result.json (or None), and its
    log events (JSON lines)."""
    proc = run_dlmm("fit", data, *model, "--scheduler", scheduler, "--output", out,
                    "--log-format", "json", *extra)
    events = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    result = Path(out) / "result.json"
    return proc, (json.loads(result.read_text()) if result.exists() else None), events


def _rows(data: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(f).metadata.num_rows for f in sorted(data.glob("*.parquet")))


def _statsmodels_fit(data: Path):
    """The reference: statsmodels' MixedLM (REML) of every row of ``data``."""
    import pandas as pd
    import statsmodels.formula.api as smf

    frame = pd.concat([pd.read_parquet(f) for f in sorted(data.glob("*.parquet"))],
                      ignore_index=True)
    model = smf.mixedlm("y ~ x1 + x2", frame, groups=frame["g"], re_formula="~x1")
    return model.fit(reml=True, gtol=1e-8)


@pytest.fixture(scope="module")
def filled_cache(simulated, scheduler, tmp_path_factory) -> Path:
    """A cache filled by ``dlmm fit --cache`` of the simulated data (tests copy it)."""
    cache = tmp_path_factory.mktemp("filled") / "cache"
    proc, _, _ = _sim_fit(simulated, scheduler, cache.parent / "first", "--cache", cache)
    assert proc.returncode == 0, proc.stderr
    return cache


def _cache_copy(filled_cache: Path, tmp_path: Path, edit=None) -> Path:
    import shutil

    cache = tmp_path / "cache"
    shutil.copytree(filled_cache, cache)
    if edit is not None:
        path = next(cache.glob("manifest-*.json"))
        doc = json.loads(path.read_text())
        edit(doc)
        path.write_text(json.dumps(doc))
    return cache


def test_an_aggregate_that_forgets_a_file_it_sums_is_not_counted_twice(
        simulated, scheduler, filled_cache, tmp_path):
    """Issue 21 item 3: a hand-edited manifest (its aggregate no longer names a file it
    sums) made that file counted twice: nobs 2400 for 1800 rows, "converged", exit 0."""
    forgotten = str(simulated / "part-00001.parquet")
    cache = _cache_copy(filled_cache, tmp_path,
                        lambda doc: doc["aggregate"]["files"].pop(forgotten))
    proc, doc, events = _sim_fit(simulated, scheduler, tmp_path / "out", "--cache", cache)
    assert proc.returncode == 0, proc.stderr
    assert doc["nobs"] == _rows(simulated) == 1800  # was 2400: file 1 counted twice
    warnings = [e["message"] for e in events if e["level"] == "warning"]
    assert len(warnings) == 1
    assert warnings[0].endswith("cannot be trusted: its checksum does not match its content "
                                "(edited by hand, or a bad merge); rebuilding the cache from "
                                "the data")
    assert doc["cache"]["rebuilt"].startswith("its manifest could not be trusted: its checksum")
    assert doc["cache"]["files_read"] == 4
    reference = _statsmodels_fit(simulated)
    np.testing.assert_allclose(list(doc["estimates"]["fe_params"].values()),
                               reference.fe_params.to_numpy(), rtol=1e-4)
    assert doc["estimates"]["llf"] == pytest.approx(reference.llf, rel=1e-6)


def test_a_manifest_missing_an_item_is_rebuilt_with_a_warning(
        simulated, scheduler, filled_cache, tmp_path):
    """Issue 21 item 3: a manifest without ``dtypes`` was exit 1 (KeyError); the README
    promises a rebuild with a warning (each item: tests/io/test_stats_cache.py)."""
    cache = _cache_copy(filled_cache, tmp_path, lambda doc: doc.pop("dtypes"))
    proc, doc, events = _sim_fit(simulated, scheduler, tmp_path / "out", "--cache", cache)
    assert proc.returncode == 0, proc.stderr
    assert [e["message"].split(" cannot be trusted: ")[1] for e in events
            if e["level"] == "warning"] == [
        "its checksum does not match its content (edited by hand, or a bad merge); "
        "rebuilding the cache from the data"]
    assert doc["nobs"] == _rows(simulated) and doc["cache"]["files_read"] == 4
    assert "dtypes" in json.loads(next(cache.glob("manifest-*.json")).read_text())


def test_with_few_rows_per_group_the_cache_is_not_used_and_the_log_says_so(
        scheduler, tmp_path):
    """Issue 20 item 6: below MIN_ROWS_PER_GROUP rows a group the cached pass is slower
    than a full pass (measured: dlmm.structure.cached); the run says so and reads every
    file, once, without the cache's sums."""
    data, cache = tmp_path / "data", tmp_path / "cache"
    proc = run_dlmm("simulate", "--groups", "150", "--per-group", "2", "--partitions", "3",
                    "--seed", "7", "--output", data)
    assert proc.returncode == 0, proc.stderr
    model = ["--formula", "y ~ x1 + x2", "--groups", "g"]
    proc, first, _ = _sim_fit(data, scheduler, tmp_path / "first", "--cache", cache,
                              model=model)
    assert proc.returncode == 0, proc.stderr
    assert first["cache"]["used"] is True  # filling it: nothing to decide on yet
    proc, doc, events = _sim_fit(data, scheduler, tmp_path / "out", "--cache", cache,
                                 model=model)
    assert proc.returncode == 0, proc.stderr
    why = ("2 rows per group at the last run (300 rows, 150 groups), fewer than 2.5: "
           "loading and merging the cached sums would cost as much as reading the rows; a "
           "full pass over every file instead")
    logged = [e for e in events if e.get("event") == "cache"]
    assert len(logged) == 1
    assert logged[0]["message"].endswith(f"read 3 of 3 files (0 reused, 0 dropped); "
                                         f"not used: {why}")
    assert (doc["cache"]["used"], doc["cache"]["decision"]) == (False, f"not used: {why}")
    assert doc["nobs"] == _rows(data) == 300 and doc["n_groups"] == 150
    assert doc["estimates"]["llf"] == pytest.approx(first["estimates"]["llf"], rel=1e-9)


# A read-only file system, also for root (CI runs the tests as root, and chmod does not
# stop root from writing): the dlmm process runs with a sitecustomize module that makes
# every call that would write under $DLMM_TEST_READONLY fail as a read-only file system
# does (EROFS; mkdir of an existing folder is EEXIST first, as Linux does). Reads go on.
_READONLY_SHIM = '''
import builtins, errno, io, os

_ROOT = os.environ.get("DLMM_TEST_READONLY")
if _ROOT:
    _ROOT = os.path.realpath(_ROOT)

    def _under(path):
        try:
            p = os.path.realpath(os.fspath(path))
        except TypeError:
            return False
        return p == _ROOT or p.startswith(_ROOT + os.sep)

    def _erofs(path):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(path))

    def _guard(func, writes):
        def guarded(path, *args, **kwargs):
            if _under(path) and writes(args, kwargs):
                _erofs(path)
            return func(path, *args, **kwargs)
        return guarded

    _WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    os.open = _guard(os.open, lambda a, k: (a[0] if a else k.get("flags", 0)) & _WRITE)
    _mode = lambda a, k: any(c in (a[0] if a else k.get("mode", "r")) for c in "wax+")
    builtins.open = io.open = _guard(builtins.open, _mode)
    for _name in ("unlink", "remove", "rmdir", "replace", "rename", "utime", "chmod"):
        setattr(os, _name, _guard(getattr(os, _name), lambda a, k: True))
    _mkdir = os.mkdir

    def _mkdir_guarded(path, *args, **kwargs):
        if _under(path):
            if os.path.lexists(path):
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), path)
            _erofs(path)
        return _mkdir(path, *args, **kwargs)

    os.mkdir = _mkdir_guarded
'''


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_a_cache_that_cannot_be_written_is_one_line_before_any_work(
        simulated, filled_cache, tmp_path):
    """Issue 21 item 13: a cache on a read-only file system was "cannot read Parquet
    data". It is refused before the cluster starts or any data are read (exit 2, one
    line naming the folder): a nightly run must not silently lose its cache."""
    import os
    import subprocess
    import sys

    from tests.cli.helpers import _error_line

    cache = _cache_copy(filled_cache, tmp_path)
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(_READONLY_SHIM)
    before, inputs = _tree(cache), _tree(simulated)
    env = dict(os.environ, DLMM_TEST_READONLY=str(cache),
               PYTHONPATH=os.pathsep.join([str(shim), str(Path(__file__).parents[2]),
                                           os.environ.get("PYTHONPATH", "")]))
    # the shim works: a write in the cache fails, a read does not
    check = subprocess.run([sys.executable, "-c", f"import pathlib; p = pathlib.Path("
                            f"{str(cache)!r}); p.joinpath('dlmm-cache.json').read_text(); "
                            "p.joinpath('x').write_text('x')"],
                           env=env, capture_output=True, text=True, timeout=60)
    assert "OSError: [Errno 30] Read-only file system" in check.stderr, check.stderr
    proc = subprocess.run([sys.executable, "-m", "dlmm.cli", "fit", str(simulated),
                           *SIM_MODEL, "--cache", str(cache), "--output",
                           str(tmp_path / "out")],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert _error_line(proc) == (
        f"dlmm: error: --cache {str(cache)!r}: the statistics cache folder cannot be written "
        "(Read-only file system): make it writable, or choose another folder")
    assert not (tmp_path / "out").exists()
    assert _tree(cache) == before and _tree(simulated) == inputs
