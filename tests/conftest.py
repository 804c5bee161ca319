"""Shared fixtures: the lme4 reference cases and one local Dask cluster per session."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
#: lme4's reference fits and their data sets, carried by the repository (see its README).
REFERENCE = Path(__file__).resolve().parent / "reference"


def _load_cases() -> dict:
    return json.loads((REFERENCE / "cases.json").read_text())


@pytest.fixture(scope="session")
def reference_cases() -> dict:
    """``tests/reference/cases.json``: lme4 fits in statsmodels' conventions."""
    return _load_cases()


def reference_data(name: str) -> pd.DataFrame:
    """A data set of ``tests/reference/data`` as pandas."""
    return pd.read_csv(REFERENCE / "data" / name)


@pytest.fixture(scope="session")
def dask_client():
    """A real two-process local cluster on 127.0.0.1, stopped after the session."""
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        memory_limit="4GiB",
    )
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()
