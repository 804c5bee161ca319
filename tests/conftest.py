"""Shared fixtures: the lme4 reference cases and one local Dask cluster per session."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pandas as pd
import pytest

from dlmm.distributed.embedded import QUIET_MONITORING

REPO = Path(__file__).resolve().parents[1]

# Bytecode files for the suite's processes. Where the environment forbids them
# (PYTHONDONTWRITEBYTECODE, as on this machine), every process the tests start (each
# ``dlmm`` command, Dask worker, ``python -c`` example) compiled dlmm's 40,000 lines of
# source again as it imported them (about 0.6 s of CPU a process). They are written
# instead, in ``__pycache__`` beside the sources (ignored by git, where numba's cache
# is too), as a user's Python writes them; what the processes run is the same code.
if os.environ.pop("PYTHONDONTWRITEBYTECODE", None) is not None:
    sys.dont_write_bytecode = False

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


#: Dask's monitoring for a dashboard, off or slower in the suite's own long-lived clusters,
#: as in dlmm's embedded cluster (:data:`dlmm.distributed.embedded.QUIET_MONITORING`). What
#: the workers compute, and their memory limits, are as they were; the session's
#: ``dask_client`` lives as long as the session.
CLUSTER_MONITORING = QUIET_MONITORING


def cluster_monitoring_env() -> dict[str, str]:
    """:data:`CLUSTER_MONITORING` as environment variables, for ``dask scheduler`` and
    ``dask worker`` processes a test starts."""
    return {"DASK_" + key.upper().replace(".", "__").replace("-", "_"): str(value)
            for key, value in CLUSTER_MONITORING.items()}


@pytest.fixture(scope="session")
def dask_client():
    """A real two-process local cluster on 127.0.0.1, stopped after the session."""
    import dask
    from distributed import Client, LocalCluster

    # The nannies hand the configuration of their creation to the worker processes.
    with dask.config.set(CLUSTER_MONITORING):
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


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory):
    """A moto S3 server on 127.0.0.1 for the session (``tests/io/s3server.py``): its URL,
    with ``AWS_ENDPOINT_URL`` and dummy credentials in the environment; always stopped."""
    from tests.io.s3server import s3_server

    with s3_server(tmp_path_factory.mktemp("s3") / "moto.log") as url:
        yield url


@pytest.fixture
def s3_bucket(s3_endpoint) -> str:
    """A new empty bucket on the session's S3 server; its name."""
    import uuid

    import s3fs

    name = f"t-{uuid.uuid4().hex[:12]}"
    s3fs.S3FileSystem().mkdir(name)
    return name

