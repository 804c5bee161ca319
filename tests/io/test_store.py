"""``dlmm.io.store``: outputs at URLs, staged under a run prefix and published by a manifest.

Against a real S3-compatible server (moto's, on 127.0.0.1: ``tests/io/s3server.py``)
through s3fs.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import s3fs

import dlmm
from dlmm.exceptions import InputError
from dlmm.io.folders import PREDICTIONS, RESULT_FOLDER, check_output_folder
from dlmm.io.publish import staged_output
from dlmm.io.result_folder import (
    RANDOM_EFFECTS_FILE,
    RESULT_FILE,
    SUMMARY_FILE,
    VC_EFFECTS_FILE,
    open_result,
    write_outputs,
    write_random_effects,
    write_summary,
    write_vc_effects,
)
from dlmm.io.store import MANIFEST, RUNS, check_output
from tests.conftest import REPO
from tests.simulate import grouped_data


@pytest.fixture(scope="module")
def result():
    data = grouped_data(n_groups=30, per_group=6, re_cov=np.diag([0.6, 0.3]),
                        vc_sd={"c": 0.5}, seed=8)
    model = dlmm.mixedlm("y ~ x1 + x2", data, groups="g", re_formula="~x1",
                         vc_formula={"c": "0 + C(c)"})
    return model.fit()


@pytest.fixture
def fs(s3_endpoint):
    store = s3fs.S3FileSystem(skip_instance_cache=True)
    store.invalidate_cache()
    return store


def _objects(fs, prefix: str) -> list[str]:
    fs.invalidate_cache()
    return sorted(p[len(prefix) + 1:] for p in fs.find(prefix))


def _manifest(fs, prefix: str) -> dict:
    fs.invalidate_cache()
    return json.loads(fs.cat_file(f"{prefix}/{MANIFEST}"))


def _fail_after_summary(context, folder):
    raise RuntimeError("disk full (simulated between two files)")


def test_published_result_lists_every_file_with_its_size_and_sha256(
        result, fs, s3_bucket, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = f"s3://{s3_bucket}/fits/out"
    doc = write_outputs(result, url, options={"data": f"s3://{s3_bucket}/data/"})
    manifest = _manifest(fs, f"{s3_bucket}/fits/out")
    assert manifest["schema"] == "dlmm.manifest/1" and manifest["kind"] == "dlmm.result/"
    run = manifest["run"]
    assert run.startswith(f"{RUNS}/")
    names = {RESULT_FILE, SUMMARY_FILE, RANDOM_EFFECTS_FILE, VC_EFFECTS_FILE}
    assert _objects(fs, f"{s3_bucket}/fits/out") == sorted(
        [MANIFEST, *(f"{run}/{n}" for n in names)])
    for entry in manifest["files"]:  # each file as the store holds it
        data = fs.cat_file(f"{s3_bucket}/fits/out/{run}/{entry['name']}")
        assert entry["size"] == len(data) > 0
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert {e["name"] for e in manifest["files"]} == names
    stored = json.loads(fs.cat_file(f"{s3_bucket}/fits/out/{run}/{RESULT_FILE}"))
    assert stored["estimates"] == doc["estimates"]
    assert list(tmp_path.iterdir()) == []  # no local folder named "s3:"


def test_load_result_from_a_url_gives_the_fit_back(result, s3_bucket):
    url = f"s3://{s3_bucket}/out"
    result.save(url)
    loaded = dlmm.load_result(url)
    pd.testing.assert_series_equal(loaded.params, result.params, rtol=0, atol=0)
    np.testing.assert_array_equal(loaded.cov_params().to_numpy(),
                                  result.cov_params().to_numpy())
    assert str(loaded.summary()) == str(result.summary())
    re_loaded, re_fit = loaded.random_effects, result.random_effects
    assert set(re_loaded) == set(re_fit)
    for key in re_fit:
        np.testing.assert_array_equal(re_loaded[key].to_numpy(), re_fit[key].to_numpy())
    with pytest.raises(InputError, match="exists"):
        result.save(url)


def test_a_failure_between_two_files_publishes_nothing(result, fs, s3_bucket):
    url = f"s3://{s3_bucket}/out"
    with pytest.raises(RuntimeError, match="simulated"):
        write_outputs(result, url, artifacts=[write_summary, _fail_after_summary])
    assert _objects(fs, f"{s3_bucket}/out") == []  # the run's files are deleted
    with pytest.raises(InputError, match="no published dlmm output"):
        dlmm.load_result(url)


def test_a_failed_overwrite_keeps_the_published_result(result, fs, s3_bucket):
    url = f"s3://{s3_bucket}/out"
    write_outputs(result, url)
    before = _manifest(fs, f"{s3_bucket}/out")
    with pytest.raises(RuntimeError, match="simulated"):
        write_outputs(result, url, overwrite=True,
                      artifacts=[write_summary, write_random_effects, _fail_after_summary])
    assert _manifest(fs, f"{s3_bucket}/out") == before
    assert {o.split("/")[1] for o in _objects(fs, f"{s3_bucket}/out") if "/" in o} == {
        before["run"].split("/")[1]}
    assert dlmm.load_result(url).llf == result.llf


def test_overwrite_replaces_a_result_and_deletes_its_run(result, fs, s3_bucket):
    url = f"s3://{s3_bucket}/out"
    write_outputs(result, url)
    old = _manifest(fs, f"{s3_bucket}/out")["run"]
    with pytest.raises(InputError, match="exists; pass --overwrite"):
        write_outputs(result, url)
    write_outputs(result, url, overwrite=True,
                  artifacts=[write_summary, write_random_effects, write_vc_effects])
    new = _manifest(fs, f"{s3_bucket}/out")["run"]
    assert new != old
    assert {o.rsplit("/", 1)[0] for o in _objects(fs, f"{s3_bucket}/out") if "/" in o} == {
        new}
    assert dlmm.load_result(url).llf == result.llf


def test_overwrite_refuses_what_is_not_a_dlmm_output_of_the_kind(result, fs, s3_bucket):
    fs.pipe_file(f"{s3_bucket}/mine/notes.txt", b"precious")
    with pytest.raises(InputError, match="--overwrite refused: --output .* is not a dlmm "
                                         "result folder"):
        check_output(f"s3://{s3_bucket}/mine", True, kind=RESULT_FOLDER)
    with pytest.raises(InputError, match="exists; pass --overwrite"):
        write_outputs(result, f"s3://{s3_bucket}/mine")
    with staged_output(f"s3://{s3_bucket}/pred", kind=PREDICTIONS) as run:
        (run / PREDICTIONS.marker).write_text(json.dumps({"schema": "dlmm.predictions/1"}))
    with pytest.raises(InputError, match="is not a dlmm result folder"):
        write_outputs(result, f"s3://{s3_bucket}/pred", overwrite=True)
    with pytest.raises(InputError, match="is not a dlmm result folder"):
        dlmm.load_result(f"s3://{s3_bucket}/pred")
    assert fs.cat_file(f"{s3_bucket}/mine/notes.txt") == b"precious"


def test_an_output_at_or_around_an_input_url_is_refused(result, s3_bucket):
    data = f"s3://{s3_bucket}/data/*.parquet"
    for url, how in ((f"s3://{s3_bucket}/data/out", "lies inside"),
                     (f"s3://{s3_bucket}/data", "is"), (f"s3://{s3_bucket}/all", None),
                     (f"s3://{s3_bucket}", "contains")):
        if how is None:
            check_output(url, kind=RESULT_FOLDER, inputs={"DATA": data})
            continue
        with pytest.raises(InputError, match=f"{how} the input DATA"):
            write_outputs(result, url, options={"data": [data]})


def test_readers_trust_only_the_manifest(result, fs, s3_bucket):
    url, root = f"s3://{s3_bucket}/out", f"{s3_bucket}/out"
    write_outputs(result, url)
    manifest = _manifest(fs, root)
    fs.pipe_file(f"{root}/{manifest['run']}/{SUMMARY_FILE}", b"not the fit\n")
    doc, files = open_result(url)  # result.json is intact
    assert doc["schema"] == "dlmm.result/2"
    with pytest.raises(InputError, match="summary.txt does not match its _manifest.json"):
        files.read_bytes(SUMMARY_FILE)
    for bad, message in (({"run": "_runs/../elsewhere"}, "is not a run of this prefix"),
                         ({"files": [{"name": "../x", "size": 1, "sha256": "0"}]},
                          "is not a file of the run"),
                         ({"kind": "dlmm.truth/"}, "is not a dlmm result folder")):
        fs.pipe_file(f"{root}/{MANIFEST}", json.dumps({**manifest, **bad}).encode())
        with pytest.raises(InputError, match=message):
            dlmm.load_result(url)
    fs.pipe_file(f"{root}/{MANIFEST}", b"{not json")
    with pytest.raises(InputError, match="is not a dlmm manifest"):
        dlmm.load_result(url)


_KILLED_WRITER = textwrap.dedent("""
    import os, signal, sys
    import dlmm
    from dlmm.io.result_folder import write_outputs, write_random_effects, write_summary
    from tests.simulate import grouped_data

    data = grouped_data(n_groups=20, per_group=5, re_cov=[[0.5]], seed=3)
    result = dlmm.mixedlm("y ~ x1", data, groups="g").fit()

    def killed(context, folder):
        os.kill(os.getpid(), signal.SIGKILL)

    write_outputs(result, sys.argv[1], artifacts=[write_summary, write_random_effects, killed])
