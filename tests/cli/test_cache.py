"""``dlmm fit --cache``, ``--start-from`` and ``--skip-unchanged`` on a real scheduler.

The references are fits of the same command without the option in question
(a full refit, a cold start); ``--skip-unchanged`` runs in process with every
Parquet reader and the cluster connection replaced by counters.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tests.cli.helpers import run_dlmm
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

    proc = run_dlmm("fit", data, "--formula", "y ~ x1", "--groups", "g", "--re-formula",
                    "~x1", "--scheduler", scheduler, "--start-from", tmp_path / "yesterday")
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
