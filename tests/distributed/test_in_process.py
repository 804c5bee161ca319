"""Small Parquet input is fitted in process unless a cluster is asked for (issue 20, item 2).

A user's script with no client fits a small local Parquet data set without starting
a cluster (a fresh process, as the user runs it); the size rule reads the files'
footers; a client given, or current, keeps the cluster, with the same estimates.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import dask
import numpy as np
import pandas as pd
import pytest

import dlmm
from dlmm.distributed.sources import IN_PROCESS_MAX_BYTES, fits_in_process, parquet_rows
from tests.conftest import REFERENCE

SCRIPT = textwrap.dedent('''
    import json, logging, sys

    import dlmm
    from dlmm.distributed import dask_backend

    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    r = dlmm.mixedlm("Reaction ~ Days", sys.argv[1], groups="Subject",
                     re_formula="~Days").fit()
    fitted = r.fittedvalues
    print(json.dumps({
        "backend": r.backend, "converged": bool(r.converged), "llf": r.llf,
        "fe_params": r.fe_params.tolist(), "cov_re": r.cov_re.to_numpy().tolist(),
        "cluster_start": r.timings["cluster_start"],
        "embedded": dask_backend._EMBEDDED.get("client") is not None,
        "fitted": [type(fitted).__module__.split(".")[0], len(fitted),
                   bool(fitted.index.is_unique)],
    }))
''')


@pytest.fixture(scope="module")
def case() -> dict:
    return json.loads((REFERENCE / "cases.json").read_text())["sleepstudy_reml"]


@pytest.fixture(scope="module")
def sleep_folder(tmp_path_factory) -> str:
    """sleepstudy as two Parquet files (rows 0-89, 90-179)."""
    data = pd.read_csv(REFERENCE / "data" / "sleepstudy.csv")
    folder = tmp_path_factory.mktemp("sleep") / "data"
    folder.mkdir()
    data.iloc[:90].to_parquet(folder / "part-0.parquet", index=False)
    data.iloc[90:].to_parquet(folder / "part-1.parquet", index=False)
    return str(folder)


def test_a_script_without_a_client_fits_small_parquet_in_process(sleep_folder, case):
    proc = subprocess.run([sys.executable, "-c", SCRIPT, sleep_folder],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out["backend"] == "local" and out["converged"]
    assert not out["embedded"] and out["cluster_start"] == 0.0
    assert "cluster start" not in proc.stderr
    assert out["fitted"] == ["pandas", 180, True]  # rows numbered 0..179 over the files
    expected = case["expected"]
    assert out["llf"] == pytest.approx(expected["llf"], abs=1e-4)
    np.testing.assert_allclose(out["fe_params"], list(expected["fe_params"].values()),
                               rtol=1e-5)
    np.testing.assert_allclose(out["cov_re"], expected["cov_re"], rtol=1e-3)


def test_the_size_rule_reads_the_footers(tmp_path, sleep_folder):
    assert parquet_rows(sleep_folder) == 180
    assert parquet_rows(f"{sleep_folder}/part-*.parquet") == 180
    assert parquet_rows([f"{sleep_folder}/part-0.parquet"]) == 90
    assert parquet_rows("s3://bucket/data") is None  # remote: never read to decide
    columns = ["Reaction", "Days", "Subject"]
    values = 180 * len(columns) * 8
    assert IN_PROCESS_MAX_BYTES >= values and fits_in_process(sleep_folder, columns)
    with dask.config.set({"dlmm.in-process-max-bytes": values}):
        assert fits_in_process(sleep_folder, columns)
    with dask.config.set({"dlmm.in-process-max-bytes": values - 1}):
        assert not fits_in_process(sleep_folder, columns)
    with dask.config.set({"dlmm.in-process-max-bytes": "4 kiB"}):  # 4096 < 4320
        assert not fits_in_process(sleep_folder, columns)
    with dask.config.set({"dlmm.in-process-max-bytes": 0}):
        assert not fits_in_process(sleep_folder, columns)
    with dask.config.set({"dlmm.in-process-max-bytes": "lots"}), \
            pytest.raises(dlmm.InputError, match="dlmm.in-process-max-bytes 'lots'"):
        fits_in_process(sleep_folder, columns)


def test_a_current_client_keeps_the_cluster(sleep_folder, dask_client):
    """The fixture's client is current (the default): the data stay on its cluster.
    (Its estimates are the in-process fit's: tests/distributed/test_partitioning.py.)"""
    model = dlmm.mixedlm("Reaction ~ Days", sleep_folder, groups="Subject",
                         re_formula="~Days")
    assert model.exog_names == ["Intercept", "Days"]  # learned: the backend is chosen
    assert model._backend.name == "dask" and model._backend.client is dask_client
