"""deploy/slurm run end to end on a real Slurm: ``sbatch dlmm-fit.sbatch`` starts the
driver job, dask-jobqueue submits the Dask workers as further Slurm jobs, ``dlmm fit``
writes its outputs, and its estimates equal an in-process fit of the same data.

Needs a running Slurm whose jobs run on this machine (``make test-slurm`` starts a
one-node one with ``deploy/slurm/local-slurm.sh`` and stops it afterwards) and
dask-jobqueue in this environment (``pip install -e ".[slurm]"``). Not collected by
``make test`` (its test path is ``tests/``). Scheduler and workers listen on the
loopback interface, the scheduler's dashboard on a free port of it, the workers'
dashboards off (Dask's ``jobqueue.slurm`` configuration, by environment variables).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import dlmm

REPO = Path(__file__).resolve().parents[1]
SLURM_DEPLOY = REPO / "deploy" / "slurm"
SBATCH = SLURM_DEPLOY / "dlmm-fit.sbatch"
MODEL = {"formula": "y ~ x1 + x2", "groups": "g", "re_formula": "~x1",
         "vc_formula": {"c": "0 + C(c)"}}
#: One worker job of one core: with the driver's job (one core) it fills the one-node
#: Slurm of local-slurm.sh (2 CPUs).
WORKERS = {"WORKER_JOBS": "1", "WORKER_CORES": "1", "WORKER_MEMORY": "3GiB",
           "WORKER_WALLTIME": "00:15:00"}


def _slurm(*command: str) -> str:
    proc = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"{' '.join(command)}: {proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def slurm() -> None:
    """A Slurm with an idle node (not started here: see the module docstring)."""
    missing = [c for c in ("sbatch", "sinfo", "scontrol") if shutil.which(c) is None]
    assert not missing, f"{missing[0]} not found: run deploy/slurm/local-slurm.sh install"
    states = _slurm("sinfo", "-h", "-N", "-o", "%t").split()
    assert {"idle", "mix"} & set(states), (
        f"no idle Slurm node (sinfo: {states}); run deploy/slurm/local-slurm.sh start")
    import dask_jobqueue  # noqa: F401  (the recipe needs it: pip install -e ".[slurm]")


def _job(job_id: str) -> dict[str, str]:
    """``scontrol show job``'s fields of a (recent) job."""
    text = _slurm("scontrol", "show", "job", "-o", job_id)
    return dict(re.findall(r"(\w+)=(\S*)", text))


def _submit(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess, str]:
    """``sbatch --wait`` the recipe from ``tmp_path``; the process and the job id."""
    environ = {**os.environ, "DLMM_VENV": sys.prefix, "DLMM_DEPLOY": str(SLURM_DEPLOY),
               "DASK_JOBQUEUE__SLURM__INTERFACE": "lo",
               "DASK_JOBQUEUE__SLURM__SCHEDULER_OPTIONS": "{'dashboard_address': '127.0.0.1:0'}",
               "DASK_JOBQUEUE__SLURM__WORKER_EXTRA_ARGS": "['--no-dashboard']",
               **WORKERS, **env}
    proc = subprocess.run(
        ["sbatch", "--wait", "--parsable", "--cpus-per-task=1", "--mem=2G",
         "--time=00:15:00", str(SBATCH)],
        cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=900)
    job_id = proc.stdout.strip().split(";")[0]
    assert job_id.isdigit(), f"sbatch: {proc.stdout!r} {proc.stderr!r}"
    return proc, job_id


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """A simulated Parquet data set: 40 000 rows, 800 groups, 4 files."""
    folder = tmp_path_factory.mktemp("slurm") / "sim"
    proc = subprocess.run(
        [sys.executable, "-m", "dlmm.cli", "simulate", "--groups", "800", "--per-group",
         "50", "--re-formula", "~x1", "--vc", "c=0.5", "--partitions", "4", "--seed", "7",
         "--output", str(folder), "--quiet"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return folder


def test_the_recipe_fits_on_slurm_workers_as_in_process(slurm, data, tmp_path):
    proc, job_id = _submit(tmp_path, DATA=str(data), RESULTS=str(tmp_path))
    log = (tmp_path / f"dlmm-fit-{job_id}.log").read_text()
    assert proc.returncode == 0, log[-3000:]
    driver = _job(job_id)
    assert (driver["JobName"], driver["JobState"], driver["ExitCode"]) == (
        "dlmm-fit", "COMPLETED", "0:0")

    # The worker was a Slurm job of its own, submitted by dask-jobqueue; it registered
    # with the driver's scheduler and, retired at the end, exited by itself.
    (worker_log,) = (tmp_path / "dask-logs").glob("dask-worker-*.err")
    worker_id = worker_log.stem.rsplit("-", 1)[1]
    worker = _job(worker_id)
    assert worker_id != job_id and worker["JobName"] == "dask-worker"
    assert (worker["JobState"], worker["ExitCode"], worker["NumCPUs"]) == (
        "COMPLETED", "0:0", "1")
    assert "Register worker" in log and "Traceback" not in log
    assert "scheduler tcp://127.0.0.1:" in log
    assert re.search(r"dashboard http://127\.0\.0\.1:\d+/status", log)
    assert "dashboard http://127.0.0.1:8787/" not in log

    out = tmp_path / f"fit-{job_id}"
    doc = json.loads((out / "result.json").read_text())
    assert doc["status"] == "converged" and doc["nobs"] == 40_000
    assert doc["cluster"]["kind"] == "scheduler" and doc["cluster"]["workers"] == 1
    summary = subprocess.run([sys.executable, "-m", "dlmm.cli", "summary", str(out)],
                             capture_output=True, text=True, timeout=60)
    assert summary.returncode == 0 and re.search(r"Converged: +Yes", summary.stdout)
    assert summary.stdout.strip() == (out / "summary.txt").read_text().strip()

    # The same model fitted in this process, without Dask, from the same files read
    # into pandas.
    frame = pd.read_parquet(data)
    model = dlmm.mixedlm(MODEL["formula"], frame, groups=MODEL["groups"],
                         re_formula=MODEL["re_formula"], vc_formula=MODEL["vc_formula"])
    api = model.fit(reml=True)
    est = doc["estimates"]
    rel = {"rtol": 1e-8, "atol": 0}
    assert list(est["fe_params"]) == list(api.fe_params.index)
    np.testing.assert_allclose(list(est["fe_params"].values()), api.fe_params, **rel)
    np.testing.assert_allclose(est["cov_re"]["matrix"], api.cov_re.to_numpy(), **rel)
    np.testing.assert_allclose(list(est["vcomp"].values()), api.vcomp, **rel)
    np.testing.assert_allclose(est["scale"], api.scale, **rel)
    np.testing.assert_allclose(est["llf"], api.llf, **rel)
    np.testing.assert_allclose(list(est["bse"].values()), api.bse, **rel)


def test_a_missing_output_folder_fails_the_job_before_any_worker(slurm, data, tmp_path):
    proc, job_id = _submit(tmp_path, DATA=str(data), RESULTS=str(tmp_path / "absent"))
    assert proc.returncode == 2
    log = (tmp_path / f"dlmm-fit-{job_id}.log").read_text()
    assert log.strip().splitlines()[-1] == (
        f"dlmm-fit.sbatch: error: OUTPUT {tmp_path}/absent/fit-{job_id}: its folder "
        f"{tmp_path}/absent does not exist (set OUTPUT or edit this file)")
    assert _job(job_id)["ExitCode"] == "2:0"
    assert not (tmp_path / "dask-logs").exists() and not (tmp_path / "absent").exists()
