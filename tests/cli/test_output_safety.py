"""The command line never writes over its inputs, never deletes a folder it did not
write, cleans up after writers that were killed, and never runs a saved file's code.

Each refusal: exit 2, one error line naming the option and the path, before any
cluster starts (the scheduler address given is a closed port), no output or
temporary folder, the inputs unchanged.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import dlmm
from tests.cli.helpers import _error_line, _fit_args, _no_output, run_dlmm, run_dlmm_here
from tests.simulate import grouped_data

NOWHERE = "tcp://127.0.0.1:9"  # a closed port: any attempt to connect would fail


def _snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.fixture
def data(simulated, tmp_path):
    """A private copy of the simulated data set (the module's own is shared)."""
    copy = tmp_path / "data"
    shutil.copytree(simulated, copy)
    return copy


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A result folder written by ``result.save`` and new data to predict."""
    frame = grouped_data(n_groups=20, per_group=(4, 8), re_cov=np.array([[1.0]]), seed=5)
    result = dlmm.mixedlm("y ~ x1 + x2", frame, groups="g").fit()
    root = tmp_path_factory.mktemp("saved")
    result.save(root / "fit")
    frame.drop(columns="y").to_parquet(root / "new.parquet")
    return root / "fit", root / "new.parquet"


@pytest.mark.parametrize(("output", "how"), [
    ("data", "is"),
    ("data/out", "lies inside"),
    (".", "contains"),
])
def test_fit_output_overlapping_the_data_is_refused(data, tmp_path, output, how):
    before = _snapshot(data)
    target = tmp_path / output
    proc = run_dlmm_here(*_fit_args(data, "--scheduler", NOWHERE, "-o", target, "--overwrite"))
    assert proc.returncode == 2, proc.stderr
    assert _error_line(proc) == (
        f"dlmm: error: --output {str(target)!r} {how} the input DATA {str(data)!r}: refusing "
        "to write there (choose a folder outside the inputs)")
    assert _snapshot(data) == before
    _no_output(tmp_path, "out")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_fit_overwrite_of_a_folder_dlmm_did_not_write_is_refused(data, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    proc = run_dlmm_here(*_fit_args(data, "--scheduler", NOWHERE, "-o", mine, "--overwrite"))
    assert proc.returncode == 2, proc.stderr
    assert _error_line(proc) == (
        f"dlmm: error: --overwrite refused: --output {str(mine)!r} is not a dlmm result "
        "folder (no result.json of dlmm in it); remove it yourself or choose another folder")
    assert _snapshot(mine) == {"thesis.tex": b"years of work"}
    # A simulated data set is a dlmm output, but not a result folder: not replaced either.
    shutil.copytree(data, tmp_path / "sim2")
    proc = run_dlmm_here(*_fit_args(data, "--scheduler", NOWHERE, "-o", tmp_path / "sim2",
                                    "--overwrite"))
    assert proc.returncode == 2 and "is not a dlmm result folder" in _error_line(proc)
    assert (tmp_path / "sim2" / "_truth.json").exists()


def test_predict_output_may_not_overlap_its_inputs(saved, tmp_path):
    fit, new = saved
    before = _snapshot(fit.parent)
    cases = [(fit / "pred", "lies inside", "RESULT_DIR", fit), (fit, "is", "RESULT_DIR", fit),
             (new, "is", "DATA", new), (fit.parent, "contains", "DATA", new)]
    for output, how, name, path in cases:
        proc = run_dlmm_here("predict", fit, new, "-o", output, "--overwrite", "--scheduler",
                             NOWHERE)
        assert proc.returncode == 2, proc.stderr
        assert _error_line(proc).startswith(
            f"dlmm: error: --output {str(output)!r} {how} the input {name} {str(path)!r}")
    assert _snapshot(fit.parent) == before
    mine = tmp_path / "pred"
    mine.mkdir()
    (mine / "keep.parquet").write_bytes(b"PAR1")
    proc = run_dlmm_here("predict", fit, new, "-o", mine, "--overwrite", "--scheduler",
                         NOWHERE)
    assert proc.returncode == 2
    assert "--overwrite refused: --output" in _error_line(proc)
    assert "is not predictions written by dlmm predict (no _predictions.json" in proc.stderr
    assert _snapshot(mine) == {"keep.parquet": b"PAR1"}


def test_predict_writes_a_marker_and_overwrites_its_own_output(scheduler, saved, tmp_path):
    fit, new = saved
    pred = tmp_path / "pred"
    for _ in range(2):  # the second run replaces the first's folder
        proc = run_dlmm("predict", fit, new, "-o", pred, "--overwrite", "--scheduler",
                        scheduler, "--quiet")
        assert proc.returncode == 0, proc.stderr
        marker = json.loads((pred / "_predictions.json").read_text())
        assert marker["schema"] == "dlmm.predictions/1"
        assert marker["result"] == str(fit.resolve()) and marker["data"] == str(new)
        assert "predicted" in marker["columns"]
        written = pd.read_parquet(pred)
        assert len(written) == len(pd.read_parquet(new)) and "predicted" in written
        assert [p.name for p in tmp_path.iterdir()] == ["pred"]


def test_predict_refuses_a_saved_formula_that_runs_code(saved, tmp_path):
    fit, new = saved
    edited = tmp_path / "fit"
    shutil.copytree(fit, edited)
    marker = tmp_path / "owned"
    doc = json.loads((edited / "result.json").read_text())
    doc["state"]["spec"]["formula"] = (
        f"y ~ x1 + I(np.__builtins__['exec'](\"open({str(marker)!r}, 'w').close()\"))")
    (edited / "result.json").write_text(json.dumps(doc))
    proc = run_dlmm_here("predict", edited, new, "-o", tmp_path / "out", "--scheduler",
                         NOWHERE)
    assert proc.returncode == 2, proc.stderr
    line = _error_line(proc)
    assert line.startswith(f"dlmm: error: {str(edited / 'result.json')!r}: refusing to "
                           "evaluate formula ")
    assert "np.__builtins__['exec']" in line
    assert not marker.exists()
    _no_output(tmp_path)


def test_simulate_overwrite_only_of_a_simulated_data_set(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    args = ["simulate", "--groups", "4", "--per-group", "3", "--partitions", "1", "--seed", "0"]
    proc = run_dlmm_here(*args, "-o", mine, "--overwrite")
    assert proc.returncode == 2
    assert _error_line(proc) == (
        f"dlmm: error: --overwrite refused: --output {str(mine)!r} is not a data set written "
        "by dlmm simulate (no _truth.json of dlmm in it); remove it yourself or choose "
        "another folder")
    assert _snapshot(mine) == {"notes.txt": b"mine"}
    assert run_dlmm(*args, "-o", tmp_path / "sim").returncode == 0
    assert run_dlmm(*args, "-o", tmp_path / "sim", "--overwrite").returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "sim"]


def test_simulate_killed_mid_write_is_cleaned_up_by_the_next_run(tmp_path):
    out = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, "-m", "dlmm.cli", "simulate", "--groups", "2000", "--per-group", "50",
         "--partitions", "2000", "--seed", "1", "-o", str(out)],
        stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:
            if "wrote partition" in line:
                break
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    (stale,) = [p.name for p in tmp_path.iterdir()]
    assert stale.startswith(f".data.tmp-{proc.pid}-") and not out.exists()
    assert any((tmp_path / stale).iterdir())  # half a data set, left by the SIGKILL
    again = run_dlmm("simulate", "--groups", "4", "--per-group", "3", "--partitions", "2",
                     "--seed", "0", "-o", out)
    assert again.returncode == 0, again.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["data"]
    assert len(pd.read_parquet(out)) == 12
