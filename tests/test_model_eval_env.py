"""Formulas read names from the caller's code, as statsmodels' ``eval_env`` (issue 25 item 6).

Functions defined where the model is built are found (``y ~ double(x)``), compared
with statsmodels' fit of the same formula; the data's columns win over the
caller's names; ``eval_env`` takes statsmodels' values; on Dask workers a
function defined inside a function arrives by value.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

import dlmm

#: a module-level constant a formula may read
SHIFT = 3.0


def _frame() -> pd.DataFrame:
    rs = np.random.RandomState(6241)
    g = np.repeat(np.arange(20), 8)
    x = rs.normal(size=g.size)
    y = 1.0 + 0.5 * x + rs.normal(size=20)[g] + rs.normal(size=g.size)
    return pd.DataFrame({"y": y, "x": x, "g": g})


def test_a_function_of_the_calling_code_is_found_as_statsmodels_finds_it():
    frame = _frame()

    def double(v):
        return 2 * v

    want = sm.MixedLM.from_formula("y ~ double(x)", frame, groups="g").fit()
    for build in (dlmm.mixedlm, dlmm.MixedLM.from_formula):
        result = build("y ~ double(x)", frame, groups="g").fit()
        assert list(result.params.index) == list(want.params.index)
        np.testing.assert_allclose(result.params, want.params, rtol=1e-4)
        assert result.llf == pytest.approx(want.llf, rel=1e-8)
    model = dlmm.mixedlm("y ~ I(x * SHIFT)", frame, groups="g")  # a module's constant
    np.testing.assert_allclose(model.exog[:, 1], 3.0 * frame["x"])
    # in re_formula too: the likelihood of statsmodels' model with the column added
    sm_model = sm.MixedLM.from_formula("y ~ x", frame.assign(dx=2 * frame["x"]), groups="g",
                                       re_formula="1 + dx")
    sm_model.cov_pen = sm_model.fe_pen = None  # as its fit() sets them
    model = dlmm.mixedlm("y ~ x", frame, groups="g", re_formula="1 + double(x)")
    packed = np.array([0.8, 0.3, 0.5])  # the lower triangle of the square root
    assert model.loglike(packed) == pytest.approx(sm_model.loglike(packed), rel=1e-10)


def _build_here(frame, eval_env):
    def double(v):  # not the caller's: eval_env=1 looks past this frame
        return 100 * v

    return dlmm.mixedlm("y ~ double(x)", frame, groups="g", eval_env=eval_env)


def test_eval_env_takes_statsmodels_values():
    frame = _frame()

    def double(v):
        return 2 * v

    exog = 2 * frame[["x"]].to_numpy()
    assert np.allclose(_build_here(frame, 1).exog[:, 1:], exog)  # this function's double
    assert np.allclose(_build_here(frame, 0).exog[:, 1:], 50 * exog)  # the builder's own
    model = dlmm.mixedlm("y ~ double(x)", frame, groups="g", eval_env={"double": np.negative})
    assert np.allclose(model.exog[:, 1:], -frame[["x"]].to_numpy())
    with pytest.raises(dlmm.InputError, match="column 'double' used in formula"):
        dlmm.mixedlm("y ~ double(x)", frame, groups="g", eval_env=-1)
    with pytest.raises(dlmm.InputError, match="eval_env must be None, an int"):
        dlmm.mixedlm("y ~ x", frame, groups="g", eval_env="here")


def test_the_data_columns_win_and_are_not_kept_from_the_caller():
    frame = _frame()
    x = np.zeros(3)  # a caller's name that is also a column  # noqa: F841

    def double(v):
        return 2 * v

    model = dlmm.mixedlm("y ~ x + double(x)", frame.assign(double_x=0.0), groups="g",
                         drop_collinear=True)
    with pytest.warns(dlmm.CollinearityWarning, match="double"):
        result = model.fit()
    assert result.params.index[:2].tolist() == ["Intercept", "x"]
    assert set(model.spec.context) == {"double"}  # x came from the data


def test_a_local_function_reaches_dask_workers_by_value(dask_client):
    import dask.dataframe as dd

    frame = _frame()
    offset = 0.25

    def shifted(v):  # a closure: pickled by value, with what it refers to
        return v + offset

    sm_model = sm.MixedLM.from_formula("y ~ shifted(x)", frame, groups="g")
    sm_model.cov_pen = sm_model.fe_pen = None  # as its fit() sets them
    model = dlmm.mixedlm("y ~ shifted(x)", dd.from_pandas(frame, npartitions=2), groups="g",
                         client=dask_client)
    # the one pass ran shifted() on the workers
    assert model.loglike(np.array([0.7])) == pytest.approx(sm_model.loglike(np.array([0.7])),
                                                           rel=1e-10)
    assert model._stats.backend_name == "dask"
