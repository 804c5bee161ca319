"""Every way a user points ``dlmm`` at an S3-compatible store, for every file it reads and
writes: one file-system layer (fsspec), never a second client that knows only some of them.

The store is moto's server on 127.0.0.1 (the ``s3_endpoint`` fixture). The
installed ``dlmm`` command runs in a subprocess whose environment names the
endpoint one way only (its embedded cluster's workers inherit it): fsspec's
``FSSPEC_S3_ENDPOINT_URL``, or fsspec's storage options as JSON
(``FSSPEC_S3``); botocore's ``AWS_ENDPOINT_URL`` is the way of
``tests/cli/test_s3.py``. Each way runs the nightly command on the store (night
one: nothing there yet, a cold start; for one way, night two: skipped), and
``dlmm summary`` reads the result back. The numbers are statsmodels'.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import s3fs

from dlmm.io.folders import RESULT_FOLDER
from dlmm.io.store import read_published
from tests.cli.helpers import TIMEOUT
from tests.reliability.helpers import statsmodels_fit
from tests.simulate import grouped_data

DLMM = str(Path(sys.executable).with_name("dlmm"))
BUCKET = "endpoints"
MODEL = ["-f", "y ~ x1", "-g", "g", "--re-formula", "~x1", "--vc", "c=0 + C(c)"]


def _env(way: str, endpoint: str) -> dict[str, str]:
    """This process's environment with the endpoint named ``way`` only."""
    env = {k: v for k, v in os.environ.items()
           if k != "AWS_ENDPOINT_URL" and not k.startswith("FSSPEC_")}
    if way == "AWS_ENDPOINT_URL":
        env["AWS_ENDPOINT_URL"] = endpoint
    elif way == "FSSPEC_S3_ENDPOINT_URL":
        env["FSSPEC_S3_ENDPOINT_URL"] = endpoint
    else:
        env["FSSPEC_S3"] = json.dumps({"endpoint_url": endpoint})
    return env


