"""statsmodels' documented MixedLM examples, run twice: with statsmodels and with dlmm.

Each example is one function of the API module it is given — statsmodels'
(``statsmodels.formula.api`` / ``statsmodels.api``) or ``dlmm`` itself, as a user
who writes ``import dlmm as smf`` — so the code under test is the same line of
statsmodels code both times. The outputs are compared: the estimates, llf,
bse, ``predict()`` (an ndarray, the fixed part), ``predict(new_df)``,
``t_test`` (effect, sd, tvalue, pvalue, conf_int) and ``summary().tables``.

The data ship inside the statsmodels package (its regression tests'
``dietox.csv`` and ``pastes.csv``; nothing is downloaded). Where statsmodels
stops short of the optimum, dlmm's llf is higher: the tests then check on
statsmodels' own likelihood that dlmm's estimate is the better one, and compare
with statsmodels restarted there.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm_api
import statsmodels.formula.api as sm_formula
import statsmodels.regression.tests.results as sm_results
from statsmodels.regression.mixed_linear_model import MixedLMParams, VCSpec
from statsmodels.tools.sm_exceptions import ConvergenceWarning

import dlmm

DATA = Path(sm_results.__file__).parent
LLF_RTOL = 1e-7
PARAM_RTOL = 1e-4
BSE_RTOL = 1e-3


@functools.cache
def dietox() -> pd.DataFrame:
    return pd.read_csv(DATA / "dietox.csv", index_col=0)


@functools.cache
def pastes() -> pd.DataFrame:
    return pd.read_csv(DATA / "pastes.csv", index_col=0)


# -- the examples: one function of the API, called with statsmodels' and with dlmm -----


def dietox_intercept(smf):
    """statsmodels' docs: ``mixedlm("Weight ~ Time", data, groups=data["Pig"])``."""
    data = dietox()
    md = smf.mixedlm("Weight ~ Time", data, groups=data["Pig"])
    return md, md.fit()


def dietox_slope(smf):
    """statsmodels' docs: random intercept and slope, ``fit(method=["lbfgs"])``."""
    data = dietox()
    md = smf.mixedlm("Weight ~ Time", data, groups=data["Pig"], re_formula="~Time")
    return md, md.fit(method=["lbfgs"])


def dietox_independent(smf):
    """statsmodels' docs: independent random effects through ``free``."""
    data = dietox()
    md = smf.mixedlm("Weight ~ Time", data, groups=data["Pig"], re_formula="~Time")
    free = MixedLMParams.from_components(np.ones(2), np.eye(2))
    return md, md.fit(free=free, method=["lbfgs"])


def sitka_like_arrays(sm):
    """The arrays API, ``MixedLM(endog, exog, groups, exog_re)`` (statsmodels' Sitka
    example, on the bundled dietox data: a per-pig intercept and slope)."""
    data = dietox()
    endog = data["Weight"].to_numpy()
    exog = np.column_stack([np.ones(len(data)), data["Time"].to_numpy()])
    md = sm.MixedLM(endog, exog, data["Pig"].to_numpy(), exog_re=exog.copy())
    return md, md.fit(method=["lbfgs"])


def pastes_vc_formula(smf):
    """The variance-components notebook: casks nested in batches, ``vc_formula``."""
    data = pastes()
    md = smf.mixedlm("strength ~ 1", data, groups="batch", re_formula="1",
                     vc_formula={"cask": "0 + C(cask)"})
    return md, md.fit()


def pastes_vcspec(sm):
    """The same model through the arrays API and statsmodels' ``VCSpec``."""
    data = pastes()
    labels = sorted(data["batch"].unique())
    casks = sorted(data["cask"].unique())
    mats, colnames = [], []
    for label in labels:
        rows = data.loc[data["batch"] == label, "cask"]
        mats.append((rows.to_numpy()[:, None] == np.array(casks)[None, :]).astype(float))
        colnames.append([f"cask[{c}]" for c in casks])
    ones = np.ones((len(data), 1))
    md = sm.MixedLM(data["strength"].to_numpy(), ones, data["batch"].to_numpy(),
                    exog_re=ones, exog_vc=VCSpec(["cask"], [colnames], [mats]))
    return md, md.fit()


def _quiet(func, api):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return func(api)


@functools.cache
def both(name: str):
    """(statsmodels model, result), (dlmm model, result) of one example."""
    func = globals()[name]
    sm_side = sm_formula if name != "sitka_like_arrays" and name != "pastes_vcspec" \
        else sm_api
    return _quiet(func, sm_side), _quiet(func, dlmm)


EXAMPLES = ["dietox_intercept", "dietox_slope", "dietox_independent", "sitka_like_arrays",
            "pastes_vc_formula", "pastes_vcspec"]


