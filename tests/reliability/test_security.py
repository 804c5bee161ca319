"""Security (issue 5, item 6): outputs are JSON and Parquet (and the text summary) only,
never pickle; inputs are never unpickled; the Dask connection runs over TLS through
Dask's security configuration (a self-signed certificate for 127.0.0.1, made with the
``cryptography`` package, a test dependency).
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import dlmm
from dlmm import InputError
from tests.reliability.helpers import (
    assert_same_fit,
    local_cluster,
    self_signed_certificate,
    tree_state,
)
from tests.simulate import grouped_data

PICKLE_STARTS = tuple(bytes([0x80, protocol]) for protocol in range(2, 6))
FORMULA = "y ~ x1 + x2"
MODEL = {"groups": "g", "re_formula": "~x1", "vc_formula": {"c": "0 + C(c)"}}


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return grouped_data(n_groups=30, per_group=(4, 12), k_fe=3,
                        re_cov=np.array([[1.0, 0.2], [0.2, 0.4]]), vc_sd={"c": 0.5}, seed=17)


@pytest.fixture(scope="module")
def local_fit(data):
    return dlmm.mixedlm(FORMULA, data, **MODEL).fit()


def _check_json_or_parquet(path: Path) -> str:
    """The kind of an output file: 'json', 'parquet' or 'text'; never a pickle."""
    raw = path.read_bytes()
    assert not raw.startswith(PICKLE_STARTS), f"{path} starts like a pickle"
    assert b"cpickle" not in raw.lower() and b"__reduce__" not in raw, path
    if path.suffix == ".json":
        json.loads(raw.decode("utf-8"))
        return "json"
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        assert raw[:4] == b"PAR1" and raw[-4:] == b"PAR1", f"{path} is not Parquet"
        schema = pq.read_schema(path)
        for key, value in (schema.metadata or {}).items():
            if key == b"pandas":  # pandas' own metadata is JSON
                json.loads(value.decode("utf-8"))
            else:
                assert key == b"ARROW:schema", f"{path}: unexpected metadata key {key!r}"
        for field in schema:  # plain columns only: no binary blobs of Python objects
            assert str(field.type) in ("double", "int64", "string", "large_string"), (
                f"{path}: column {field.name!r} has type {field.type}")
        return "parquet"
    if path.suffix == ".txt":
        raw.decode("utf-8")
        return "text"
    raise AssertionError(f"unexpected output file {path}")


def test_result_save_writes_json_and_parquet_only(local_fit, tmp_path):
    out = tmp_path / "saved"
    local_fit.save(out)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == ["random_effects.parquet", "result.json", "summary.txt",
                     "vc_effects.parquet"]
    kinds = {name: _check_json_or_parquet(out / name) for name in files}
    assert kinds == {"random_effects.parquet": "parquet", "result.json": "json",
                     "summary.txt": "text", "vc_effects.parquet": "parquet"}
    # Nothing else was written beside the folder (the temporary sibling is gone).
    assert sorted(p.name for p in tmp_path.iterdir()) == ["saved"]
    loaded = dlmm.load_result(out)
    np.testing.assert_array_equal(loaded.fe_params.to_numpy(), local_fit.fe_params.to_numpy())
    np.testing.assert_array_equal(loaded.cov_re.to_numpy(), local_fit.cov_re.to_numpy())
    assert loaded.llf == local_fit.llf


def test_cli_output_folder_has_no_pickle(data, tmp_path, dask_client):
    from dlmm.cli import main

    source = tmp_path / "data.parquet"
    data.to_parquet(source)
    out = tmp_path / "out"
    code = main(["fit", str(source), "-f", FORMULA, "-g", "g", "--re-formula", "~x1",
                 "--vc", "c=0 + C(c)", "--scheduler", dask_client.scheduler.address,
                 "-o", str(out), "-q"])
    assert code == 0
    files = sorted(p for p in out.rglob("*") if p.is_file())
    kinds = {p.relative_to(out).as_posix(): _check_json_or_parquet(p) for p in files}
    assert kinds["result.json"] == "json"
    assert kinds["random_effects.parquet"] == "parquet"
    assert set(kinds.values()) <= {"json", "parquet", "text"}
    assert [k for k, v in kinds.items() if v == "text"] == ["summary.txt"]


class _Payload:
    """Unpickling this creates the file ``marker``: proof that something unpickled it."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("name", ["data.parquet", "data.pkl", "folder/part-0.parquet"])
def test_pickle_input_is_rejected_and_never_loaded(data, tmp_path, dask_client, name):
    marker = tmp_path / "unpickled"
    path = tmp_path / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(pickle.dumps([_Payload(marker), data], protocol=5))
    assert path.read_bytes().startswith(PICKLE_STARTS)
    target = str(path.parent) if name.startswith("folder/") else str(path)
    before = tree_state(tmp_path)
    with pytest.raises(InputError, match=r"cannot read Parquet data '.*'"):
        dlmm.mixedlm(FORMULA, target, client=dask_client, **MODEL).fit()
    assert not marker.exists(), "the input was unpickled"
    assert tree_state(tmp_path) == before


def test_load_result_never_unpickles(local_fit, tmp_path):
    """A saved result whose files were replaced by pickles fails to load and runs nothing."""
    out = tmp_path / "saved"
    local_fit.save(out)
    marker = tmp_path / "unpickled"
    (out / "random_effects.parquet").write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(Exception):  # noqa: B017 - pyarrow's own error for a non-Parquet file
        dlmm.load_result(out)
    assert not marker.exists()
    (out / "result.json").write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(ValueError):  # not JSON
        dlmm.load_result(out)
    assert not marker.exists()


# -- TLS ---------------------------------------------------------------------------------


def _security(cert: str, key: str):
    from distributed.security import Security

    return Security(tls_ca_file=cert, tls_client_cert=cert, tls_client_key=key,
                    tls_scheduler_cert=cert, tls_scheduler_key=key, tls_worker_cert=cert,
                    tls_worker_key=key, require_encryption=True)


def test_fit_over_tls(data, local_fit, tmp_path):
    cert, key = self_signed_certificate(tmp_path, "cluster")
    security = _security(cert, key)
    with local_cluster(2, protocol="tls", security=security) as (cluster, client):
        address = cluster.scheduler_address
        assert address.startswith("tls://127.0.0.1:")
        workers = list(client.scheduler_info(n_workers=-1)["workers"])
        assert len(workers) == 2 and all(w.startswith("tls://127.0.0.1:") for w in workers)

        result = dlmm.mixedlm(FORMULA, data, **MODEL).fit(client=client)
        assert result.backend == "dask"
        assert_same_fit(result, local_fit)

        # No way in without the cluster's certificate: no TLS configuration at all, plain
        # TCP to the TLS port, or TLS with a certificate the cluster does not trust. (The
        # attempts run on the client's event loop: no new client threads.)
        from distributed.comm import connect

        async def attempt(addr, **connection_args):
            comm = await connect(addr, timeout=5, **connection_args)
            await comm.close()

        with pytest.raises(TypeError, match="TLS expects a `ssl_context`"):
            client.sync(attempt, address)
        with pytest.raises(OSError):
            client.sync(attempt, address.replace("tls://", "tcp://"))
        rogue = _security(*self_signed_certificate(tmp_path, "rogue"))
        with pytest.raises(OSError):
            client.sync(attempt, address, **rogue.get_connection_args("client"))
        own = security.get_connection_args("client")
        client.sync(attempt, address, **own)  # the right certificate gets in
        # The cluster still serves its own clients.
        assert client.submit(sum, [1, 2]).result() == 3
