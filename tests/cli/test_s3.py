"""``dlmm fit``, ``summary`` and ``predict`` with data and outputs on S3.

A real S3-compatible server (moto's, on 127.0.0.1: ``tests/io/s3server.py``)
and a real Dask scheduler with two worker processes, which read the data and
write the fitted values on S3 themselves. The numbers are statsmodels'.
"""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import s3fs

import dlmm
from dlmm.cli import main
from dlmm.io.folders import PREDICTIONS, RESULT_FOLDER
from dlmm.io.store import MANIFEST, read_published
from tests.cli.helpers import TIMEOUT
from tests.reliability.helpers import statsmodels_fit
from tests.simulate import grouped_data

FIT = ["--formula", "y ~ x1", "--groups", "g", "--re-formula", "~x1", "--quiet"]


def _dlmm(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dlmm.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=TIMEOUT)


def _refused(capsys, *args) -> str:
    """Run ``dlmm ARGS`` in this process (refusals come before any work); exit code 2
    and its one error line."""
    capsys.readouterr()
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dlmm: error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return grouped_data(n_groups=40, per_group=(4, 9), k_fe=2, re_cov=[[0.8, 0.2], [0.2, 0.4]],
                        seed=31)


@pytest.fixture(scope="module")
def statsmodels_result(frame):
    _, result, _, error = statsmodels_fit("y ~ x1", frame, groups="g", re_formula="~x1")
    assert error is None
    return result


@pytest.fixture(scope="module")
def s3_data(s3_endpoint, frame) -> str:
    """The frame as three Parquet files under ``s3://BUCKET/data/``."""
    fs = s3fs.S3FileSystem()
    bucket = "cli-s3"
    fs.mkdir(bucket)
    cuts = [0, 90, 170, len(frame)]  # groups split across files are added by key
    for k in range(3):
        with fs.open(f"{bucket}/data/part.{k}.parquet", "wb") as f:
            frame.iloc[cuts[k]:cuts[k + 1]].to_parquet(f, index=False)
    return f"s3://{bucket}/data/"


