"""Predictions of lme4's models beyond statsmodels' shape (``TermsResults.predict``):
lme4 1.1-31's ``predict(m)``, ``predict(m, newdata, allow.new.levels = TRUE)`` and
``re.form = NA`` (``tests/reference/nested/lme4_nested_features.json``, made by
``lme4_nested_features.R``), and a brute force from ``fe_params`` and
``random_effects``; pandas, Dask and Parquet give the same numbers."""

from __future__ import annotations

import json
from pathlib import Path

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

import dlmm
from dlmm.exceptions import InputError

REFERENCE = Path(__file__).resolve().parents[1] / "reference" / "nested"
CASES = json.loads((REFERENCE / "lme4_nested.json").read_text())["cases"]
PREDICTIONS = json.loads((REFERENCE / "lme4_nested_features.json").read_text())["predictions"]


def _data(key: str) -> pd.DataFrame:
    return pd.read_csv(REFERENCE / "data" / CASES[key]["data"])


@pytest.fixture(scope="module", params=sorted(PREDICTIONS))
def fitted(request):
    key = request.param
    data = _data(key)
    return key, data, dlmm.lmer(CASES[key]["lmer"], data, REML=CASES[key]["reml"])


def test_fitted_values_are_lme4s(fitted):
    key, data, fit = fitted
    ref = PREDICTIONS[key]
    got = fit.predict()
    assert isinstance(got, pd.Series) and got.index.equals(data.index)
    assert len(got) == ref["n_fitted"]
    np.testing.assert_allclose(got.to_numpy()[:20], ref["fitted_first"], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got.sum(), ref["fitted_sum"], rtol=1e-8, atol=1e-6)
    np.testing.assert_allclose((got**2).sum(), ref["fitted_sum_squares"], rtol=1e-7)


def test_new_levels_get_no_effect_as_in_lme4(fitted):
    """Unseen inner levels keep the outer factor's effect; unseen outer levels and
    missing grouping values give that factor none (lme4's allow.new.levels)."""
    key, _, fit = fitted
    ref = PREDICTIONS[key]
    new = pd.DataFrame(ref["newdata"])
    got = fit.predict(new)
    assert got.index.equals(new.index)
    np.testing.assert_allclose(got.to_numpy(), ref["predict_new"], rtol=1e-6, atol=1e-6)
    fixed = fit.predict(new, random_effects=False)
    np.testing.assert_allclose(fixed.to_numpy(), ref["predict_fixed"], rtol=1e-7, atol=1e-7)


def test_predictions_are_the_brute_force(fitted):
    """X beta plus, per factor, the row's columns times its level's conditional modes,
    computed here from the data, ``fe_params`` and ``random_effects`` row by row."""
    key, data, fit = fitted
    fe = fit.fe_params
    expected = np.full(len(data), fe["Intercept"])
    for name in fe.index.drop("Intercept"):
        expected += fe[name] * data[name].to_numpy()
    for factor, modes in fit.random_effects.items():
        columns = factor.split(":")
        labels = data[columns[0]].astype(str)
        for column in columns[1:]:
            labels = labels + ":" + data[column].astype(str)
        effects = modes.loc[labels.to_numpy()].to_numpy()
        for j, column in enumerate(modes.columns):  # loop over a factor's few columns
            z = 1.0 if column == "(Intercept)" else data[column].to_numpy()
            expected += z * effects[:, j]
    np.testing.assert_allclose(fit.predict().to_numpy(), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fit.fittedvalues.to_numpy(), expected, rtol=1e-12, atol=1e-12)


def test_missing_values_and_columns(fitted):
    key, data, fit = fitted
    new = data.head(3).drop(columns=[CASES[key]["lmer"].split("~")[0].strip()])
    x = fit.fe_params.index[1]
    new.loc[new.index[1], x] = np.nan
    got = fit.predict(new)
    assert np.isnan(got.iloc[1]) and np.isfinite(got.iloc[[0, 2]]).all()
    with pytest.raises(InputError, match=repr(x)):
        fit.predict(new.drop(columns=[x]))
    factor = next(iter(fit.random_effects)).split(":")[-1]
    with pytest.raises(InputError, match=repr(factor)):
        fit.predict(new.drop(columns=[factor]))
    # without the random effects the grouping columns are not needed
    np.testing.assert_allclose(fit.predict(new.drop(columns=[factor]), random_effects=False),
                               fit.predict(new, random_effects=False))


def test_dask_and_parquet_predictions_are_lazy_and_equal(dask_client, tmp_path):
    key = "sim_slopes2_reml"
    ref = PREDICTIONS[key]
    fit = dlmm.lmer(CASES[key]["lmer"], _data(key), REML=True)
    new = pd.concat([pd.DataFrame(ref["newdata"])] * 3, ignore_index=True)
    expected = np.tile(ref["predict_new"], 3)
    lazy = fit.predict(dd.from_pandas(new, npartitions=3, sort=False), client=dask_client)
    assert lazy.npartitions == 3
    got = dask_client.compute(lazy).result()
    np.testing.assert_allclose(got.sort_index().to_numpy(), expected, rtol=1e-6, atol=1e-6)
    path = tmp_path / "new.parquet"
    new.to_parquet(path)
    from_parquet = dask_client.compute(fit.predict(str(path), client=dask_client)).result()
    np.testing.assert_allclose(from_parquet.to_numpy(), got.sort_index().to_numpy(),
                               rtol=0, atol=1e-12)
