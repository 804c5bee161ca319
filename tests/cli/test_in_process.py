"""``dlmm fit`` of small Parquet data starts no cluster unless one is asked for (issue 20,
item 2): the run says so, ``result.json`` records no cluster, the numbers are lme4's."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from dlmm.cli import cluster
from tests.cli.helpers import run_dlmm
from tests.conftest import REFERENCE


def test_small_data_fit_in_process(tmp_path, reference_cases):
    case = reference_cases["sleepstudy_reml"]
    data = tmp_path / "sleep.parquet"
    pd.read_csv(REFERENCE / "data" / "sleepstudy.csv").to_parquet(data, index=False)
    out = tmp_path / "out"
    proc = run_dlmm("fit", data, "--formula", "Reaction ~ Days", "--groups", "Subject",
                    "--re-formula", "~Days", "--fitted", "--output", out)
    assert proc.returncode == 0, proc.stderr
    assert "no Dask cluster: the data are small enough to fit in this process" in proc.stderr
    assert "embedded" not in proc.stderr and "cluster start" not in proc.stderr
    doc = json.loads((out / "result.json").read_text())
    assert doc["cluster"] == {"kind": "none"} and doc["state"]["fit"]["backend"] == "local"
    expected = case["expected"]
    assert doc["estimates"]["llf"] == pytest.approx(expected["llf"], abs=1e-4)
    assert doc["estimates"]["fe_params"] == pytest.approx(expected["fe_params"], rel=1e-5)
    fitted = pd.read_parquet(out / "fitted.parquet")
    assert len(fitted) == 180


@pytest.mark.parametrize(("extra", "local"), [
    ({}, True),
    ({"workers": 2}, False),
    ({"threads_per_worker": 1}, False),
    ({"memory_limit": "1GiB"}, False),
    ({"scheduler": "tcp://127.0.0.1:1"}, False),
    ({"cache": "stats"}, False),
])
def test_an_option_asking_for_a_cluster_keeps_it(tmp_path, extra, local):
    data = tmp_path / "sleep.parquet"
    pd.read_csv(REFERENCE / "data" / "sleepstudy.csv").to_parquet(data, index=False)
    opts = {"data": str(data), "scheduler": None, "workers": None, "threads_per_worker": None,
            "memory_limit": None, "cache": None, **extra}
    assert cluster.runs_in_process(opts, ["Reaction", "Days", "Subject"]) is local