def _sm_params(result) -> MixedLMParams:
    """dlmm's estimate as statsmodels' own parameter object."""
    po = result.params_object
    return MixedLMParams.from_components(po.fe_params, cov_re=po.cov_re, vcomp=po.vcomp)


@functools.cache
def _reference(name: str):
    """statsmodels' fit to compare the estimates with: statsmodels restarted, with a
    tight gradient tolerance (BFGS, ``gtol=1e-8``), from the better of its own and
    dlmm's estimates; its documented fit stops where the likelihood is flat enough
    for its default tolerance, up to 5e-4 away in the covariance parameters."""
    (sm_model, sm_res), (_, res) = both(name)
    tol = LLF_RTOL * abs(sm_res.llf)
    assert res.converged
    assert res.llf >= sm_res.llf - tol, f"dlmm llf {res.llf} below statsmodels' {sm_res.llf}"
    # The two likelihoods are one function: statsmodels' at dlmm's estimate is dlmm's llf.
    assert sm_model.loglike(_sm_params(res)) == pytest.approx(res.llf, rel=1e-9)
    start = _sm_params(res) if res.llf > sm_res.llf else sm_res.params_object
    kwargs = {"free": MixedLMParams.from_components(np.ones(2), np.eye(2))} \
        if name == "dietox_independent" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        polished = sm_model.fit(start_params=start, method=["bfgs"], gtol=1e-8, **kwargs)
    assert polished.llf >= sm_res.llf - tol
    assert res.llf == pytest.approx(polished.llf, rel=LLF_RTOL)
    return sm_model, polished


# -- the comparisons ---------------------------------------------------------------------


@pytest.mark.parametrize("name", EXAMPLES)
def test_estimates_llf_and_bse_agree(name):
    sm_model, sm_res = _reference(name)
    _, (model, res) = both(name)
    assert res.llf == pytest.approx(sm_res.llf, rel=LLF_RTOL)
    np.testing.assert_allclose(np.asarray(res.params), np.asarray(sm_res.params),
                               rtol=PARAM_RTOL, atol=1e-6, err_msg="params")
    np.testing.assert_allclose(np.asarray(res.fe_params), np.asarray(sm_res.fe_params),
                               rtol=PARAM_RTOL, err_msg="fe_params")
    assert res.scale == pytest.approx(sm_res.scale, rel=PARAM_RTOL)
    np.testing.assert_allclose(res.vcomp, np.asarray(sm_res.vcomp), rtol=PARAM_RTOL)
    np.testing.assert_allclose(np.asarray(res.cov_re_unscaled),
                               np.asarray(sm_res.cov_re_unscaled), rtol=PARAM_RTOL,
                               atol=1e-9)
    free = np.asarray(sm_res.bse) > 0  # free=: statsmodels' fixed entries have bse 0
    np.testing.assert_allclose(np.asarray(res.bse)[free], np.asarray(sm_res.bse)[free],
                               rtol=BSE_RTOL, err_msg="bse")
    if isinstance(sm_res.params, pd.Series):
        assert list(res.params.index) == list(sm_res.params.index)
    assert res.df_resid == sm_res.df_resid
    np.testing.assert_allclose(np.asarray(res.normalized_cov_params)[: res.k_fe, : res.k_fe],
                               np.asarray(sm_res.normalized_cov_params)[: res.k_fe,
                                                                        : res.k_fe],
                               rtol=BSE_RTOL * 2)
    assert res.use_sqrt is sm_res.use_sqrt is True
    # statsmodels' own names work on dlmm's model.
    assert model.loglike(res.params_object) == pytest.approx(res.llf, rel=1e-12)


@pytest.mark.parametrize("name", EXAMPLES)
def test_predict_is_the_fixed_part_as_statsmodels(name):
    _, sm_res = _reference(name)
    _, (model, res) = both(name)
    sm_pred, pred = sm_res.predict(), res.predict()
    assert isinstance(pred, np.ndarray) and isinstance(sm_pred, np.ndarray)
    np.testing.assert_allclose(pred, sm_pred, rtol=PARAM_RTOL)
    np.testing.assert_allclose(model.predict(res.params), sm_pred, rtol=PARAM_RTOL)
    np.testing.assert_allclose(model.exog @ np.asarray(res.fe_params), sm_pred,
                               rtol=PARAM_RTOL)


