"""The crossed engine behind ``dlmm.mixedlm``: choice, likelihood, Hessian, post-estimation.

Expected numbers come from statsmodels (its likelihood, score and Hessian of the
same model, one group with one variance component per factor, evaluated at the
points dlmm reports) or are counted by hand from the data; lme4's InstEval fits
are in ``test_crossed_insteval.py``.
"""

from __future__ import annotations

import functools
import re
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from statsmodels.regression.mixed_linear_model import MixedLMParams

import dlmm
from dlmm.exceptions import CollinearityWarning, ConvergenceWarning, InputError
from dlmm.structure import CrossedStatistics

from .crossed_data import FORMULA, VC, crossed_data


@functools.cache
def _data(n: int = 1500) -> pd.DataFrame:
    return crossed_data(n=n)


@functools.cache
def _fit(reml: bool = True, n: int = 1500):
    return dlmm.mixedlm(FORMULA, _data(n), vc_formula=VC).fit(reml=reml)


def _sm_model(data: pd.DataFrame, reml: bool, formula: str = FORMULA, vc: dict = VC):
    """statsmodels' model of the same design: one group (a constant label) and one
    variance component per factor; its REML/ML state set as ``fit`` sets it."""
    model = smf.mixedlm(formula, data, groups=np.zeros(len(data)), re_formula="0",
                        vc_formula=vc)
    model.reml, model.cov_pen, model.fe_pen, model._freepat = reml, None, None, None
    return model


def _sm_params(result) -> MixedLMParams:
    return MixedLMParams.from_components(fe_params=result.fe_params.to_numpy(),
                                         cov_re=np.zeros((0, 0)),
                                         vcomp=result.vcomp / result.scale)


# -- which engine -------------------------------------------------------------------


def test_statsmodels_crossed_spelling_takes_the_crossed_engine():
    model = dlmm.mixedlm(FORMULA, _data(), groups=None, re_formula="0", vc_formula=VC)
    model.prepare()
    assert isinstance(model._stats, CrossedStatistics)
    result = _fit()
    assert result.engine == "crossed" and result.backend == "local"
    assert result.n_groups == 1 and result.nobs == len(_data())
    assert result.converged


def test_constant_group_column_is_crossed_and_labels_the_group():
    data = _data().assign(one="all")
    result = dlmm.mixedlm(FORMULA, data, groups="one", re_formula="0", vc_formula=VC).fit()
    assert result.engine == "crossed"
    assert list(result.random_effects) == ["all"]
    ref = _fit()
    np.testing.assert_allclose(result.vcomp, ref.vcomp, rtol=1e-10)


def test_a_random_intercept_on_the_one_group_is_refused_not_crossed():
    """Not a crossed design, and not identified: one group's intercept is one draw."""
    model = dlmm.mixedlm(FORMULA, _data(300), groups=None, re_formula="1",
                         vc_formula={"site": "0 + C(site)"})
    with pytest.raises(InputError, match=r"groups=None\) has 1 level: .*re_formula='0'"):
        model.prepare()


# -- the likelihood against statsmodels --------------------------------------------


@pytest.mark.parametrize("reml", [True, False])
def test_llf_is_statsmodels_likelihood_at_the_estimates(reml):
    result = _fit(reml)
    sm_model = _sm_model(_data(), reml)
    assert result.llf == pytest.approx(sm_model.loglike(_sm_params(result), profile_fe=True),
                                       rel=1e-10)


@pytest.mark.parametrize("reml", [True, False])
def test_optimum_is_statsmodels_stationary_point(reml):
    """statsmodels' score of the profiled likelihood vanishes at dlmm's estimates."""
    result = _fit(reml)
    sm_model = _sm_model(_data(), reml)
    score = sm_model.score(_sm_params(result), profile_fe=True)
    assert np.max(np.abs(score)) < 1e-4


@pytest.mark.parametrize("use_sqrt", [True, False])
def test_score_is_the_derivative_of_loglike(use_sqrt):
    """The one gradient formula along the crossed kernels' theta directions, and its
    profile form, against central differences of ``loglike``."""
    model = dlmm.mixedlm(FORMULA, _data(), vc_formula=VC)
    model.use_sqrt = use_sqrt
    x = np.array([0.6, 0.35, 0.8])
    if not use_sqrt:
        x = x**2
    analytic = model.score(x)
    h = 1e-6
    fd = np.array([(model.loglike(x + h * e) - model.loglike(x - h * e)) / (2 * h)
                   for e in np.eye(3)])
    np.testing.assert_allclose(analytic, fd, rtol=1e-6, atol=1e-6)
    assert np.max(np.abs(analytic)) > 1.0  # away from the optimum: a real check


