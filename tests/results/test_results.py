"""Inference and post-estimation of :class:`dlmm.results.MixedLMResults`.

Expected numbers come from elsewhere, never from dlmm's own output:

- lme4 (``tests/reference/cases.json``): ``bse_fe`` and the conditional
  modes of the random effects, for every reference case;
- statsmodels' ``MixedLM``, fitted in the test on generated data (a random
  slope case and a variance-component case, REML and ML) with a tight gradient
  tolerance so that both programs sit at the same optimum (checked first on the
  log-likelihood): standard errors, z and p values, Wald intervals, random
  effects and their conditional covariances, fitted values, residuals, AIC/BIC;
- hand computations from statsmodels' ``params``/``cov_params`` for ``t_test``
  and ``wald_test`` (statsmodels' own ``t_test`` takes no string constraints);
- finite differences of statsmodels' analytic gradient (``score_full``) and
  second differences of its log-likelihood for the Hessian, plus statsmodels'
  own ``MixedLM.hessian``.
"""

from __future__ import annotations

import functools
import re
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy import stats as sps
from statsmodels.regression.mixed_linear_model import MixedLMParams
from statsmodels.tools.sm_exceptions import ConvergenceWarning

import dlmm
from dlmm.exceptions import InputError
from tests.conftest import _load_cases, reference_data
from tests.simulate import grouped_data

CASES = _load_cases()
CASE_NAMES = sorted(CASES)

BSE_FE_RTOL = 1e-3  # the requirement against lme4
SM_RTOL = 1e-4  # the requirement against statsmodels
FORMULA = "y ~ x1 + x2"
R2 = np.array([[1.0, 0.3], [0.3, 0.5]])

# name -> (grouped_data keyword arguments, re_formula, vc_formula)
GENERATED = {
    # Groups of 5..12 rows with a correlated random intercept and slope.
    "slope": (dict(n_groups=30, per_group=(5, 12), re_cov=R2, seed=21), "~x1", None),
    # A random intercept and one nested component with 3 levels: with 4..10 rows a
    # group often lacks a level, so groups differ in which effects they have.
    "vc": (
        dict(n_groups=30, per_group=(4, 10), re_cov=[[0.8]], vc_sd={"c": 0.7}, seed=22),
        "1",
        {"c": "0 + C(c)"},
    ),
    # Components only (no standard random effect, k_re = 0), given out of order.
    "vc_only": (
        dict(n_groups=30, per_group=(5, 12), vc_sd={"c": 0.7, "d": 0.5}, seed=23),
        None,
        {"d": "0 + C(d)", "c": "0 + C(c)"},
    ),
    # A random slope and a component: the Hessian's Psi-by-component cross terms.
    "slope_vc": (
        dict(n_groups=30, per_group=(5, 12), re_cov=R2, vc_sd={"c": 0.7}, seed=24),
        "~x1",
        {"c": "0 + C(c)"},
    ),
}
GENERATED_PARAMS = [
    pytest.param((name, reml), id=f"{name}-{'reml' if reml else 'ml'}")
    for name in GENERATED for reml in (True, False)
]


# -- fits ---------------------------------------------------------------------------


@functools.cache
def _reference_fit(name: str):
    model = CASES[name]["model"]
    data = reference_data(model["data"])
    return dlmm.mixedlm(model["formula"], data, groups=model["groups"],
                        re_formula=model["re_formula"], vc_formula=model["vc_formula"]
                        ).fit(reml=model["reml"])


@functools.cache
def _data(name: str) -> pd.DataFrame:
    return grouped_data(**GENERATED[name][0])


@functools.cache
def _dlmm_fit(name: str, reml: bool):
    _, re_formula, vc_formula = GENERATED[name]
    return dlmm.mixedlm(FORMULA, _data(name), groups="g", re_formula=re_formula,
                        vc_formula=vc_formula).fit(reml=reml)


def _sm_model(name: str):
    _, re_formula, vc_formula = GENERATED[name]
    return smf.mixedlm(FORMULA, _data(name), groups="g", re_formula=re_formula,
                       vc_formula=vc_formula)