def dlmm(*args, env, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([DLMM, *map(str, args)], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=TIMEOUT)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return grouped_data(n_groups=30, per_group=(4, 9), k_fe=2, re_cov=[[0.8, 0.2], [0.2, 0.4]],
                        vc_sd={"c": 0.7}, seed=7)


@pytest.fixture(scope="module")
def sm(frame):
    _, result, _, error = statsmodels_fit("y ~ x1", frame, groups="g", re_formula="~x1",
                                          vc_formula={"c": "0 + C(c)"})
    assert error is None
    return result


@pytest.fixture(scope="module")
def s3_data(s3_endpoint, frame) -> str:
    fs = s3fs.S3FileSystem()
    fs.mkdir(BUCKET)
    with fs.open(f"{BUCKET}/data/part.0.parquet", "wb") as f:
        frame.to_parquet(f, index=False)
    return f"s3://{BUCKET}/data/"


# (AWS_ENDPOINT_URL, which the s3_endpoint fixture sets in this process, is the way of
# tests/cli/test_s3.py, whose dlmm fit, summary and predict run with it alone.)
@pytest.mark.parametrize("way", ["FSSPEC_S3_ENDPOINT_URL", "storage options (FSSPEC_S3)"])
def test_every_file_goes_through_the_store_the_user_named(way, s3_endpoint, s3_data, sm,
                                                          tmp_path):
    env = _env(way, s3_endpoint)
    url = f"s3://{BUCKET}/fits/{way.split()[0].lower()}"
    nightly = ["fit", s3_data, *MODEL, "--fitted", "--workers", "1",
               "--threads-per-worker", "1", "--start-from", url, "--skip-unchanged",
               "-o", url, "--overwrite"]
    first = dlmm(*nightly, env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert f"cold start: no previous output in {url!r} yet" in first.stderr
    assert list(tmp_path.iterdir()) == []  # nothing local

    published = read_published(url, RESULT_FOLDER)  # (this process: AWS_ENDPOINT_URL)
    assert {"random_effects.parquet", "vc_effects.parquet", "result.json",
            "fitted.parquet/part.0.parquet"} <= set(published.files)
    doc = json.loads(published.read_bytes("result.json"))
    np.testing.assert_allclose(doc["estimates"]["llf"], sm.llf, rtol=1e-8)
    np.testing.assert_allclose(list(doc["estimates"]["fe_params"].values()),
                               sm.fe_params.to_numpy(), rtol=1e-4)
    re_table = pd.read_parquet(io.BytesIO(published.read_bytes("random_effects.parquet")))
    sm_re = pd.DataFrame(sm.random_effects).T
    np.testing.assert_allclose(re_table["x1"].to_numpy(), sm_re["x1"].to_numpy(),
                               rtol=1e-3, atol=1e-4)
    vc_table = pd.read_parquet(io.BytesIO(published.read_bytes("vc_effects.parquet")))
    assert len(vc_table) > 60  # (30 groups, most with each of the 3 levels)
    np.testing.assert_allclose(
        vc_table["effect"].to_numpy(),
        [sm_re.loc[g, f"c[{column}]"] for g, column in zip(vc_table["g"], vc_table["column"])],
        rtol=1e-3, atol=1e-4)

    if way == "FSSPEC_S3_ENDPOINT_URL":  # (the way that failed; one suffices: the time)
        second = dlmm(*nightly, env=env, cwd=tmp_path)  # nothing changed: skipped
        assert second.returncode == 0, second.stderr
        assert f"are those of {url}: no data read, nothing written" in second.stderr
        again = read_published(url, RESULT_FOLDER).read_bytes("result.json")
        assert json.loads(again) == doc

    summary = dlmm("summary", url, env=env, cwd=tmp_path)
    assert summary.returncode == 0, summary.stderr
    assert summary.stdout == published.read_bytes("summary.txt").decode()


def test_a_missing_input_bucket_is_one_line_naming_it(s3_endpoint, tmp_path):
    env = _env("AWS_ENDPOINT_URL", s3_endpoint)
    proc = dlmm("fit", "s3://no-such-bucket-dlmm/data/", *MODEL, "-o", "out", env=env,
                cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == ("dlmm: error: DATA 's3://no-such-bucket-dlmm/data/': no "
                           "bucket 'no-such-bucket-dlmm'\n")
    assert list(tmp_path.iterdir()) == []


def test_write_random_effects_to_a_url_uses_fsspecs_endpoint(s3_endpoint, tmp_path):
    """``result.write_random_effects('s3://...')`` of a pandas fit with the endpoint named
    only by ``FSSPEC_S3_ENDPOINT_URL``: written through fsspec to that store (pandas'
    own choice for a URL, pyarrow's S3 client, went to AWS instead)."""
    s3fs.S3FileSystem().mkdir(BUCKET + "-re")
    script = (
        "import pandas as pd, dlmm\n"
        "data = pd.read_csv('sleepstudy.csv')\n"
        "r = dlmm.mixedlm('Reaction ~ Days', data, groups='Subject', re_formula='~Days').fit()\n"
        f"r.write_random_effects('s3://{BUCKET}-re/re.parquet')\n"
        "r.random_effects_table().to_csv('expected.csv')\n"
    )
    repo = Path(__file__).resolve().parents[2]
    (tmp_path / "sleepstudy.csv").write_bytes(
        (repo / "tests/reference/data/sleepstudy.csv").read_bytes())
    env = _env("FSSPEC_S3_ENDPOINT_URL", s3_endpoint)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(repo), env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    written = pd.read_parquet(io.BytesIO(s3fs.S3FileSystem().cat(f"{BUCKET}-re/re.parquet")))
    expected = pd.read_csv(tmp_path / "expected.csv", index_col=0)
    assert len(written) == 18
    np.testing.assert_allclose(written.to_numpy(dtype=float), expected.to_numpy(dtype=float),
                               rtol=1e-12)
