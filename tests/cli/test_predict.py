"""``dlmm predict`` end to end on a real Dask cluster."""

from __future__ import annotations

import numpy as np
import pandas as pd

import dlmm
from tests.cli.helpers import _error_line, _fit_args, _no_output, run_dlmm


def test_predict_writes_what_the_python_api_predicts(scheduler, simulated, tmp_path):
    out = tmp_path / "out"
    fit = run_dlmm(*_fit_args(simulated, "--scheduler", scheduler, "--output", out, "--quiet"))
    assert fit.returncode == 0, fit.stderr
    # New data: the fitted groups plus rows of a group the fit never saw.
    data = pd.read_parquet(simulated).drop(columns="y")
    unseen = data.head(5).assign(g=10_000)
    new = tmp_path / "new.parquet"
    pd.concat([data, unseen], ignore_index=True).to_parquet(new)
    pred = tmp_path / "pred"
    proc = run_dlmm("predict", out, new, "--output", pred, "--scheduler", scheduler, "--quiet")
    assert proc.returncode == 0, proc.stderr
    written = pd.read_parquet(pred)
    assert sorted(written.columns) == ["c", "g", "predicted", "x1", "x2"]
    result = dlmm.load_result(out)
    expected = result.predict(pd.concat([data, unseen], ignore_index=True), random_effects=True)
    np.testing.assert_allclose(written["predicted"].to_numpy(), expected.to_numpy(),
                               rtol=1e-12, atol=1e-12)
    # Unseen group: exactly the fixed part.
    fe = result.fe_params
    tail = written[written["g"] == 10_000]
    fixed = fe["Intercept"] + fe["x1"] * tail["x1"] + fe["x2"] * tail["x2"]
    np.testing.assert_allclose(tail["predicted"].to_numpy(), fixed.to_numpy(), rtol=1e-13)

    again = run_dlmm("predict", out, new, "--output", pred, "--scheduler", scheduler)
    assert again.returncode == 2 and "exists" in _error_line(again)
    gone = run_dlmm("predict", out, tmp_path / "missing.parquet", "--output",
                    tmp_path / "p2", "--scheduler", scheduler)
    assert gone.returncode == 2 and "does not exist" in _error_line(gone)
    _no_output(tmp_path, "p2")
