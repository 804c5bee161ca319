"""statsmodels' model names on ``dlmm.MixedLM`` (``dlmm/model_compat.py``), against
statsmodels' own on the same model, and refused in words for distributed data."""

from __future__ import annotations

import warnings

import dask.dataframe as dd
import numpy as np
import pytest
import statsmodels.formula.api as smf
from statsmodels.regression.mixed_linear_model import MixedLMParams
from statsmodels.tools.sm_exceptions import ConvergenceWarning

import dlmm
from tests.simulate import grouped_data

R2 = np.array([[1.0, 0.3], [0.3, 0.5]])


@pytest.fixture(scope="module")
def pair():
    data = grouped_data(n_groups=30, per_group=(4, 9), re_cov=R2, seed=21)
    sm_model = smf.mixedlm("y ~ x1 + x2", data, groups="g", re_formula="~x1")
    model = dlmm.mixedlm("y ~ x1 + x2", data, groups="g", re_formula="~x1")
    return data, _unfitted_ready(sm_model), model


def _unfitted_ready(sm_model):
    """statsmodels' score functions read attributes its fit() sets: set them as fit does
    without penalties or a free pattern."""
    sm_model.cov_pen = sm_model.fe_pen = sm_model._freepat = None
    return sm_model


def test_row_arrays_are_statsmodels(pair):
    _, sm_model, model = pair
    order = np.argsort(sm_model.groups, kind="stable")  # statsmodels' rows as given
    np.testing.assert_array_equal(model.endog, sm_model.endog)
    np.testing.assert_array_equal(model.exog, sm_model.exog)
    np.testing.assert_array_equal(model.exog_re, sm_model.exog_re)
    np.testing.assert_array_equal(model.groups[order], np.asarray(sm_model.groups)[order])
    assert model.group_labels == list(sm_model.group_labels)
    assert model.formula == sm_model.formula == "y ~ x1 + x2"
    fe = np.array([0.5, 1.0, -1.0])
    np.testing.assert_allclose(model.predict(fe), sm_model.predict(fe), rtol=1e-12)


def test_likelihood_pieces_are_statsmodels(pair):
    _, sm_model, model = pair
    cov_re = np.array([[0.8, 0.1], [0.1, 0.4]])
    vcomp = np.zeros(0)
    fe, sing = model.get_fe_params(cov_re, vcomp)
    sm_fe, sm_sing = sm_model.get_fe_params(cov_re, vcomp)
    np.testing.assert_allclose(fe, sm_fe, rtol=1e-9)
    assert sing is sm_sing is False
    params = MixedLMParams.from_components(sm_fe, cov_re=cov_re, vcomp=vcomp)
    got, expected = model.score_full(params, True), sm_model.score_full(params, True)
    np.testing.assert_allclose(got[1], expected[1], rtol=1e-7)
    np.testing.assert_allclose(expected[0], 0, atol=1e-8)  # at the GLS fixed effects
    hess, sing = model.hessian(params)
    sm_hess, sm_sing = sm_model.hessian(params)
    np.testing.assert_allclose(hess, sm_hess, rtol=1e-7, atol=1e-9 * np.abs(sm_hess).max())
    assert sing is bool(sm_sing) is False
    # statsmodels' own parameter object in dlmm's loglike, and in fit(start_params=).
    assert model.loglike(params) == pytest.approx(sm_model.loglike(params), rel=1e-10)
    start = model.fit(start_params=params)  # statsmodels' object as start values
    assert start.llf == pytest.approx(model.fit().llf, rel=1e-10)
    off = MixedLMParams.from_components(sm_fe + 1.0, cov_re=cov_re, vcomp=vcomp)
    with pytest.raises(dlmm.InputError, match="GLS fixed effects"):
        model.score_full(off, True)


def test_use_sqrt_false_scores_in_the_profile_parameterization(pair):
    data, _, _ = pair
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sm_model = _unfitted_ready(smf.mixedlm("y ~ x1 + x2", data, groups="g",
                                               re_formula="~x1", use_sqrt=False))
    model = dlmm.mixedlm("y ~ x1 + x2", data, groups="g", re_formula="~x1", use_sqrt=False)
    packed = np.array([0.8, 0.1, 0.4])
    np.testing.assert_allclose(model.score(packed), sm_model.score(packed), rtol=1e-7)
    assert model.fit().use_sqrt is False


def test_remove_data_and_arrays_predict(pair):
    data, _, model = pair
    result = model.fit()
    new = data.head(5)
    before = result.predict(new).to_numpy()
    x = model.exog[:5]
    np.testing.assert_allclose(result.predict(x), before, rtol=1e-12)
    result.remove_data()
    with pytest.raises(dlmm.InputError, match="fitted data"):
        _ = result.fittedvalues
    np.testing.assert_array_equal(result.predict(new).to_numpy(), before)
    with pytest.raises(dlmm.InputError, match="3 fixed effects"):
        result.predict(np.ones((2, 2)))


def test_rows_of_distributed_data_are_refused_in_words(pair, dask_client):
    data, _, _ = pair
    ddf = dd.from_pandas(data, npartitions=2, sort=False)
    model = dlmm.mixedlm("y ~ x1 + x2", ddf, groups="g", client=dask_client)
    result = model.fit()
    with pytest.raises(dlmm.InputError, match="would bring all .* rows to the driver"):
        _ = model.endog
    lazy = result.predict()  # the fixed part, lazy: the rows stay on the workers
    assert hasattr(lazy, "npartitions")
    local = dlmm.mixedlm("y ~ x1 + x2", data, groups="g").fit()
    np.testing.assert_allclose(np.sort(dask_client.compute(lazy).result().to_numpy()),
                               np.sort(local.predict()), rtol=1e-8)
