"""TLS (issue 10, item 10): the embedded cluster talks TLS with a certificate of its own,
and ``dlmm fit`` / ``dlmm predict`` reach a ``tls://`` scheduler with ``--tls-ca-file``,
``--tls-cert``, ``--tls-key`` or Dask's configuration file.

A real ``dask scheduler`` and ``dask worker`` are started with TLS certificates made here
(``cryptography``), on 127.0.0.1, and always stopped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.cli.conftest import dask_processes
from tests.cli.helpers import _error_line, _fit_args, _no_output, run_dlmm, run_dlmm_here
from tests.reliability.helpers import self_signed_certificate


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory):
    """``(address, cert, key)`` of a TLS-only scheduler with one worker on 127.0.0.1."""
    from distributed.security import Security

    folder = tmp_path_factory.mktemp("tls")
    cert, key = self_signed_certificate(folder, "cluster")
    security = Security(tls_ca_file=cert, tls_client_cert=cert, tls_client_key=key,
                        require_encryption=True)
    with dask_processes(folder, n_workers=1, extra=("--protocol", "tls", *_tls(cert, key)),
                        security=security) as address:
        assert address.startswith("tls://127.0.0.1:"), address
        yield address, cert, key


def _tls(cert, key):
    return ["--tls-ca-file", cert, "--tls-cert", cert, "--tls-key", key]


def test_fit_and_predict_over_tls_with_options(tls_cluster, simulated, tmp_path):
    address, cert, key = tls_cluster
    out = tmp_path / "out"
    proc = run_dlmm(*_fit_args(simulated, "--scheduler", address, *_tls(cert, key),
                               "-o", out, "--log-format", "json"))
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(ln) for ln in proc.stderr.splitlines()]
    cluster = next(e for e in events if e.get("event") == "cluster" and "workers" in e)
    assert cluster["address"] == address and cluster["workers"] == 1
    assert (out / "result.json").exists()

    pred = tmp_path / "pred"
    proc = run_dlmm("predict", out, simulated, "-o", pred, "--scheduler", address,
                    *_tls(cert, key), "-q")
    assert proc.returncode == 0, proc.stderr
    assert list(pred.glob("*.parquet"))


def test_fit_over_tls_with_dask_config_file(tls_cluster, simulated, tmp_path):
    """No options: Dask's own configuration file (DASK_CONFIG) gives the certificates."""
    address, cert, key = tls_cluster
    config = tmp_path / "dask-config"
    config.mkdir()
    (config / "tls.yaml").write_text(textwrap.dedent(f"""\
        distributed:
          comm:
            require-encryption: true
            tls:
              ca-file: {cert}
              client:
                cert: {cert}
                key: {key}
        """))
    env = dict(os.environ, DASK_CONFIG=str(config))
    proc = subprocess.run([sys.executable, "-m", "dlmm.cli",
                           *_fit_args(simulated, "--scheduler", address, "-q")],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "Intercept" in proc.stdout


def test_tls_scheduler_without_certificates_is_a_usage_error(tls_cluster, simulated, tmp_path):
    address, _, _ = tls_cluster
    proc = run_dlmm(*_fit_args(simulated, "--scheduler", address, "-o", tmp_path / "out"))
    assert proc.returncode == 2, proc.stderr
    line = _error_line(proc)
    assert line == (f"dlmm: error: --scheduler {address!r} speaks TLS: give --tls-ca-file and "
                    "--tls-cert (and --tls-key unless the certificate file holds the key), or "
                    "set Dask's distributed.comm.tls configuration"), line
    _no_output(tmp_path)


def test_untrusted_certificate_cannot_connect(tls_cluster, simulated, tmp_path):
    address, _, _ = tls_cluster
    rogue, rogue_key = self_signed_certificate(tmp_path, "rogue")
    proc = run_dlmm(*_fit_args(simulated, "--scheduler", address, *_tls(rogue, rogue_key),
                               "--scheduler-timeout", "3", "-o", tmp_path / "out", "-q"))
    assert proc.returncode == 2, proc.stderr
    line = _error_line(proc)
    assert line.startswith(f"dlmm: error: --scheduler {address!r}: cannot connect within 3 s"), line
    _no_output(tmp_path)


@pytest.mark.parametrize("args, message", [
    (["--tls-cert", "{cert}"],
     "--tls-cert is for --scheduler tls://...; the embedded cluster makes its own certificate"),
    (["--scheduler", "tcp://127.0.0.1:1", "--tls-ca-file", "{cert}"],
     "--tls-ca-file is for a tls:// scheduler, not 'tcp://127.0.0.1:1'"),
    (["--scheduler", "tls://127.0.0.1:1", "--tls-ca-file", "{missing}"],
     "--tls-ca-file '{missing}': no such readable file"),
])
def test_tls_option_mistakes(simulated, tmp_path, args, message):
    cert, _ = self_signed_certificate(tmp_path, "c")
    missing = str(tmp_path / "missing.pem")
    args = [a.format(cert=cert, missing=missing) for a in args]
    proc = run_dlmm_here(*_fit_args(simulated, *args))
    assert proc.returncode == 2, proc.stderr
    assert _error_line(proc) == "dlmm: error: " + message.format(missing=missing)


def test_embedded_cluster_requires_its_ownself_signed_certificate(tmp_path):
    """The embedded cluster listens on tls:// only; plain TCP and TLS without its
    certificate are refused, its own client gets in."""
    script = tmp_path / "probe.py"
    script.write_text(textwrap.dedent("""\
        import json

        if __name__ == "__main__":
            from distributed.comm import connect

            from dlmm.distributed.dask_backend import close_embedded, embedded_client

            client = embedded_client(n_workers=1)
            address = client.scheduler.address
            workers = list(client.scheduler_info(n_workers=-1)["workers"])
            out = {"address": address, "workers": workers}

            async def attempt(addr, **kwargs):
                comm = await connect(addr, timeout=3, **kwargs)
                await comm.close()

            for name, addr, kwargs in [
                ("tcp", address.replace("tls://", "tcp://"), {}),
                ("no-certificate", address, {}),
            ]:
                try:
                    client.sync(attempt, addr, **kwargs)
                    out[name] = "connected"
                except Exception as exc:
                    out[name] = type(exc).__name__
            out["sum"] = client.submit(sum, [1, 2]).result()
            close_embedded()
            print(json.dumps(out))
        """))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["address"].startswith("tls://127.0.0.1:"), out
    assert out["workers"] and all(w.startswith("tls://127.0.0.1:") for w in out["workers"])
    assert out["tcp"] != "connected" and out["no-certificate"] != "connected", out
    assert out["sum"] == 3
