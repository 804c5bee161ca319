"""Shared fixtures: the lme4 reference cases and one local Dask cluster per session."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
REFERENCE = SHARED / "reference"


def _load_cases() -> dict:
    path = REFERENCE / "cases.json"
    if not path.exists():
        raise FileNotFoundError(
            f"lme4 reference cases not found at {path}: the tests expect ../shared beside the repo"
        )
    return json.loads(path.read_text())


@pytest.fixture(scope="session")
def reference_cases() -> dict:
    """``../shared/reference/cases.json``: lme4 fits in statsmodels' conventions."""
    return _load_cases()


def reference_data(name: str) -> pd.DataFrame:
    """A data set of ``../shared/reference/data`` as pandas."""
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