@pytest.mark.parametrize("name", ["dietox_slope", "pastes_vc_formula", "pastes_vcspec"])
def test_random_effects_as_statsmodels(name):
    _, sm_res = _reference(name)
    _, (_, res) = both(name)
    assert sorted(res.random_effects) == sorted(sm_res.random_effects)
    for label, expected in sm_res.random_effects.items():
        got = res.random_effects[label]
        assert list(got.index) == list(expected.index)
        np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), rtol=1e-4,
                                   atol=1e-6 * np.abs(expected.to_numpy()).max())


@pytest.mark.parametrize("name", ["dietox_intercept", "dietox_slope", "pastes_vc_formula"])
def test_predict_new_frame(name):
    _, sm_res = _reference(name)
    _, (_, res) = both(name)
    new = (dietox() if name.startswith("dietox") else pastes()).iloc[::7].copy()
    sm_pred, pred = sm_res.predict(new), res.predict(new)
    assert isinstance(pred, pd.Series)
    np.testing.assert_allclose(pred.to_numpy(), np.asarray(sm_pred), rtol=PARAM_RTOL)
    assert list(pred.index) == list(new.index)


def test_group_series_then_conditional_predictions():
    """``groups=data["Pig"]``: new data find the labels in their column "Pig"; the
    conditional prediction is the fixed part plus statsmodels' predicted effects."""
    (_, sm_res), (_, res) = both("dietox_intercept")
    new = dietox().iloc[[0, 100, 500]]
    got = res.predict(new, random_effects=True).to_numpy()
    fixed = np.asarray(sm_res.predict(new))
    effect = np.array([sm_res.random_effects[p].iloc[0] for p in new["Pig"]])
    np.testing.assert_allclose(got, fixed + effect, rtol=1e-5)
    with pytest.raises(dlmm.InputError, match="'Pig'"):
        res.predict(new.rename(columns={"Pig": "pig"}), random_effects=True)


@pytest.mark.parametrize("name", ["dietox_intercept", "dietox_slope", "sitka_like_arrays"])
def test_t_test_numbers(name):
    _, sm_res = _reference(name)
    _, (_, res) = both(name)
    r = np.array([[0.0, 1.0], [1.0, -2.0]])
    expected, got = sm_res.t_test(r), res.t_test(r)
    for attr in ("effect", "sd", "tvalue", "pvalue"):
        np.testing.assert_allclose(np.ravel(getattr(got, attr)),
                                   np.ravel(getattr(expected, attr)), rtol=BSE_RTOL,
                                   atol=1e-300, err_msg=attr)
    np.testing.assert_allclose(got.conf_int(), expected.conf_int(), rtol=BSE_RTOL)
    assert "Test for Constraints" in got.summary()
    # f_test and wald_test (chi2, statsmodels' default for MixedLM) of the same rows;
    # statsmodels takes these over all of params only (dlmm either way).
    full = np.zeros((2, len(sm_res.params)))
    full[:, :2] = r
    f_sm, f = sm_res.f_test(full), res.f_test(r)
    assert f.fvalue == pytest.approx(float(np.squeeze(f_sm.fvalue)), rel=2 * BSE_RTOL)
    assert (f.df_num, f.df_denom) == (f_sm.df_num, f_sm.df_denom)
    w_sm, w = sm_res.wald_test(full, scalar=True), res.wald_test(full)
    assert w.statistic == pytest.approx(w_sm.statistic, rel=2 * BSE_RTOL)
    assert w.pvalue == pytest.approx(float(w_sm.pvalue), rel=1e-2, abs=1e-300)


def test_wald_test_terms_and_pairwise():
    data = dietox()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sm_res = sm_formula.mixedlm("Weight ~ Time + C(Cu)", data, groups=data["Pig"]).fit()
    res = dlmm.mixedlm("Weight ~ Time + C(Cu)", data, groups=data["Pig"]).fit()
    assert res.llf == pytest.approx(sm_res.llf, rel=LLF_RTOL)
    expected = sm_res.wald_test_terms(scalar=True).table
    got = res.wald_test_terms().table
    assert list(got.index) == list(expected.index)
    np.testing.assert_allclose(got["statistic"], expected["statistic"], rtol=BSE_RTOL)
    np.testing.assert_array_equal(got["df_constraint"], expected["df_constraint"])
    # statsmodels' t_test_pairwise fails on MixedLM; its pieces: t_test of the pairwise
    # contrasts and the Holm-Sidak correction of statsmodels.stats.multitest.
    from statsmodels.stats.multitest import multipletests

    pairs = res.t_test_pairwise("C(Cu)")
    assert list(pairs.result_frame.index) == ["2-1", "3-1", "3-2"]
    contrasts = np.array([[0, 1, 0, 0], [0, 0, 1, 0], [0, -1, 1, 0]], dtype=float)
    tt = sm_res.t_test(contrasts)
    np.testing.assert_allclose(pairs.result_frame["coef"], np.ravel(tt.effect), rtol=1e-4)
    np.testing.assert_allclose(pairs.result_frame["P>|z|"], np.ravel(tt.pvalue), rtol=1e-3)
    adjusted = multipletests(np.ravel(tt.pvalue), method="hs")[1]
    np.testing.assert_allclose(pairs.result_frame["pvalue-hs"], adjusted, rtol=1e-3)