@functools.cache
def _sm_fit(name: str, reml: bool):
    """statsmodels at the optimum: a tight gtol first; if that still stops short of
    dlmm's llf, statsmodels is restarted at dlmm's estimates and optimizes again."""
    result = _dlmm_fit(name, reml)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.filterwarnings("ignore", "Keyword arguments have been passed", FutureWarning)
        sm = _sm_model(name).fit(reml=reml, gtol=1e-10)
        if not sm.llf == pytest.approx(result.llf, rel=1e-10):
            start = MixedLMParams.from_components(
                fe_params=result.fe_params.to_numpy(), cov_re=result.cov_re_unscaled,
                vcomp=result.vcomp / result.scale)
            sm = _sm_model(name).fit(reml=reml, gtol=1e-10, start_params=start)
    return sm


@pytest.fixture(params=GENERATED_PARAMS)
def pair(request):
    """(dlmm result, statsmodels result) at the same optimum."""
    name, reml = request.param
    result, sm = _dlmm_fit(name, reml), _sm_fit(name, reml)
    # Everything below compares quantities at the optimum: check it is the same one.
    assert result.llf == pytest.approx(sm.llf, rel=1e-8)
    np.testing.assert_allclose(result.fe_params.to_numpy(), sm.fe_params.to_numpy(),
                               rtol=1e-6)
    return result, sm


def _assert_close(actual, expected, rtol=SM_RTOL, what=""):
    """Relative comparison with an absolute floor of 1e-6 of the largest magnitude, for
    entries that are zero up to rounding (a near-zero correlation, a centered residual)."""
    actual = np.asarray(actual, dtype=float)
    expected = np.asarray(expected, dtype=float)
    assert actual.shape == expected.shape, what
    atol = 1e-6 * np.max(np.abs(expected)) if expected.size else 0.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=what)


# -- against lme4 ---------------------------------------------------------------------


@pytest.mark.parametrize("name", CASE_NAMES)
def test_bse_fe_matches_lme4(name):
    result = _reference_fit(name)
    expected = CASES[name]["expected"]["bse_fe"]
    assert sorted(result.bse_fe.index) == sorted(expected)
    for coef, value in expected.items():
        assert result.bse_fe[coef] == pytest.approx(value, rel=BSE_FE_RTOL), coef


def _vc_column(vc_formula: dict, component: str) -> str:
    """The data column of a component written ``0 + C(col)`` (the reference cases)."""
    match = re.fullmatch(r"\s*0\s*\+\s*C\((\w+)\)\s*", vc_formula[component])
    assert match, vc_formula[component]
    return match.group(1)


def _lme4_effects(case: dict, result) -> dict:
    """lme4's conditional modes keyed by (dlmm group label, dlmm effect name).

    lme4 levels are strings; dlmm's labels are what pandas read (the sleepstudy
    Subject column is int): labels are matched through ``str`` and the match is
    required to be one to one. Mapping of lme4's grouping factors:

    - the group column itself: the standard effects; lme4's "(Intercept)" is the
      first standard effect (named after the group column by statsmodels and dlmm),
      the other names are the same;
    - "comp:group" (Pastes' "cask:batch"): the component ``comp`` of the group given
      by the level's second part: level "a:A" is ``cask[C(cask)[a]]`` of group "A";
    - a component of a one-group model (Penicillin's plate, sample): level "a" is
      ``plate[C(plate)[a]]`` of the only group.
    """
    spec = case["model"]
    groups, vc = spec["groups"], spec["vc_formula"] or {}
    by_str = {str(label): label for label in result.random_effects}
    assert len(by_str) == len(result.random_effects), "group labels collide as strings"
    out = {}

    def put(label_text, effect, value):
        label = by_str[label_text] if groups is not None else next(iter(by_str.values()))
        key = (label, effect)
        assert key not in out, key
        out[key] = value

    for factor, rows in case["random_effects"].items():
        for row in rows:
            values = {k: v for k, v in row.items() if k != "level"}
            level = row["level"]
            if factor == groups:
                names = list(values)
                assert names[0] == "(Intercept)"
                assert result.exog_re_names[0] == groups  # statsmodels' intercept name
                # By position: the intercept first, then the other effects by name.
                assert ["(Intercept)", *result.exog_re_names[1:]] == names
                for pos, name in enumerate(names):
                    put(level, result.exog_re_names[pos], values[name])
            elif ":" in factor:
                comp, outer = factor.split(":")
                assert outer == groups and comp in vc, factor
                inner_level, group_level = level.split(":")
                (value,) = values.values()
                put(group_level, f"{comp}[C({_vc_column(vc, comp)})[{inner_level}]]", value)
            else:
                assert groups is None and factor in vc, factor
                (value,) = values.values()
                put(level, f"{factor}[C({_vc_column(vc, factor)})[{level}]]", value)
    return out