# -- the Hessian and standard errors against statsmodels ------------------------------


def _sm_hessian(data, reml, x):
    sm_model = _sm_model(data, reml)
    hess, singular = sm_model.hessian(MixedLMParams.from_components(
        fe_params=x[:3], cov_re=np.zeros((0, 0)), vcomp=x[3:]))
    assert not singular
    return hess


@pytest.mark.parametrize("reml", [True, False])
def test_hessian_and_cov_params_match_statsmodels(reml):
    data = _data(400)
    result = _fit(reml, 400)
    x = result.params.to_numpy()
    expected = _sm_hessian(data, reml, x)
    hess = np.asarray(result.hessian)
    size = np.max(np.abs(expected))
    np.testing.assert_allclose(hess, hess.T, rtol=0, atol=1e-12 * size)
    np.testing.assert_allclose(hess, expected, rtol=0, atol=1e-6 * size)
    np.testing.assert_allclose(result.cov_params().to_numpy(), np.linalg.inv(-expected),
                               rtol=1e-5)
    # The fixed-effects block is exact: -S_XX / scale at the GLS fixed effects.
    np.testing.assert_allclose(hess[:3, :3], expected[:3, :3], rtol=1e-10)


def test_hessian_away_from_the_optimum_matches_statsmodels_gradient():
    """Away from the optimum, where terms multiplying the gradient do not vanish:
    central differences of statsmodels' analytic gradient of L(beta, vcomp / scale)
    (statsmodels' own ``hessian`` is exact only at its optimum)."""
    data = _data(400)
    result = _fit(True, 400)
    x = result.params.to_numpy().copy()
    x[:3] += [0.2, -0.1, 0.15]
    x[3:] *= [1.5, 0.6, 1.3]
    sm_model = _sm_model(data, True)

    def grad(z):
        return np.concatenate(sm_model.score_full(MixedLMParams.from_components(
            fe_params=z[:3], cov_re=np.zeros((0, 0)), vcomp=z[3:]), calc_fe=True))

    assert np.max(np.abs(grad(x))) > 1.0  # really away from the optimum
    fd = np.zeros((6, 6))
    for j in range(6):
        e = np.zeros(6)
        e[j] = 1e-5 * max(1.0, abs(x[j]))
        fd[:, j] = (grad(x + e) - grad(x - e)) / (2 * e[j])
    np.testing.assert_allclose(result.model.hessian(x)[0], fd, rtol=0,
                               atol=1e-6 * np.max(np.abs(fd)))


# -- random effects and predictions ------------------------------------------------


def test_random_effects_in_statsmodels_format():
    result = _fit()
    data = _data()
    effects = result.random_effects
    assert list(effects) == [0]
    series = effects[0]
    users = sorted(data["user"].unique())
    items = sorted(data["item"].unique())
    names = ([f"item[C(item)[{i}]]" for i in items] + ["site[C(site)[s1]]", "site[C(site)[s2]]",
             "site[C(site)[s3]]", "site[C(site)[s4]]"] + [f"user[C(user)[{u}]]" for u in users])
    assert list(series.index) == names
    table = result.vc_effects_table()
    assert list(table.columns) == ["Group", "component", "column", "effect", "variance"]
    assert len(table) == len(names)
    np.testing.assert_array_equal(table["effect"].to_numpy(), series.to_numpy())
    # Conditional variances are below the prior variances, and more data shrink them.
    prior = dict(zip(result.vc_names, result.vcomp))
    assert np.all(table["variance"] < table["component"].map(prior))
    user_rows = table[table["component"] == "user"]
    counts = data["user"].value_counts().reindex(users).to_numpy()
    assert user_rows["variance"].iloc[np.argmax(counts)] < user_rows["variance"].iloc[
        np.argmin(counts)]
    assert result.random_effects_table().shape == (1, 0)
    with pytest.raises(InputError, match="conditional variance"):
        _ = result.random_effects_cov


def test_random_effects_solve_the_mixed_model_equations():
    """The modes are (Z'Z + scale D^-1)^-1 Z'(y - X beta) with D the prior variances:
    Henderson's equations solved densely from the data."""
    result = _fit()
    data = _data()
    z = pd.get_dummies(data[["item", "site", "user"]].astype(str), dtype=float)
    x = np.column_stack([np.ones(len(data)), (data["k"] == "b").to_numpy(float),
                         data["x1"].to_numpy()])
    resid = data["y"].to_numpy() - x @ result.fe_params[["Intercept", "C(k)[T.b]", "x1"]]
    prior = np.repeat(result.vcomp, [data[c].nunique() for c in ["item", "site", "user"]])
    zz = z.to_numpy()
    modes = np.linalg.solve(zz.T @ zz + np.diag(result.scale / prior), zz.T @ resid)
    np.testing.assert_allclose(result.random_effects[0].to_numpy(), modes, rtol=1e-8,
                               atol=1e-10)