@pytest.mark.parametrize("name", ["dietox_intercept", "pastes_vc_formula"])
def test_summary_tables(name):
    _, sm_res = _reference(name)
    _, (_, res) = both(name)
    expected, got = sm_res.summary().tables, res.summary().tables
    assert len(got) == len(expected) == 2
    assert list(got[1].index) == list(expected[1].index)
    assert list(got[1].columns) == list(expected[1].columns)
    as_float = np.vectorize(lambda v: float(v) if v.strip() else np.nan)
    np.testing.assert_allclose(as_float(got[1].to_numpy()), as_float(expected[1].to_numpy()),
                               atol=2e-3, rtol=1e-3)
    assert list(got[0][0]) == list(expected[0][0])
    assert list(got[0][2][: len(expected[0])]) == list(expected[0][2])
    assert "\\begin{tabular}" in res.summary().as_latex()
    assert "<table" in res.summary().as_html()
    pd.testing.assert_frame_equal(res.cov_re_unscaled, sm_res.cov_re_unscaled, rtol=1e-3)


def test_statsmodels_warning_filters_catch_dlmm():
    assert issubclass(dlmm.ConvergenceWarning, ConvergenceWarning)
    data = dietox()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        with pytest.raises(ConvergenceWarning, match="did not converge"):
            dlmm.mixedlm("Weight ~ Time", data, groups="Pig").fit(
                method="cg", maxiter=1, newton_steps=0)


def test_covariance_penalty_as_statsmodels():
    """``fit(cov_pen=PSD(w))``: the penalized llf (as statsmodels reports it) and its
    optimum."""
    from statsmodels.base._penalties import PSD

    data = dietox()
    sm_model = sm_formula.mixedlm("Weight ~ Time", data, groups=data["Pig"],
                                  re_formula="~Time")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sm_res = sm_model.fit(cov_pen=PSD(5.0), method=["lbfgs"])
    res = dlmm.mixedlm("Weight ~ Time", data, groups=data["Pig"],
                       re_formula="~Time").fit(cov_pen=PSD(5.0))
    assert res.converged
    assert res.llf >= sm_res.llf - LLF_RTOL * abs(sm_res.llf)
    assert res.llf == pytest.approx(sm_res.llf, rel=1e-6)
    np.testing.assert_allclose(res.params.to_numpy(), np.asarray(sm_res.params),
                               rtol=1e-3)
    unpenalized = dlmm.mixedlm("Weight ~ Time", data, groups=data["Pig"],
                               re_formula="~Time").fit()
    assert unpenalized.llf > res.llf + 1  # the penalty is applied, not ignored


def test_fit_regularized_l1_as_statsmodels():
    """statsmodels' ``fit_regularized`` (L1, coordinate descent on the fixed effects,
    the covariance held at its unpenalized estimate), arrays API: statsmodels' own
    fails on formula models (it indexes a named Series by position)."""
    data = dietox().dropna()
    exog = np.column_stack([np.ones(len(data)), data["Time"], data["Feed"] / 10])
    args = (data["Weight"].to_numpy(), exog, data["Pig"].to_numpy())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        expected = sm_api.MixedLM(*args).fit_regularized(alpha=300.0)
    got = dlmm.MixedLM(*args).fit_regularized(alpha=300.0)
    np.testing.assert_allclose(got.fe_params, expected.fe_params, rtol=1e-4, atol=1e-8)
    assert got.fe_params[0] == 0.0  # the penalty zeroes the intercept at this alpha
    assert got.scale == pytest.approx(expected.scale, rel=1e-4)
    np.testing.assert_allclose(got.params[3:], expected.params[3:], rtol=1e-3)
    np.testing.assert_allclose(got.cov_re, expected.cov_re, rtol=1e-3)


def test_refused_in_words():
    data = dietox()
    model = dlmm.mixedlm("Weight ~ Time", data, groups=data["Pig"])
    from statsmodels.base._penalties import L2

    with pytest.raises(dlmm.InputError, match="fit_regularized"):
        model.fit(fe_pen=L2())
    with pytest.raises(dlmm.InputError, match="method='l1'"):
        model.fit_regularized(method=L2(), alpha=1.0)
    with pytest.raises(AttributeError, match="use bse"):
        _ = both("dietox_intercept")[1][1].bsejac
