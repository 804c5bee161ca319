"""Atomic folders: outputs never replace inputs nor folders dlmm did not write, and the
temporary folders of killed writers are cleaned up by the next writer."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dlmm import InputError
from dlmm.io.folders import (
    PREDICTIONS,
    RESULT_FOLDER,
    SIMULATED_DATA,
    check_not_input,
    check_output_folder,
    clean_stale_siblings,
    staged_folder,
)

ROOT = Path(__file__).resolve().parents[2]


def _siblings(folder: Path, name: str = "out") -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(f".{name}."))


def _data(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    (data / "part.0.parquet").write_bytes(b"PAR1 rows")
    return data


@pytest.mark.parametrize(("output", "how"), [
    ("data", "is"),
    ("data/out", "lies inside"),
    ("data/a/b", "lies inside"),
    (".", "contains"),
    ("data/../data", "is"),
    ("link", "is"),
    ("link/out", "lies inside"),
])
def test_output_that_overlaps_an_input_is_refused(tmp_path, output, how):
    data = _data(tmp_path)
    os.symlink(data, tmp_path / "link")
    for overwrite in (False, True):
        with pytest.raises(InputError) as err:
            check_output_folder(tmp_path / output, overwrite, kind=RESULT_FOLDER,
                                inputs={"DATA": str(data)})
        message = str(err.value)
        assert message.startswith(f"--output {str(tmp_path / output)!r} {how} the input DATA "
                                  f"{str(data)!r}")
    assert [p.name for p in data.iterdir()] == ["part.0.parquet"]


def test_inputs_as_files_globs_urls_and_lists(tmp_path):
    data = _data(tmp_path)
    file = data / "part.0.parquet"
    for value in [str(data / "*.parquet"), f"file://{data}", [str(tmp_path / "x"), str(data)]]:
        with pytest.raises(InputError, match="lies inside the input DATA"):
            check_not_input(data / "out", {"DATA": value})
    for value in [str(file), f"file://{file}"]:
        with pytest.raises(InputError, match="is the input DATA"):
            check_not_input(file, {"DATA": value})
        check_not_input(data / "out", {"DATA": value})  # beside one file: not read by it
    with pytest.raises(InputError, match=r"--output .* contains the input DATA"):
        check_not_input(data, {"DATA": str(file)})
    # Beside the input, a remote URL, a second input named in the message:
    check_not_input(tmp_path / "out", {"DATA": str(file)})
    check_not_input(tmp_path / "out", {"DATA": "s3://bucket/data"})
    check_not_input(tmp_path / "datax", {"DATA": str(data)})  # a prefix is not a parent
    with pytest.raises(InputError, match="lies inside the input RESULT_DIR"):
        check_not_input(tmp_path / "fit" / "pred", {"DATA": str(file),
                                                    "RESULT_DIR": tmp_path / "fit"})


@pytest.mark.parametrize(("kind", "marker", "schema"), [
    (RESULT_FOLDER, "result.json", "dlmm.result/2"),
    (SIMULATED_DATA, "_truth.json", "dlmm.truth/1"),
    (PREDICTIONS, "_predictions.json", "dlmm.predictions/1"),
])
def test_overwrite_only_of_an_output_of_the_same_kind(tmp_path, kind, marker, schema):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(InputError) as err:
        check_output_folder(out, overwrite=True, kind=kind)
    assert str(err.value) == (
        f"--overwrite refused: --output {str(out)!r} is not {kind.description} (no {marker} "
        "of dlmm in it); remove it yourself or choose another folder")
    (out / marker).write_text(json.dumps({"schema": "other/1"}))
    with pytest.raises(InputError, match="--overwrite refused"):
        check_output_folder(out, overwrite=True, kind=kind)
    (out / marker).write_text("{not json")
    with pytest.raises(InputError, match="--overwrite refused"):
        check_output_folder(out, overwrite=True, kind=kind)
    (out / marker).write_text(json.dumps({"schema": schema}))
    assert check_output_folder(out, overwrite=True, kind=kind) == out
    with staged_folder(out, overwrite=True, kind=kind) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    # Another kind's output is not this kind's.
    other = next(k for k in (RESULT_FOLDER, SIMULATED_DATA) if k is not kind)
    (out / marker).write_text(json.dumps({"schema": schema}))
    with pytest.raises(InputError, match="--overwrite refused"):
        check_output_folder(out, overwrite=True, kind=other)


def test_empty_folder_may_be_overwritten(tmp_path):
    (tmp_path / "out").mkdir()
    with staged_folder(tmp_path / "out", overwrite=True, kind=RESULT_FOLDER) as tmp:
        (tmp / "a").write_text("a")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["a"]


def test_temp_folder_names_its_writer(tmp_path):
    with staged_folder(tmp_path / "out") as tmp:
        pid, rest = tmp.name[len(".out.tmp-"):].split("-", 1)
        assert int(pid) == os.getpid() and "@" in rest
    assert _siblings(tmp_path) == []


_WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from dlmm.io.folders import staged_folder
    out, stage = Path(sys.argv[1]), sys.argv[2]
    if stage == "old":  # die between moving the old folder aside and the rename
        import dlmm.io.folders as f
        def die(*a, **k):
            print("READY", flush=True)
            time.sleep(600)
        real = f.os.replace
        calls = []
        def replace(a, b):
            calls.append(a)
            if len(calls) == 2:
                die()
            real(a, b)
        f.os.replace = replace
    with staged_folder(out, overwrite=True) as tmp:
        (tmp / "half.parquet").write_text("half")
        if stage == "tmp":
            print("READY", flush=True)
            time.sleep(600)
""")


