"""``dlmm predict`` end to end on a real Dask cluster."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import dlmm
from dlmm import cli
from tests.cli.helpers import _error_line, _fit_args, _no_output, run_dlmm, run_dlmm_here
from tests.conftest import reference_data


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

    again = run_dlmm_here("predict", out, new, "--output", pred, "--scheduler", scheduler)
    assert again.returncode == 2 and "exists" in _error_line(again)
    gone = run_dlmm_here("predict", out, tmp_path / "missing.parquet", "--output",
                         tmp_path / "p2", "--scheduler", scheduler)
    assert gone.returncode == 2 and "does not exist" in _error_line(gone)
    _no_output(tmp_path, "p2")


def _saved_fit(data: pd.DataFrame, folder, re_formula="~x1"):
    result = dlmm.mixedlm("y ~ x1 + x2", data, groups="g", re_formula=re_formula).fit()
    result.save(folder)
    return result


def test_keep_passes_id_columns_through(scheduler, simulated, tmp_path, capsys):
    data = pd.read_parquet(simulated)
    result = _saved_fit(data, tmp_path / "fit")
    new = data.assign(row_id=[f"r{i}" for i in range(len(data))],
                      site=np.arange(len(data)) % 7)
    new.to_parquet(tmp_path / "new.parquet")
    code = cli.main(["predict", str(tmp_path / "fit"), str(tmp_path / "new.parquet"),
                     "--output", str(tmp_path / "pred"), "--keep", "row_id, site,y",
                     "--scheduler", scheduler, "--quiet"])
    assert code == 0, capsys.readouterr().err
    written = pd.read_parquet(tmp_path / "pred")
    # The kept columns first, in the order given, then the model's, then the predictions.
    assert list(written.columns) == ["row_id", "site", "y", "x1", "x2", "g", "predicted"]
    assert written["row_id"].tolist() == new["row_id"].tolist()
    np.testing.assert_array_equal(written["site"].to_numpy(), new["site"].to_numpy())
    np.testing.assert_array_equal(written["y"].to_numpy(), new["y"].to_numpy())
    np.testing.assert_allclose(written["predicted"].to_numpy(),
                               result.predict(data, random_effects=True).to_numpy(),
                               rtol=1e-12)


@pytest.mark.parametrize(
    ("keep", "message"),
    [
        ("row_id,nosuch", "--keep column 'nosuch' is not in DATA"),
        ("predicted", "--keep 'predicted': that is the name of the output's predictions"),
    ],
)
def test_keep_column_errors_come_before_the_cluster(tmp_path, capsys, keep, message):
    rng = np.random.default_rng(5)
    g = np.repeat(np.arange(12), 5)
    data = pd.DataFrame({"y": rng.normal(size=60) + rng.normal(size=12)[g],
                         "x1": rng.normal(size=60), "x2": rng.normal(size=60), "g": g})
    _saved_fit(data, tmp_path / "fit", re_formula=None)
    data.assign(row_id=np.arange(60)).to_parquet(tmp_path / "new.parquet")
    # Nothing listens at this address: an error about it would mean the cluster came first.
    code = cli.main(["predict", str(tmp_path / "fit"), str(tmp_path / "new.parquet"),
                     "--output", str(tmp_path / "pred"), "--keep", keep,
                     "--scheduler", "tcp://127.0.0.1:9", "--scheduler-timeout", "5"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("dlmm: error: "), err
    assert message in err[0]
    _no_output(tmp_path, "pred")


# -- group labels of the other type than the fit's (issue 21, item 1) -----------------

def _sleepstudy() -> pd.DataFrame:
    """lme4's sleepstudy (Subject: integers 308..372)."""
    return reference_data("sleepstudy.csv")


def _statsmodels_conditional(data: pd.DataFrame, new: pd.DataFrame) -> np.ndarray:
    """Brute force: statsmodels' REML fit of the same model on the same data, its fixed
    part plus its predicted effects of each row's group (none for a group it has not)."""
    import statsmodels.formula.api as smf

    fit = smf.mixedlm("Reaction ~ Days", data, groups="Subject",
                      re_formula="~Days").fit(reml=True, method="lbfgs")
    effects = {int(g): e.to_numpy() for g, e in fit.random_effects.items()}
    b = np.array([effects.get(int(g), np.zeros(2)) for g in new["Subject"]])
    fe = fit.fe_params.to_numpy()
    return fe[0] + fe[1] * new["Days"].to_numpy() + b[:, 0] + b[:, 1] * new["Days"].to_numpy()


@pytest.mark.parametrize("fit_type", ["integer", "text"])
def test_predict_matches_group_labels_of_the_other_type_by_value(scheduler, tmp_path,
                                                                 fit_type):
    # The fit's group column is integer and the new data's text ("308"), or the reverse:
    # the labels name the same groups, so every random effect is added.
    data = _sleepstudy()
    as_text = data.assign(Subject=data["Subject"].astype(str))
    fit_data, other = (data, as_text) if fit_type == "integer" else (as_text, data)
    fitted = dlmm.mixedlm("Reaction ~ Days", fit_data, groups="Subject",
                          re_formula="~Days").fit()
    fitted.save(tmp_path / "fit")
    # New data: every fitted group, plus a group the fit never saw (fixed part only).
    unseen = fit_data.head(3).assign(Subject=999 if fit_type == "integer" else "999")
    new_same = pd.concat([fit_data, unseen], ignore_index=True).drop(columns="Reaction")
    new_other = new_same.assign(Subject=new_same["Subject"].astype(
        str if fit_type == "integer" else np.int64))
    new_other.to_parquet(tmp_path / "new.parquet")
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("dlmm")), "predict", str(tmp_path / "fit"),
         str(tmp_path / "new.parquet"), "--output", str(tmp_path / "pred"),
         "--scheduler", scheduler, "--quiet"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    written = pd.read_parquet(tmp_path / "pred")["predicted"].to_numpy()
    loaded = dlmm.load_result(tmp_path / "fit")
    # (a) as the new data of the fit's own type predict
    same_type = loaded.predict(new_same, random_effects=True).to_numpy()
    np.testing.assert_allclose(written, same_type, rtol=1e-12)
    # (b) statsmodels' fixed part and predicted effects, brute force
    expected = _statsmodels_conditional(data, new_same.assign(
        Subject=new_same["Subject"].astype(np.int64)))
    np.testing.assert_allclose(written, expected, rtol=1e-6)
    assert not np.allclose(written[:-3], loaded.predict(new_same).to_numpy()[:-3], rtol=0.01)
    # The library: the fit in memory and the loaded one.
    for result in (fitted, loaded):
        np.testing.assert_allclose(
            result.predict(new_other, random_effects=True).to_numpy(), expected, rtol=1e-6)
