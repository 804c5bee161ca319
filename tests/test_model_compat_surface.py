"""statsmodels' model surface that issue 25 found missing, checked against statsmodels.

Each test runs the same call on statsmodels' ``MixedLM`` and on dlmm's, on small
in-memory data, and compares what statsmodels gives: the warning, the value,
the shape of the answer.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from statsmodels.regression.mixed_linear_model import VCSpec

import dlmm


def _arrays(seed: int = 4279, n_groups: int = 12, size: int = 5):
    rs = np.random.RandomState(seed)
    n = n_groups * size
    exog = np.column_stack([np.ones(n), rs.normal(size=n)])
    exog_re = rs.normal(size=(n, 2))
    groups = np.repeat(np.arange(n_groups), size)
    effects = np.repeat(rs.normal(size=(n_groups, 2)), size, axis=0)
    endog = exog.sum(1) + (effects * exog_re).sum(1) + rs.normal(size=n)
    return endog, exog, groups, exog_re


def _vc_dict(exog_re, groups):
    return {name: {g: exog_re[groups == g, j:j + 1] for g in np.unique(groups)}
            for j, name in enumerate(("a", "b"))}


# -- item 3: the dict form of exog_vc is deprecated, with statsmodels' FutureWarning --


def test_exog_vc_dict_of_groups_warns_as_statsmodels():
    endog, exog, groups, exog_re = _arrays()
    vc = _vc_dict(exog_re, groups)
    with pytest.warns(FutureWarning, match="Using deprecated variance components format"):
        sm.MixedLM(endog, exog, groups, exog_vc=vc)
    with pytest.warns(FutureWarning, match="Using deprecated variance components format") as got:
        dlmm.MixedLM(endog, exog, groups, exog_vc=vc)
    assert got[0].filename == __file__  # attributed to the caller, as statsmodels' is


def test_exog_vc_as_vcspec_or_row_aligned_arrays_does_not_warn():
    endog, exog, groups, exog_re = _arrays()
    labels = np.unique(groups)
    spec = VCSpec(["a"], [[["a"]] * len(labels)],
                  [[exog_re[groups == g, :1] for g in labels]])
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        dlmm.MixedLM(endog, exog, groups, exog_vc=spec)
        dlmm.MixedLM(endog, exog, groups, exog_vc={"a": exog_re[:, :1]})  # dlmm's own form


# -- item 5: row_indices ---------------------------------------------------------------


def test_row_indices_are_statsmodels():
    endog, exog, groups, exog_re = _arrays()
    shuffled = np.random.RandomState(1).permutation(len(groups))
    args = (endog[shuffled], exog[shuffled], groups[shuffled].astype(float))
    want = sm.MixedLM(*args).row_indices
    got = dlmm.MixedLM(*args).row_indices
    assert list(got) == list(want)
    assert all(got[k] == want[k] for k in want)
    frame = pd.DataFrame({"y": endog, "x": exog[:, 1], "g": [f"g{v:02d}" for v in groups]})
    frame = frame.iloc[shuffled].reset_index(drop=True)
    want = sm.MixedLM.from_formula("y ~ x", frame, groups="g").row_indices
    got = dlmm.mixedlm("y ~ x", frame, groups="g").row_indices
    assert list(got) == list(want) and all(got[k] == want[k] for k in want)


def _frame(seed: int = 123, n_groups: int = 10, size: int = 10) -> pd.DataFrame:
    rs = np.random.RandomState(seed)
    n = n_groups * size
    groups = np.repeat(np.arange(n_groups), size)
    x = rs.normal(size=n)
    y = x + rs.normal(size=n_groups)[groups] + rs.normal(size=n)
    return pd.DataFrame({"y": y, "x": x, "g": groups})


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return _frame()


# -- item 7: fit(full_output=True) keeps a history ------------------------------------


def test_full_output_gives_hist_as_statsmodels(frame):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sm_full = sm.MixedLM.from_formula("y ~ x", frame, groups="g").fit(full_output=True)
        sm_plain = sm.MixedLM.from_formula("y ~ x", frame, groups="g").fit()
    model = dlmm.mixedlm("y ~ x", frame, groups="g")
    full, plain = model.fit(full_output=True), model.fit()
    assert sm_plain.hist is None and plain.hist is None
    assert isinstance(sm_full.hist, list) and len(sm_full.hist) == 1
    assert isinstance(full.hist, list) and len(full.hist) == 1
    assert full.hist[0]["converged"] is True and sm_full.hist[0]["converged"] is True
    np.testing.assert_allclose(full.params, sm_full.params, rtol=1e-4)


# -- item 9: fit options statsmodels ignores are ignored, with its warning ---------------


def test_statsmodels_ignored_fit_options_warn_and_leave_the_fit_unchanged(frame):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with pytest.warns(FutureWarning, match="Argument cov_type not used by MixedLM.fit"):
            sm_result = sm.MixedLM.from_formula("y ~ x", frame, groups="g").fit(cov_type="hc1")
    model = dlmm.mixedlm("y ~ x", frame, groups="g")
    with pytest.warns(FutureWarning, match="Argument cov_type not used by MixedLM.fit") as got:
        result = model.fit(cov_type="hc1")
    assert got[0].filename == __file__
    with pytest.warns(FutureWarning, match="Arguments cov_type, use_t not used"):
        model.fit(cov_type="hc1", use_t=True)
    with pytest.warns(UserWarning, match="niter_sa is currently ignored"):
        model.fit(niter_sa=2, do_cg=True)
    with pytest.warns(UserWarning, match="fit options ftol, maxcor tune scipy's optimizers"):
        model.fit(ftol=1e-3, maxcor=3)
    np.testing.assert_allclose(result.params, sm_result.params, rtol=1e-4)
    np.testing.assert_allclose(result.bse, sm_result.bse, rtol=1e-3)


@pytest.mark.parametrize(("option", "message"), [
    ({"newton_step": 0}, "unknown option 'newton_step' for fit; did you mean newton_steps?"),
    ({"foo": 1}, "unknown option 'foo' for fit"),
    ({"do_cg": False}, "fit(do_cg=False) (statsmodels' result at the start values"),
])
def test_misspelt_or_unsupported_fit_options_are_refused_in_one_line(frame, option, message):
    model = dlmm.mixedlm("y ~ x", frame, groups="g")
    with pytest.raises(dlmm.InputError) as info:
        model.fit(**option)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


# -- item 8: get_distribution ---------------------------------------------------------


def _distribution_frame(seed: int = 234) -> pd.DataFrame:
    rs = np.random.RandomState(seed)
    n, n_groups = 60, 6
    frame = pd.DataFrame(rs.normal(size=(n, 7)), columns=["y", "x1", "x2", "z0", "z1", "z2",
                                                           "z3"])
    frame["grp"] = np.repeat(np.arange(n_groups), n // n_groups)
    frame["c"] = [f"c{k}" for k in rs.randint(0, 3, size=n)]  # levels vary by group
    return frame


@pytest.mark.parametrize("vc_formula", [{"a": "0 + z2 + z3"}, {"a": "0 + z2", "b": "0 + C(c)"}])
def test_get_distribution_draws_statsmodels_values(vc_formula):
    frame = _distribution_frame()
    args = ("y ~ 0 + x1 + x2",)
    kwargs = {"groups": "grp", "re_formula": "0 + z0 + z1", "vc_formula": vc_formula,
              "data": frame}
    sm_model = sm.MixedLM.from_formula(*args, **kwargs)
    model = dlmm.MixedLM.from_formula(*args, **kwargs)
    params = np.r_[1.0, -2.0, 1.0, 0.5, 2.0, 0.25, 2.25][: 2 + 3 + len(vc_formula)]
    want = sm_model.get_distribution(params, 1.5, None).rvs(0, rng=np.random.RandomState(7))
    got = model.get_distribution(params, 1.5, None).rvs(0, rng=np.random.RandomState(7))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    new_exog = np.ones((len(frame), 2))
    want = sm_model.get_distribution(params, 1.5, new_exog).rvs(0, rng=np.random.RandomState(8))
    got = model.get_distribution(params, 1.5, new_exog).rvs(0, rng=np.random.RandomState(8))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_get_distribution_has_the_model_covariance():
    """Many draws: their covariance is the model's (brute force, Z Psi Z' + scale I)."""
    endog, exog, groups, exog_re = _arrays(n_groups=3, size=4)
    model = dlmm.MixedLM(endog, exog, groups, exog_re=exog_re)
    cov_re = np.array([[1.0, 0.5], [0.5, 2.0]])
    params = np.r_[1.0, -1.0, cov_re[np.tril_indices(2)] / 0.5]
    dist = model.get_distribution(params, 0.5, None)
    rng = np.random.default_rng(3)
    draws = np.array([dist.rvs(0, rng=rng) for _ in range(4000)])
    same = groups[:, None] == groups[None, :]
    want = (exog_re @ cov_re @ exog_re.T) * same + 0.5 * np.eye(len(groups))
    np.testing.assert_allclose(draws.mean(0), exog @ [1.0, -1.0], atol=0.15)
    np.testing.assert_allclose(np.cov(draws.T), want, atol=0.1 * np.abs(want).max())


# -- item 4: loglike and score with the fixed effects held (profile_fe=False) ------------


def _slope_frame() -> pd.DataFrame:
    rs = np.random.RandomState(3558)
    n_groups, size = 15, 6
    g = np.repeat(np.arange(n_groups), size)
    x = 50.0 + 1e3 * rs.normal(size=g.size)  # far from 0 and 1: the pass centres and scales
    z = rs.normal(size=g.size)
    v = rs.normal(size=g.size)
    y = (0.002 * x + rs.normal(size=n_groups)[g] * (1 + z) + rs.normal(size=n_groups)[g] * v
         + rs.normal(size=g.size))
    return pd.DataFrame({"y": y, "x": x, "z": z, "v": v, "g": g})


@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("use_sqrt", [True, False])
def test_loglike_and_score_with_fixed_effects_held_are_statsmodels(reml, use_sqrt):
    frame = _slope_frame()
    kwargs = {"groups": "g", "re_formula": "1 + z", "vc_formula": {"v": "0 + v"},
              "use_sqrt": use_sqrt}
    sm_model = sm.MixedLM.from_formula("y ~ x", frame, **kwargs)
    model = dlmm.mixedlm("y ~ x", frame, **kwargs)
    sm_model.reml = model.reml = reml
    sm_model.cov_pen = sm_model.fe_pen = sm_model._freepat = None  # as fit() sets them
    rs = np.random.RandomState(5)
    for _ in range(3):
        fe = np.r_[0.3, 0.002] + rs.normal(size=2) * [0.5, 1e-3]
        root = rs.normal(size=(2, 2))
        params = dlmm.MixedLMParams.from_components(fe, cov_re=root @ root.T + 0.1 * np.eye(2),
                                                    vcomp=rs.uniform(0.2, 2.0, size=1))
        sm_params = sm.regression.mixed_linear_model.MixedLMParams.from_components(
            fe, cov_re=params.cov_re, vcomp=params.vcomp)
        want = sm_model.loglike(sm_params, profile_fe=False)
        assert model.loglike(params, profile_fe=False) == pytest.approx(want, rel=1e-9)
        assert model.loglike(params, profile_fe=False) < model.loglike(params)  # GLS is best
        want = sm_model.score(sm_params, profile_fe=False)
        np.testing.assert_allclose(model.score(params, profile_fe=False), want, rtol=1e-6,
                                   atol=1e-8 * np.abs(want).max())


# -- item 10: missing values of in-memory data are refused at construction ----------------


@pytest.mark.parametrize("missing", ["none", "raise"])
def test_missing_values_in_memory_are_refused_at_construction(frame, missing):
    holed = frame.copy()
    holed.loc[3, "y"] = np.nan
    holed.loc[[4, 5], "x"] = np.nan
    with pytest.raises(Exception):  # noqa: B017  statsmodels' own error, whatever its type
        sm.MixedLM.from_formula("y ~ x", holed, groups="g", missing=missing)
    with pytest.raises(dlmm.InputError, match=r"column 'x' has 2 missing values \(rows with "
                       r"missing values by column: 'y': 1, 'x': 2\)"):
        dlmm.mixedlm("y ~ x", holed, groups="g", missing=missing)
    with pytest.raises(dlmm.InputError, match="column 'x1' has 2 missing values"):
        dlmm.MixedLM(holed["y"].to_numpy(), holed[["x"]].to_numpy(), holed["g"].to_numpy(),
                     missing=missing)
    with pytest.warns(dlmm.MissingDataWarning, match="dropped 3 rows"):
        dropped = dlmm.mixedlm("y ~ x", holed, groups="g", missing="drop")
        assert dropped.exog.shape == (len(frame) - 3, 2)
    want = sm.MixedLM.from_formula("y ~ x", holed, groups="g", missing="drop")
    np.testing.assert_array_equal(dropped.exog, want.exog)
    np.testing.assert_array_equal(dropped.endog, want.endog)
