"""statsmodels' output types (issue 25, item 1): a model made from arrays gives ndarrays
(``params``, ``bse``, ``cov_params()``, ...), one made from pandas objects or formulas
gives pandas, as statsmodels' results wrapper has it; Dask inputs as pandas ones.

The types are statsmodels' own for the same inputs; the values of ``cov_params()``
sliced as statsmodels' ``test_r`` slices them are lme4's (statsmodels' reference
numbers, ``statsmodels/regression/tests/results/lme_r_results.py``).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
import statsmodels.regression.tests.results as sm_results
from statsmodels.regression.mixed_linear_model import MixedLM as SMMixedLM
from statsmodels.regression.tests.results import lme_r_results

import dlmm

ATTRIBUTES = ("params", "bse", "tvalues", "pvalues", "fe_params", "bse_fe", "bse_re",
              "cov_re", "cov_re_unscaled", "normalized_cov_params", "fittedvalues", "resid",
              "vcomp")
METHODS = ("cov_params", "conf_int", "predict")


def _data() -> pd.DataFrame:
    rs = np.random.RandomState(25)
    n, groups = 60, 10
    x = rs.normal(size=(n, 2))
    g = np.repeat(np.arange(groups), n // groups)
    y = x.sum(1) + np.repeat(rs.normal(size=groups), n // groups) + rs.normal(size=n)
    return pd.DataFrame({"y": y, "x1": x[:, 0], "x2": x[:, 1], "g": g})


def _inputs(kind: str, df: pd.DataFrame):
    """``(args, kwargs)`` of ``MixedLM(...)``: arrays, or pandas in one position."""
    y, x, g = df["y"].to_numpy(), df[["x1", "x2"]].to_numpy(), df["g"].to_numpy()
    z = np.ones((len(df), 1))
    if kind == "endog Series":
        y = df["y"]
    elif kind == "exog DataFrame":
        x = df[["x1", "x2"]]
    elif kind == "groups Series":
        g = df["g"]
    elif kind == "exog_re DataFrame":
        z = pd.DataFrame({"one": z[:, 0]})
    return (y, x, g), {"exog_re": z}


def _types(result) -> dict[str, type]:
    out = {name: type(getattr(result, name)) for name in ATTRIBUTES}
    out.update({f"{name}()": type(getattr(result, name)()) for name in METHODS})
    return out


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return _data()


@pytest.mark.parametrize("kind", ["arrays", "endog Series", "exog DataFrame", "groups Series",
                                  "exog_re DataFrame", "formula"])
def test_output_types_are_statsmodels(data, kind):
    if kind == "formula":
        expected = SMMixedLM.from_formula("y ~ x1 + x2", data, groups="g")
        model = dlmm.MixedLM.from_formula("y ~ x1 + x2", data, groups="g")
    else:
        args, kwargs = _inputs(kind, data)
        expected = SMMixedLM(*args, **kwargs)
        model = dlmm.MixedLM(*args, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = expected.fit()
    result = model.fit()
    assert _types(result) == _types(expected)
    np.testing.assert_allclose(np.asarray(result.cov_params())[0:3, 0:3],
                               np.asarray(expected.cov_params())[0:3, 0:3], rtol=1e-3)
    np.testing.assert_allclose(result.conf_int(), expected.conf_int(), rtol=1e-3)
    if isinstance(expected.params, pd.Series):
        assert list(result.params.index) == list(expected.params.index)
        assert list(result.cov_params().columns) == list(expected.cov_params().columns)


def _r_case(ds: int):
    path = Path(sm_results.__file__).parent / f"lme{ds:02d}.csv"
    frame = pd.read_csv(path)
    fe = [c for c in frame.columns if c.startswith("exog_fe")]
    re = [c for c in frame.columns if c.startswith("exog_re")]
    return (frame["endog"].to_numpy(), frame[fe].to_numpy(), frame["groups"].to_numpy(),
            frame[re].to_numpy())


@pytest.mark.parametrize("ds, reml", [(2, True), (6, False)])
def test_array_results_slice_as_in_statsmodels_test_r(ds, reml):
    """statsmodels' ``test_r`` on lme4's numbers: ``cov_params()[0:k_fe, 0:k_fe]``."""
    endog, exog, groups, exog_re = _r_case(ds)
    name = f"{'reml' if reml else 'ml'}_drf_{ds}"
    result = dlmm.MixedLM(endog, exog, groups, exog_re).fit(reml=reml)
    k = exog.shape[1]
    np.testing.assert_almost_equal(result.cov_params()[0:k, 0:k],
                                   getattr(lme_r_results, f"vcov_{name}"), decimal=3)
    np.testing.assert_almost_equal(result.fe_params, getattr(lme_r_results, f"coef_{name}"),
                                   decimal=4)
    np.testing.assert_almost_equal(result.cov_re, getattr(lme_r_results, f"cov_re_{name}"),
                                   decimal=4)
    np.testing.assert_almost_equal(result.bse[0:k], np.sqrt(np.diag(
        getattr(lme_r_results, f"vcov_{name}"))), decimal=3)
    assert result.llf == pytest.approx(getattr(lme_r_results, f"loglike_{name}")[0], abs=1e-2)


def test_dask_arrays_give_ndarrays(data):
    y, x, g = data["y"].to_numpy(), data[["x1", "x2"]].to_numpy(), data["g"].to_numpy()
    plain = dlmm.MixedLM(y, x, g).fit()
    lazy = dlmm.MixedLM(da.from_array(y, chunks=25), da.from_array(x, chunks=25), g).fit()
    assert _types(lazy) == _types(plain)
    assert isinstance(lazy.params, np.ndarray)
    np.testing.assert_allclose(lazy.cov_params(), plain.cov_params(), rtol=1e-10)


def test_dask_frames_give_pandas(data, dask_client):
    result = dlmm.mixedlm("y ~ x1 + x2", dd.from_pandas(data, npartitions=2),
                          groups="g").fit(client=dask_client)
    expected = dlmm.mixedlm("y ~ x1 + x2", data, groups="g").fit()
    for name in ("params", "bse", "tvalues", "pvalues", "fe_params", "bse_re", "cov_re"):
        assert type(getattr(result, name)) is type(getattr(expected, name)), name
    pd.testing.assert_frame_equal(result.cov_params(), expected.cov_params(), rtol=1e-8)
    pd.testing.assert_frame_equal(result.conf_int(), expected.conf_int(), rtol=1e-8)


def test_saved_array_fit_reads_back_labelled(data, tmp_path):
    """A result folder has names whatever the input: an arrays fit saves and loads."""
    y, x, g = data["y"].to_numpy(), data[["x1", "x2"]].to_numpy(), data["g"].to_numpy()
    result = dlmm.MixedLM(y, x, g).fit()
    result.save(tmp_path / "fit")
    loaded = dlmm.load_result(tmp_path / "fit")
    assert isinstance(result.params, np.ndarray)  # the fit's own outputs stay arrays
    assert list(loaded.params.index) == result.param_names == ["x1", "x2", "Group Var"]
    np.testing.assert_array_equal(loaded.params.to_numpy(), result.params)