@pytest.mark.parametrize("name", CASE_NAMES)
def test_random_effects_match_lme4(name):
    """Every conditional mode of lme4 against dlmm's, and every dlmm effect matched.

    Tolerance 1e-3 absolute, relative (1e-3 of the value) for effects larger than 1:
    lme4's variance estimates carry its optimizer tolerance (about 1e-5 relative,
    see the reference README) and a conditional mode is a shrunken group mean
    whose error scales with its size; sleepstudy's modes reach 40 ms, where 1e-3
    absolute would demand 2.5e-5 relative accuracy of lme4's estimates.
    """
    case = CASES[name]
    result = _reference_fit(name)
    expected = _lme4_effects(case, result)
    got = {(label, effect): value for label, series in result.random_effects.items()
           for effect, value in series.items()}
    # One to one: every lme4 mode has a dlmm effect and dlmm has no other effect.
    assert sorted(map(str, got)) == sorted(map(str, expected))
    bad = {k: (got[k], v) for k, v in expected.items()
           if not abs(got[k] - v) <= 1e-3 * max(1.0, abs(v))}
    assert not bad, f"{name}: (dlmm, lme4) differ: {bad}"


# -- against statsmodels on generated data ----------------------------------------------


def test_generated_vc_groups_differ_in_effects():
    """The vc cases exercise groups that lack a component level (different names)."""
    for name in ("vc", "vc_only", "slope_vc"):
        sm = _sm_fit(name, True)
        sizes = {len(s) for s in sm.random_effects.values()}
        assert len(sizes) > 1, name


def test_params_and_names(pair):
    result, sm = pair
    assert list(result.params.index) == list(sm.params.index)
    _assert_close(result.params, sm.params, what="params")


def test_bse(pair):
    result, sm = pair
    assert list(result.bse.index) == list(sm.params.index)
    _assert_close(result.bse, sm.bse, what="bse")
    _assert_close(result.bse_fe, sm.bse_fe, what="bse_fe")


def test_bse_re(pair):
    result, sm = pair
    k_fe = sm.k_fe
    # statsmodels' definition, written out: sqrt(scale * diag(cov_params)) of the
    # covariance parameters (its bse_re property raises when there are variance
    # components: it builds a Series with the wrong index length).
    expected = np.sqrt(sm.scale * np.diag(np.asarray(sm.cov_params()))[k_fe:])
    _assert_close(result.bse_re, expected, what="bse_re")
    assert list(result.bse_re.index) == list(sm.params.index[k_fe:])
    if sm.k_vc == 0:
        _assert_close(result.bse_re, sm.bse_re, what="bse_re (statsmodels)")


def test_cov_params(pair):
    result, sm = pair
    cov = result.cov_params()
    assert list(cov.index) == list(cov.columns) == list(sm.params.index)
    _assert_close(cov, sm.cov_params(), what="cov_params")


def test_tvalues_and_pvalues(pair):
    result, sm = pair
    _assert_close(result.tvalues, sm.tvalues, what="tvalues")
    # Relative accuracy of a p-value: d log p = (phi/Phi) dz, a few times the
    # relative error of z for |z| up to ~10; compare them relatively.
    np.testing.assert_allclose(result.pvalues.to_numpy(), np.asarray(sm.pvalues),
                               rtol=SM_RTOL, atol=1e-300)
    assert list(result.pvalues.index) == list(sm.params.index)