def _writer(tmp_path: Path, stage: str) -> subprocess.Popen:
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "out"), stage],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout.readline().strip() == "READY"
    return proc


def _kill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    proc.stdout.close()


def test_sigkilled_writer_temp_folder_is_cleaned_by_the_next_writer(tmp_path):
    proc = _writer(tmp_path, "tmp")
    try:
        (live,) = _siblings(tmp_path)
        assert live.startswith(f".out.tmp-{proc.pid}-")
        # While the writer lives, another writer leaves its folder alone.
        with staged_folder(tmp_path / "out") as tmp:
            (tmp / "result.json").write_text(json.dumps({"schema": "dlmm.result/2"}))
        assert _siblings(tmp_path) == [live]
        assert (tmp_path / live / "half.parquet").exists()
    finally:
        _kill(proc)
    assert _siblings(tmp_path) == [live]  # SIGKILL: nobody cleaned up
    # A folder of another host, and one without an owner, are not ours to judge.
    foreign = tmp_path / f".out.tmp-{proc.pid}-1@elsewhere.example-abcd1234"
    legacy = tmp_path / ".out.tmp-k3j2h1g0"
    foreign.mkdir()
    legacy.mkdir()
    with staged_folder(tmp_path / "out", overwrite=True) as tmp:
        (tmp / "second.txt").write_text("2")
    assert _siblings(tmp_path) == sorted([foreign.name, legacy.name])
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["second.txt"]


def test_writer_killed_mid_overwrite_gets_the_old_folder_back(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "result.json").write_text(json.dumps({"schema": "dlmm.result/2"}))
    proc = _writer(tmp_path, "old")
    _kill(proc)
    assert not out.exists()  # killed between the two renames
    assert len(_siblings(tmp_path)) == 2  # .out.tmp-… and .out.old-…
    assert [p.name for p in clean_stale_siblings(out)] and _siblings(tmp_path) == []
    assert json.loads((out / "result.json").read_text()) == {"schema": "dlmm.result/2"}


def test_killed_writer_not_yet_reaped_counts_as_gone(tmp_path):
    proc = _writer(tmp_path, "tmp")
    os.kill(proc.pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline
    (stale,) = _siblings(tmp_path)
    assert [p.name for p in clean_stale_siblings(tmp_path / "out")] == [stale]
    assert _siblings(tmp_path) == []
    assert proc.wait(timeout=30) == -signal.SIGKILL
    proc.stdout.close()
