"""Fixtures of the ``dlmm`` command's tests: a real Dask cluster and a simulated data set.

A module fixture starts a ``dask scheduler`` and two ``dask worker`` processes
on 127.0.0.1 (random ports, no dashboard) and always stops them.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli.helpers import run_dlmm
from tests.conftest import cluster_monitoring_env


def _dask_command(*args: str) -> list[str]:
    script = Path(sys.executable).with_name("dask")
    return [str(script), *args] if script.exists() else [sys.executable, "-m", "dask", *args]


def _stop(proc: subprocess.Popen) -> None:
    """Stop a process we started (and its children, in its own session)."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


#: Seconds a test's scheduler and workers may take to start: an upper bound on waiting for
#: them, not a wait (60 s was exceeded once on the 2-core machine at a load of 7-8, in a
#: run whose processes were also stopped for a while by another job).
START_BOUND = 240


@contextlib.contextmanager
def dask_processes(folder: Path, n_workers: int = 2, extra: tuple[str, ...] = (),
                   security=None):
    """A real ``dask scheduler`` and ``n_workers`` ``dask worker`` processes on 127.0.0.1
    (random ports, no dashboard, logs in ``folder``); yields the scheduler's address and
    always stops them. ``extra`` goes to the scheduler and every worker (e.g. TLS
    options), ``security`` to the client that waits for the workers."""
    from distributed import Client

    info = folder / "scheduler.json"
    procs: list[subprocess.Popen] = []
    logs = []

    env = {**os.environ, **cluster_monitoring_env()}  # Dask's monitoring, slower

    def start(args: list[str], name: str) -> None:
        log = open(folder / f"{name}.log", "w")  # noqa: SIM115 - closed in finally
        logs.append(log)
        procs.append(subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True, env=env))

    try:
        start(_dask_command("scheduler", "--host", "127.0.0.1", "--port", "0",
                            "--no-dashboard", "--dashboard-address", "127.0.0.1:0",
                            "--scheduler-file", str(info), *extra), "scheduler")
        deadline = time.monotonic() + START_BOUND
        while not info.exists() or not info.read_text().strip():
            if procs[0].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("dask scheduler did not start: "
                                   + (folder / "scheduler.log").read_text())
            time.sleep(0.1)
        time.sleep(0.1)
        address = json.loads(info.read_text())["address"]
        for k in range(n_workers):
            start(_dask_command("worker", address, "--host", "127.0.0.1", "--no-dashboard",
                                "--dashboard-address", "127.0.0.1:0", "--nthreads", "1",
                                "--memory-limit", "2GiB",
                                "--death-timeout", "60", *extra), f"worker{k}")
        with Client(address, timeout=30, security=security) as client:
            client.wait_for_workers(n_workers, timeout=START_BOUND)
        yield address
    finally:
        for proc in reversed(procs):
            _stop(proc)
        for log in logs:
            log.close()


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory):
    """Address of a real scheduler with two worker processes, all on 127.0.0.1."""
    with dask_processes(tmp_path_factory.mktemp("dask")) as address:
        yield address


@pytest.fixture(scope="module")
def simulated(tmp_path_factory) -> Path:
    """A data set written by ``dlmm simulate`` (4 files, a slope and a component)."""
    out = tmp_path_factory.mktemp("sim") / "data"
    proc = run_dlmm("simulate", "--groups", "150", "--per-group", "12", "--re-formula", "~x1",
                    "--vc", "c=0.6", "--partitions", "4", "--seed", "20", "--output", out)
    assert proc.returncode == 0, proc.stderr
    return out