""")


def test_a_writer_killed_mid_write_publishes_nothing_and_is_cleaned_up(result, fs,
                                                                        s3_bucket):
    url, root = f"s3://{s3_bucket}/out", f"{s3_bucket}/out"
    proc = subprocess.run([sys.executable, "-c", _KILLED_WRITER, url], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    left = _objects(fs, root)
    assert MANIFEST not in left
    assert sorted(o.rsplit("/", 1)[1] for o in left) == [RANDOM_EFFECTS_FILE, SUMMARY_FILE]
    with pytest.raises(InputError, match="no published dlmm output.*did not finish"):
        dlmm.load_result(url)
    write_outputs(result, url)  # the next writer deletes the dead writer's run
    run = _manifest(fs, root)["run"]
    assert {o.rsplit("/", 1)[0] for o in _objects(fs, root) if "/" in o} == {run}
    assert dlmm.load_result(url).llf == result.llf


def test_unknown_schemes_and_missing_backends_are_one_line_errors(result, monkeypatch):
    registry = sys.modules["fsspec.registry"]
    monkeypatch.setitem(registry.known_implementations, "nosuchfs",
                        {"class": "no_such_module_of_dlmm.FileSystem",
                         "err": "Install nosuchfs to access it"})
    for url, message in (("foo://b/out", "unknown storage scheme 'foo://'"),
                         ("nosuchfs://b/out", "backend of 'nosuchfs://' is not installed: "
                                              "Install nosuchfs")):
        with pytest.raises(InputError, match=message) as info:
            check_output(url, kind=RESULT_FOLDER)
        assert "\n" not in str(info.value)
        with pytest.raises(InputError, match=message):
            write_outputs(result, url)
        with pytest.raises(InputError, match=message):
            dlmm.load_result(url)


def test_bucket_and_prefix_are_checked_before_any_work(s3_bucket):
    with pytest.raises(InputError, match="no bucket 'no-such-bucket-dlmm'"):
        check_output("s3://no-such-bucket-dlmm/out", kind=RESULT_FOLDER)
    with pytest.raises(InputError, match="name a prefix inside the bucket"):
        check_output("s3://", kind=RESULT_FOLDER)


def test_local_folder_writers_refuse_urls(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match="is a URL: give a local folder"):
        check_output_folder("s3://bucket/data")
    assert list(tmp_path.iterdir()) == []
    out = check_output(f"file://{tmp_path}/out", kind=RESULT_FOLDER)
    assert str(out) == f"{tmp_path}/out"