@pytest.mark.parametrize("alpha", [0.05, 0.2])
def test_conf_int(pair, alpha):
    result, sm = pair
    got = result.conf_int(alpha)
    expected = np.asarray(sm.conf_int(alpha))
    assert list(got.index) == list(sm.params.index)
    _assert_close(got.to_numpy(), expected, what=f"conf_int({alpha})")


def test_random_effects(pair):
    """Every group, every effect name, every value."""
    result, sm = pair
    got, expected = result.random_effects, sm.random_effects
    assert sorted(got) == sorted(expected)
    scale = max(np.max(np.abs(s.to_numpy())) for s in expected.values())
    for g, series in expected.items():
        assert list(got[g].index) == list(series.index), g
        np.testing.assert_allclose(got[g].to_numpy(), series.to_numpy(), rtol=SM_RTOL,
                                   atol=1e-6 * scale, err_msg=str(g))


def test_random_effects_cov(pair):
    result, sm = pair
    got, expected = result.random_effects_cov, sm.random_effects_cov
    assert sorted(got) == sorted(expected)
    for g, frame in expected.items():
        frame = pd.DataFrame(frame)
        assert list(got[g].index) == list(got[g].columns) == list(frame.index), g
        _assert_close(got[g].to_numpy(), frame.to_numpy(), what=str(g))


def test_fittedvalues_and_resid(pair):
    result, sm = pair
    fitted, resid = result.fittedvalues, result.resid
    assert isinstance(fitted, pd.Series) and isinstance(resid, pd.Series)
    sm_fitted = np.asarray(sm.fittedvalues)
    sm_resid = np.asarray(sm.resid)
    frame = sm.model.data.frame
    assert list(fitted.index) == list(frame.index)
    assert list(resid.index) == list(frame.index)
    _assert_close(fitted.to_numpy(), sm_fitted, what="fittedvalues")
    _assert_close(resid.to_numpy(), sm_resid, what="resid")
    # And the identity itself: resid = y - fitted, to rounding.
    np.testing.assert_allclose(resid.to_numpy() + fitted.to_numpy(),
                               frame["y"].to_numpy(), rtol=1e-12, atol=1e-12)


def test_aic_bic(pair):
    result, sm = pair
    if result.reml:
        # The REML likelihood does not compare models with different fixed effects.
        assert np.isnan(result.aic) and np.isnan(result.bic)
        assert np.isnan(sm.aic) and np.isnan(sm.bic)
    else:
        assert result.aic == pytest.approx(sm.aic, rel=1e-8)
        assert result.bic == pytest.approx(sm.bic, rel=1e-8)
        # statsmodels' definitions by hand: parameters = fe + covariance + scale.
        k = sm.k_fe + sm.k_re2 + sm.k_vc + 1
        assert result.aic == pytest.approx(-2 * sm.llf + 2 * k, rel=1e-8)
        assert result.bic == pytest.approx(-2 * sm.llf + np.log(sm.nobs) * k, rel=1e-8)


# -- t_test and wald_test ---------------------------------------------------------------


def _sm_fe(sm):
    k = sm.k_fe
    return sm.fe_params.to_numpy(), np.asarray(sm.cov_params())[:k, :k]


def _expected_t(sm, r, q):
    beta, cov = _sm_fe(sm)
    r = np.atleast_2d(np.asarray(r, dtype=float))
    q = np.zeros(r.shape[0]) if q is None else np.atleast_1d(np.asarray(q, dtype=float))
    effect = r @ beta
    se = np.sqrt(np.diag(r @ cov @ r.T))
    z = (effect - q) / se
    crit = sps.norm.ppf(0.975)
    return {"coef": effect, "std err": se, "z": z, "P>|z|": 2 * sps.norm.sf(np.abs(z)),
            "Conf. Int. Low": effect - crit * se, "Conf. Int. Upp.": effect + crit * se}


