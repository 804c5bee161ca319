"""A real S3-compatible server for the tests: moto's server on 127.0.0.1, with s3fs.

:func:`s3_server` starts ``python -m moto.server`` on a free port of
127.0.0.1 in its own process group, waits (at most :data:`START_TIMEOUT`
seconds) until it answers, points s3fs at it through ``AWS_ENDPOINT_URL`` with
dummy credentials (so that ``dlmm`` subprocesses and Dask workers started
later inherit them), and always stops it (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

START_TIMEOUT = 30.0
#: The environment that points s3fs (botocore) at the server.
ENV_NAMES = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
             "AWS_DEFAULT_REGION", "AWS_EC2_METADATA_DISABLED")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=wait)


def _clear_s3fs_instances() -> None:
    """Forget s3fs file systems made for an endpoint that is going away."""
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()


@contextlib.contextmanager
def s3_server(log: Path) -> Iterator[str]:
    """Yield the URL of a moto S3 server on 127.0.0.1; the environment points s3fs at it
    while the block runs (restored after)."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                 "-p", str(port)], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    old = {name: os.environ.get(name) for name in ENV_NAMES}
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"moto server exited: {log.read_text()}")
            try:
                with urllib.request.urlopen(f"{url}/moto-api/", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"moto server did not answer within {START_TIMEOUT} "
                                       f"s: {log.read_text()}") from None
                time.sleep(0.05)
        os.environ.update(AWS_ENDPOINT_URL=url, AWS_ACCESS_KEY_ID="testing",
                          AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
                          AWS_EC2_METADATA_DISABLED="true")
        _clear_s3fs_instances()
        yield url
    finally:
        _stop(proc)
        for name, value in old.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        _clear_s3fs_instances()