def test_fitted_values_and_predictions_with_unseen_levels():
    result = _fit()
    data = _data()
    fe = result.fe_params
    effects = result.random_effects[0]

    def expected(frame):
        fixed = fe["Intercept"] + fe["x1"] * frame["x1"] + fe["C(k)[T.b]"] * (frame["k"] == "b")
        rand = sum(frame[c].map(lambda v, c=c: effects.get(f"{c}[C({c})[{v}]]", 0.0))
                   for c in ["item", "site", "user"])
        return (fixed + rand).to_numpy()

    np.testing.assert_allclose(result.fittedvalues.to_numpy(), expected(data), rtol=1e-12)
    resid = data["y"].to_numpy() - expected(data)
    np.testing.assert_allclose(result.resid.to_numpy(), resid, rtol=1e-10, atol=1e-12)
    new = data.head(6).drop(columns="y").copy()
    new.loc[new.index[0], "user"] = "never"  # an unseen user: no user effect
    new.loc[new.index[1], "item"] = 9999  # an unseen item
    new.loc[new.index[2], ["user", "site"]] = ["nobody", "s9"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = result.predict(new, random_effects=True)
    np.testing.assert_allclose(pred.to_numpy(), expected(new), rtol=1e-12)
    assert pred.notna().all()


def test_unseen_level_of_a_fixed_effect_is_still_refused():
    result = _fit()
    new = _data().head(2).drop(columns="y").assign(k=["a", "zz"])
    with pytest.raises(InputError, match="level 'zz'"):
        result.predict(new, random_effects=True)


def test_summary_save_and_load(tmp_path):
    result = _fit()
    text = str(result.summary())
    assert "user Var" in text and re.search(r"No. Groups:\s+1\s", text)
    result.save(tmp_path / "fit")
    loaded = dlmm.load_result(tmp_path / "fit")
    assert loaded.engine == "crossed"
    np.testing.assert_array_equal(loaded.params.to_numpy(), result.params.to_numpy())
    np.testing.assert_array_equal(loaded.bse.to_numpy(), result.bse.to_numpy())
    pd.testing.assert_series_equal(loaded.random_effects[0], result.random_effects[0],
                                   check_names=False)
    new = _data().tail(5).drop(columns="y")
    np.testing.assert_allclose(loaded.predict(new, random_effects=True).to_numpy(),
                               result.predict(new, random_effects=True).to_numpy(),
                               rtol=1e-14)


# -- the fit's facts ----------------------------------------------------------------


def test_not_converged_is_reported():
    model = dlmm.mixedlm(FORMULA, _data(), vc_formula=VC)
    with pytest.warns(ConvergenceWarning), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a Hessian far from the optimum
        result = model.fit(method="lbfgs", maxiter=1, newton_steps=0)
    assert result.converged is False
    assert result.mle_retvals["converged"] is False


def test_newton_uses_differences_of_the_gradient():
    """Trust-region Newton on request: the Hessian from differences of the analytic
    gradient; the same optimum."""
    result = dlmm.mixedlm(FORMULA, _data(), vc_formula=VC).fit(method="newton")
    assert result.mle_retvals["methods"][0]["method"] == "trust-exact"
    assert result.converged
    np.testing.assert_allclose(result.vcomp, _fit().vcomp, rtol=1e-7)


def test_missing_rows_dropped():
    data = _data().copy()
    data.loc[[3, 50, 51], "user"] = None
    data.loc[[7], "x1"] = np.nan
    with pytest.warns(dlmm.MissingDataWarning):
        result = dlmm.mixedlm(FORMULA, data, vc_formula=VC, missing="drop").fit()
    assert result.engine == "crossed" and result.nobs == len(data) - 4
    kept = data.drop(index=[3, 7, 50, 51])
    expected = dlmm.mixedlm(FORMULA, kept.reset_index(drop=True), vc_formula=VC).fit()
    np.testing.assert_allclose(result.vcomp, expected.vcomp, rtol=1e-8)


def test_collinear_fixed_effect_dropped():
    data = _data().assign(x2=lambda d: 2.0 * d["x1"])
    with pytest.warns(CollinearityWarning):
        result = dlmm.mixedlm(FORMULA + " + x2", data, vc_formula=VC,
                              drop_collinear=True).fit()
    ref = _fit()
    assert list(result.fe_params.index) == list(ref.fe_params.index)
    np.testing.assert_allclose(result.fe_params.to_numpy(), ref.fe_params.to_numpy(),
                               rtol=1e-8)
    np.testing.assert_allclose(result.vcomp, ref.vcomp, rtol=1e-7)


def test_boundary_fit_hessian_matches_statsmodels_gradient():
    """A factor without effect (its variance estimated as 0): a singular fit, with the
    Hessian near the boundary extrapolated from differences of the gradient; against
    central differences of statsmodels' analytic gradient (statsmodels' ``hessian``
    itself drops the zero variance's rows there)."""
    data = crossed_data(n=400, seed=0)
    data["noise"] = np.random.default_rng(0).choice(list("abcde"), size=len(data))
    vc = dict(VC, noise="0 + C(noise)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # not negative definite: a boundary
        result = dlmm.mixedlm(FORMULA, data, vc_formula=vc).fit()
    assert result.converged and result.singular
    assert result.vcomp[result.vc_names.index("noise")] < 1e-12
    sm_model = _sm_model(data, True, vc=vc)

    def grad(z):
        return np.concatenate(sm_model.score_full(MixedLMParams.from_components(
            fe_params=z[:3], cov_re=np.zeros((0, 0)), vcomp=z[3:]), calc_fe=True))

    x = result.params.to_numpy()
    fd = np.zeros((x.size, x.size))
    for j in range(x.size):  # V stays positive definite a step below a zero variance
        e = np.zeros(x.size)
        e[j] = 1e-6 * max(1.0, abs(x[j]))
        fd[:, j] = (grad(x + e) - grad(x - e)) / (2 * e[j])
    np.testing.assert_allclose(result.hessian, fd, rtol=0, atol=1e-5 * np.max(np.abs(fd)))


def test_too_large_dense_part_is_refused_before_the_pass(monkeypatch):
    """The factors after the largest form a dense block the driver must hold: beyond
    the limit the fit is refused with the sizes, before any data is read."""
    import dlmm.structure.crossed as crossed

    monkeypatch.setattr(crossed, "MAX_DENSE_EFFECTS", 18)  # item 15 + site 4 = 19 > 18
    calls = []
    monkeypatch.setattr(crossed, "chunk_sums", lambda *a: calls.append(a))
    sizes = r"'item' \(15 levels\), 'site' \(4 levels\)\) as a dense 19 x 19"
    with pytest.raises(InputError, match=sizes):
        dlmm.mixedlm(FORMULA, _data(), vc_formula=VC).fit()
    assert calls == []


def test_too_many_level_pairs_are_refused_before_the_system_is_built(monkeypatch):
    """The Schur operator grows with the square of the levels seen with each level of
    the largest factor: beyond the driver's limit the fit is refused with the sizes,
    after the pass and before anything of that size is allocated."""
    import dlmm.structure.crossed as crossed

    monkeypatch.setattr(crossed, "MAX_DRIVER_BYTES", 5000.0)  # the 19 x 19 dense part fits
    built = []
    monkeypatch.setattr(crossed, "build_system", lambda *a: built.append(a))
    with pytest.raises(InputError, match=r"would need about .* GB on the driver, more than "
                                         r"its limit of 0\.0 GB: [\d,]+ pairs of level pairs"
                                         r" sharing a level of 'user'"):
        dlmm.mixedlm(FORMULA, _data(), vc_formula=VC).fit()
    assert built == []


def test_the_ml32m_shape_is_accepted_and_a_dense_part_over_the_limit_is_refused():
    """MovieLens-32M restricted to movies with 50 ratings or more (200,000 users x 16,000
    movies, 18.6 million user-movie pairs, 4.7e9 pairs of them sharing a user) fits the
    8 GB driver: its dense part is held once (2.0 GB) beside ~200 bytes per user-movie
    pair. A dense part whose 8 Q2^2 bytes alone pass the limit is refused with its sizes
    before the pass."""
    from dlmm.spec.crossed import CrossedLayout
    from dlmm.structure.crossed import MAX_DRIVER_BYTES, check_size, driver_bytes

    ml = CrossedLayout(factors=("movie", "user"), n_levels=(16_000, 200_000),
                       slot_offsets=(0, 16_000))
    check_size(ml)  # no refusal
    need = driver_bytes(16_000, 4_700_000_000, 18_600_000)
    assert 5.5e9 < need < MAX_DRIVER_BYTES, need
    big = CrossedLayout(factors=("movie", "user"), n_levels=(32_000, 200_000),
                        slot_offsets=(0, 32_000))
    with pytest.raises(InputError, match=r"'movie' \(32000 levels\)\) as a dense 32000 x "
                                         r"32000 matrix \(the driver would need 8\.2 GB for "
                                         r"it, its limit is 8 GB\)"):
        check_size(big)