def _assert_t_frame(got, expected):
    got = got.summary_frame()
    for col, values in expected.items():
        assert col in got.columns, col
        _assert_close(got[col].to_numpy(), values, what=col)


def test_t_test_array(pair):
    result, sm = pair
    r = np.array([[0.0, 1.0, -1.0], [1.0, 0.0, 0.0]])
    got = result.t_test(r)
    _assert_t_frame(got, _expected_t(sm, r, None))
    # statsmodels' own t_test agrees with the hand computation for arrays.
    own = sm.t_test(r)
    _assert_close(got.effect, np.ravel(own.effect), what="sm effect")
    _assert_close(got.sd, np.ravel(own.sd), what="sm sd")
    _assert_close(got.tvalue, np.ravel(own.tvalue), what="sm z")
    # A row over all of params with zeros beyond the fixed effects is the same test.
    full = np.zeros((2, len(sm.params)))
    full[:, :3] = r
    _assert_t_frame(result.t_test(full), _expected_t(sm, r, None))


def test_t_test_rejects_covariance_parameters(pair):
    result, sm = pair
    full = np.zeros((1, len(sm.params)))
    full[0, -1] = 1.0
    with pytest.raises(InputError):
        result.t_test(full)


@pytest.mark.parametrize(
    "constraint, r, q",
    [
        ("x1 = x2", [[0.0, 1.0, -1.0]], [0.0]),
        ("x1 + x2 = 1", [[0.0, 1.0, 1.0]], [1.0]),
        ("x1 = x2, Intercept = 2", [[0.0, 1.0, -1.0], [1.0, 0.0, 0.0]], [0.0, 2.0]),
    ],
)
def test_t_test_string(pair, constraint, r, q):
    result, sm = pair
    got = result.t_test(constraint)
    # statsmodels' t_test rejects strings for MixedLM: by hand from its estimates.
    _assert_t_frame(got, _expected_t(sm, r, q))


@pytest.mark.parametrize(
    "constraint, r, q",
    [
        ("x1 = x2", [[0.0, 1.0, -1.0]], [0.0]),
        ("x1 = 0, x2 = 0", [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], [0.0, 0.0]),
        ("x1 = x2, Intercept = 1", [[0.0, 1.0, -1.0], [1.0, 0.0, 0.0]], [0.0, 1.0]),
    ],
)
def test_wald_test(pair, constraint, r, q):
    result, sm = pair
    beta, cov = _sm_fe(sm)
    r, q = np.asarray(r), np.asarray(q)
    d = r @ beta - q
    stat = float(d @ np.linalg.inv(r @ cov @ r.T) @ d)
    for got in (result.wald_test(constraint), result.wald_test(r, q)):
        assert got.statistic == pytest.approx(stat, rel=SM_RTOL)
        assert got.df_num == r.shape[0]
        assert got.pvalue == pytest.approx(sps.chi2.sf(stat, r.shape[0]), rel=1e-3,
                                              abs=1e-300)


# -- the Hessian -------------------------------------------------------------------------


def _sm_objective(name: str, reml: bool):
    """statsmodels' L(beta, theta) (scale profiled, beta free) and its analytic gradient,
    as functions of statsmodels' packed vector (fe, lower triangle of Psi, vcomp/scale)."""
    sm_model = _sm_fit(name, reml).model  # fitted: its REML/ML state and penalties are set
    assert sm_model.reml == reml
    k_fe, k_re = sm_model.k_fe, sm_model.k_re
    k_re2 = k_re * (k_re + 1) // 2

    def unpack(x):
        psi = np.zeros((k_re, k_re))
        psi[np.tril_indices(k_re)] = x[k_fe:k_fe + k_re2]
        psi = psi + np.tril(psi, -1).T
        return MixedLMParams.from_components(fe_params=x[:k_fe], cov_re=psi,
                                             vcomp=x[k_fe + k_re2:])

    def value(x):
        return sm_model.loglike(unpack(x), profile_fe=False)

    def grad(x):
        return np.concatenate(sm_model.score_full(unpack(x), calc_fe=True))

    return sm_model, unpack, value, grad


