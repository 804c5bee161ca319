"""One saved-result format: what ``dlmm fit -o`` and ``result.save`` write, ``dlmm
summary``, ``dlmm predict`` and ``dlmm.load_result`` all read, alike."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import dlmm
from tests.cli.helpers import FORMULA, _fit_args, run_dlmm


@pytest.fixture(scope="module")
def folders(scheduler, simulated, tmp_path_factory):
    """The same model written by ``dlmm fit -o`` (with ``--fitted``) and by ``save()``."""
    root = tmp_path_factory.mktemp("one_format")
    cli_out = root / "cli"
    fit = run_dlmm(*_fit_args(simulated, "--scheduler", scheduler, "--output", cli_out,
                              "--fitted", "--quiet"))
    assert fit.returncode == 0, fit.stderr
    data = pd.read_parquet(simulated)
    api = dlmm.mixedlm(FORMULA, data, groups="g", re_formula="~x1",
                       vc_formula={"c": "0 + C(c)"}).fit()
    api.save(root / "api")
    return {"dlmm fit": cli_out, "save()": root / "api"}, api, data


@pytest.mark.parametrize("writer", ["dlmm fit", "save()"])
def test_every_reader_reads_every_writer(folders, scheduler, tmp_path, writer):
    paths, api, data = folders
    folder = paths[writer]
    doc = json.loads((folder / "result.json").read_text())
    assert doc["schema"] == "dlmm.result/2" and "state" in doc

    loaded = dlmm.load_result(folder)
    assert loaded.llf == pytest.approx(api.llf, rel=1e-6)
    np.testing.assert_allclose(loaded.fe_params, api.fe_params, rtol=1e-6)

    summary = run_dlmm("summary", folder)
    assert summary.returncode == 0, summary.stderr
    assert summary.stdout == (folder / "summary.txt").read_text()
    assert "Mixed Linear Model Regression Results" in summary.stdout

    new = tmp_path / "new.parquet"
    data.drop(columns="y").to_parquet(new)
    pred = tmp_path / "pred"
    proc = run_dlmm("predict", folder, new, "--output", pred, "--scheduler", scheduler,
                    "--quiet")
    assert proc.returncode == 0, proc.stderr
    written = pd.read_parquet(pred)["predicted"].to_numpy()
    np.testing.assert_allclose(written, api.predict(data, random_effects=True).to_numpy(),
                               rtol=1e-6)
    np.testing.assert_allclose(written, loaded.predict(data, random_effects=True).to_numpy(),
                               rtol=1e-12)