@pytest.fixture(scope="module")
def s3_fit(s3_endpoint, s3_data, scheduler, tmp_path_factory):
    """``dlmm fit s3://…/data/ -o s3://…/fit --fitted`` on the scheduler; the output URL
    and the folder the command ran in."""
    cwd = tmp_path_factory.mktemp("cwd")
    url = s3_data.replace("/data/", "/fits/a")
    proc = _dlmm("fit", s3_data, *FIT, "--fitted", "--output", url, "--scheduler", scheduler,
                 cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return url, cwd, proc


def test_fit_reads_s3_and_publishes_its_outputs_on_s3(s3_fit, frame, statsmodels_result):
    url, cwd, proc = s3_fit
    assert list(cwd.iterdir()) == []  # no local folder named "s3:"
    published = read_published(url, RESULT_FOLDER)
    assert "fitted.parquet" in {n.split("/")[0] for n in published.files}
    result = dlmm.load_result(url)
    assert result.nobs == len(frame) and result.n_groups == 40
    sm = statsmodels_result
    np.testing.assert_allclose(result.fe_params.to_numpy(), sm.fe_params.to_numpy(),
                               rtol=1e-4)
    np.testing.assert_allclose(result.cov_re.to_numpy(), sm.cov_re.to_numpy(), rtol=1e-3,
                               atol=1e-5)
    np.testing.assert_allclose(result.llf, sm.llf, rtol=1e-8)
    # The workers wrote the fitted values on S3, in the order of the input rows.
    parts = sorted(n for n in published.files if n.startswith("fitted.parquet/")
                   and n.endswith(".parquet"))
    fitted = pd.concat([pd.read_parquet(io.BytesIO(published.read_bytes(n))) for n in parts],
                       ignore_index=True)["fitted"]
    np.testing.assert_allclose(fitted.to_numpy(), sm.fittedvalues.to_numpy(), rtol=1e-4,
                               atol=1e-4)


def test_summary_prints_the_published_summary(s3_fit, statsmodels_result, capsys):
    url, _, _ = s3_fit
    capsys.readouterr()
    assert main(["summary", url]) == 0  # in this process: nothing but reading
    out = capsys.readouterr().out
    published = read_published(url, RESULT_FOLDER)
    assert out == published.read_bytes("summary.txt").decode()
    assert "Mixed Linear Model Regression Results" in out
    assert f"{statsmodels_result.fe_params['x1']:.3f}" in out


def test_predict_from_a_result_on_s3_to_s3(s3_fit, s3_data, scheduler, statsmodels_result,
                                           capsys):
    url, cwd, _ = s3_fit
    out = s3_data.replace("/data/", "/predictions")
    proc = _dlmm("predict", url, s3_data, "--output", out, "--scheduler", scheduler,
                 "--quiet", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    assert list(cwd.iterdir()) == []
    published = read_published(out, PREDICTIONS)
    parts = sorted(n for n in published.files if n.endswith(".parquet"))
    predicted = pd.concat([pd.read_parquet(io.BytesIO(published.read_bytes(n)))
                           for n in parts], ignore_index=True)
    assert sorted(predicted.columns) == ["g", "predicted", "x1"]
    # On the rows it was fitted to, with the random effects: statsmodels' fitted values.
    np.testing.assert_allclose(predicted["predicted"].to_numpy(),
                               statsmodels_result.fittedvalues.to_numpy(), rtol=1e-4,
                               atol=1e-4)
    again = _refused(capsys, "predict", url, s3_data, "--output", out, "--scheduler",
                     scheduler)
    assert "exists; pass --overwrite" in again
    inside = _refused(capsys, "predict", url, s3_data, "--output", f"{url}/pred",
                      "--scheduler", scheduler)
    assert "lies inside the input RESULT_DIR" in inside


def test_refusals_come_before_any_work(s3_fit, s3_data, tmp_path, monkeypatch, capsys):
    url, _, _ = s3_fit
    cases = [
        (["fit", s3_data, *FIT, "--output", url], "exists; pass --overwrite"),
        (["fit", s3_data, *FIT, "--output", f"{s3_data}out"], "lies inside the input DATA"),
        (["fit", s3_data, *FIT, "--output", "s3://no-such-bucket-dlmm/out"], "no bucket"),
        (["fit", s3_data, *FIT, "--output", "foo://b/out"], "unknown storage scheme"),
        (["summary", s3_data.replace("/data/", "/nothing")], "no published dlmm output"),
        (["fit", "foo://b/data/", *FIT], "DATA 'foo://b/data/': unknown storage scheme"),
        (["fit", s3_data.replace("/data/", "/missing/"), *FIT],
         "DATA 's3://cli-s3/missing/': no such file or prefix in bucket 'cli-s3'"),
        (["predict", "foo://b/fit", s3_data, "-o", "pred"], "RESULT_DIR 'foo://b/fit': "
                                                            "unknown storage scheme"),
        (["simulate", "--groups", "3", "--per-group", "2", "--partitions", "1", "--seed",
          "1", "--output", "s3://cli-s3/sim"], "is a URL: give a local folder"),
    ]
    monkeypatch.chdir(tmp_path)
    for args, message in cases:
        assert message in _refused(capsys, *args), args
    assert list(tmp_path.iterdir()) == []
    fs = s3fs.S3FileSystem()
    fs.invalidate_cache()
    assert not fs.exists("cli-s3/sim") and not fs.exists("cli-s3/data/out")
    assert fs.exists(f"{url[len('s3://'):]}/{MANIFEST}")


def test_without_s3fs_an_s3_output_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    registry = sys.modules["fsspec.registry"]
    monkeypatch.setitem(sys.modules, "s3fs", None)  # as if s3fs were not installed
    monkeypatch.delitem(registry._registry, "s3", raising=False)
    monkeypatch.chdir(tmp_path)
    line = _refused(capsys, "fit", "data.parquet", *FIT, "--output", "s3://bucket/out")
    assert "backend of 's3://' is not installed" in line and "dlmm[s3]" in line
    assert list(tmp_path.iterdir()) == []