def _fd_of_gradient(grad, x0, rel_step=1e-5):
    n = x0.shape[0]
    out = np.zeros((n, n))
    for j in range(n):
        h = rel_step * max(1.0, abs(x0[j]))
        e = np.zeros(n)
        e[j] = h
        out[:, j] = (grad(x0 + e) - grad(x0 - e)) / (2 * h)
    return out


def _second_differences(value, x0, rel_step=1e-4):
    n = x0.shape[0]
    out = np.zeros((n, n))
    steps = rel_step * np.maximum(1.0, np.abs(x0))
    for i in range(n):
        for j in range(i, n):
            ei = np.zeros(n)
            ej = np.zeros(n)
            ei[i], ej[j] = steps[i], steps[j]
            out[i, j] = out[j, i] = (value(x0 + ei + ej) - value(x0 + ei - ej)
                                     - value(x0 - ei + ej) + value(x0 - ei - ej)) / (
                4 * steps[i] * steps[j])
    return out


@pytest.mark.parametrize("name, reml", [p.values[0] for p in GENERATED_PARAMS],
                         ids=[p.id for p in GENERATED_PARAMS])
def test_hessian_matches_finite_differences(name, reml):
    result = _dlmm_fit(name, reml)
    _, unpack, value, grad = _sm_objective(name, reml)
    x0 = result.params.to_numpy()
    hess = np.asarray(result.hessian)
    assert hess.shape == (x0.size, x0.size)
    size = np.max(np.abs(hess))
    np.testing.assert_allclose(hess, hess.T, rtol=0, atol=1e-12 * size)
    # Central differences of the analytic gradient: truncation ~ h^2 = 1e-10.
    fd = _fd_of_gradient(grad, x0)
    np.testing.assert_allclose(hess, fd, rtol=0, atol=1e-6 * size)
    # Second differences of the value: rounding ~ eps |L| / h^2 ~ 1e-5 relative.
    sd = _second_differences(value, x0)
    np.testing.assert_allclose(hess, sd, rtol=0, atol=1e-4 * size)
    # The analytic gradient is zero at the optimum (so these are the right points).
    assert np.max(np.abs(grad(x0))) < 1e-5 * size


@pytest.mark.parametrize("name, reml", [p.values[0] for p in GENERATED_PARAMS],
                         ids=[p.id for p in GENERATED_PARAMS])
def test_hessian_matches_statsmodels(name, reml):
    result = _dlmm_fit(name, reml)
    sm_model, unpack, _, _ = _sm_objective(name, reml)
    expected, singular = sm_model.hessian(unpack(result.params.to_numpy()))
    assert not singular
    hess = np.asarray(result.hessian)
    np.testing.assert_allclose(hess, expected, rtol=0, atol=1e-8 * np.max(np.abs(expected)))


@pytest.mark.parametrize("name, reml", [p.values[0] for p in GENERATED_PARAMS],
                         ids=[p.id for p in GENERATED_PARAMS])
def test_hessian_pieces_away_from_the_optimum(name, reml):
    """The same Hessian machinery (the map-reduce ``result.hessian`` runs) at a point
    that is not the optimum, where terms multiplying the gradient do not vanish."""
    result = _dlmm_fit(name, reml)
    _, _, _, grad = _sm_objective(name, reml)
    k_fe, k_re = result.k_fe, result.k_re
    rng = np.random.default_rng(5)
    beta = result.fe_params.to_numpy() + 0.3 * rng.normal(size=k_fe)
    psi = result.cov_re_unscaled.to_numpy() * 1.4 + 0.1 * np.eye(k_re)
    if k_re > 1:
        psi[0, 1] = psi[1, 0] = psi[1, 0] - 0.05
    v = result.vcomp / result.scale * 0.6
    x = np.concatenate([beta, psi[np.tril_indices(k_re)], v])
    hess, _ = result.model.hessian(x)
    assert np.max(np.abs(grad(x))) > 1.0  # really away from the optimum
    fd = _fd_of_gradient(grad, x)
    np.testing.assert_allclose(hess, fd, rtol=0, atol=1e-6 * np.max(np.abs(fd)))
