"""Numerical edge cases (issue 5, item 3), with statsmodels run beside dlmm where it fails or
warns (its issues #10239, #7051, #9138, #4847).

References are external wherever one exists: numpy / statsmodels OLS where a variance is
exactly zero, statsmodels' own profiled log-likelihood (``MixedLM.loglike``) to check
that no nearby parameter value is better than dlmm's optimum, and statsmodels' fits of
the same (or the reduced) model.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

import dlmm
from tests.reliability.helpers import (
    nearby_points,
    sm_profile_loglike,
    sqrt_params,
    statsmodels_fit,
)
from tests.simulate import grouped_data


def _fit(formula, data, reml=True, **kwargs):
    """A dlmm fit with its warnings silenced (warnings are tested in test_diagnostics)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dlmm.mixedlm(formula, data, **kwargs).fit(reml=reml)


def _assert_local_max(result, sm_model, reml, seed=0):
    """No nonsingular point near dlmm's estimate has a higher profiled llf by statsmodels'
    own likelihood: the estimate is a maximum, not a stationary point of the sqrt
    parameterization (where every zero variance has a zero gradient)."""
    chol, vc_sd = sqrt_params(result)
    tol = 1e-9 * max(1.0, abs(result.llf))
    for c, v in nearby_points(chol, vc_sd, seed=seed):
        value = sm_profile_loglike(sm_model, c, v, reml=reml)
        assert value <= result.llf + tol, (
            f"a nearby point has llf {value!r} > dlmm's {result.llf!r} "
            f"(dlmm cov_re {result.cov_re.to_numpy().tolist()}, vcomp {result.vcomp.tolist()})"
        )


# -- boundary fits -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def no_group_effect() -> pd.DataFrame:
    """Rows with NO group effect (true variance 0): a between-group regressor ``b``
    (constant within each group, like statsmodels #10239) and a within-group ``x``."""
    rng = np.random.default_rng(0)
    n_groups, size = 40, 6
    g = np.repeat(np.arange(n_groups), size)
    b = rng.normal(size=n_groups)[g]
    x = rng.normal(size=n_groups * size)
    y = 1.5 + 2.0 * b + 0.7 * x + rng.normal(size=n_groups * size)
    return pd.DataFrame({"y": y, "x": x, "b": b, "g": g})


@pytest.mark.parametrize("reml", [True, False], ids=["REML", "ML"])
def test_boundary_fit_reaches_zero_and_keeps_ols_fixed_effects(no_group_effect, reml):
    df = no_group_effect
    result = _fit("y ~ b + x", df, reml=reml, groups="g")
    assert result.converged
    assert result.singular is True
    assert result.diagnostics["singular"] is True
    assert result.cov_re.to_numpy()[0, 0] <= 1e-12 * result.scale

    # Variance exactly 0: the fixed effects are OLS, the scale is RSS / (n - p) or RSS / n.
    X = np.column_stack([np.ones(len(df)), df["b"], df["x"]])
    ols = sm.OLS(df["y"].to_numpy(), X).fit()
    np.testing.assert_allclose(result.fe_params.to_numpy(), ols.params, rtol=1e-10,
                               atol=1e-12)
    n, p = X.shape
    np.testing.assert_allclose(result.scale, ols.ssr / (n - p if reml else n), rtol=1e-10)
    if not reml:  # the ML llf at variance 0 is the OLS llf
        np.testing.assert_allclose(result.llf, ols.llf, rtol=1e-12)

    # statsmodels beside it: with lbfgs it lands on the boundary too and (#10239) may return
    # the intercept and the between-group coefficient as exactly 0 with llf = inf; with its
    # default method it stops near, not on, the boundary. dlmm's llf is at least the best
    # finite llf statsmodels reports, and no nearby positive variance is better.
    for method in ("lbfgs", None):
        sm_model, sm_result, _, error = statsmodels_fit("y ~ b + x", df, reml=reml,
                                                        method=method, groups="g")
        assert error is None, error
        if np.isfinite(sm_result.llf):
            assert result.llf >= sm_result.llf - 1e-9 * abs(sm_result.llf)
        sm_fe_error = np.max(np.abs(sm_result.fe_params.to_numpy() - ols.params))
        dlmm_fe_error = np.max(np.abs(result.fe_params.to_numpy() - ols.params))
        assert dlmm_fe_error <= min(sm_fe_error, 1e-12) + 1e-12
    for psi in (1e-6, 1e-4, 1e-3, 1e-2, 1e-1):
        value = sm_profile_loglike(sm_model, np.array([[np.sqrt(psi)]]), reml=reml)
        assert value < result.llf


def test_zero_variance_is_not_taken_for_the_maximum():
    """statsmodels #7051 data (random y and x, 100 rows in 3 groups): the sqrt
    parameterization has a zero gradient at variance 0, but here the llf rises away from
    it; the maximum is inside (statsmodels, with all its warnings, gets higher than 0)."""
    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.normal(size=(100, 2)), columns=["y", "x"])
    df["g"] = np.arange(100) % 3
    sm_model, sm_result, sm_warnings, _ = statsmodels_fit("y ~ x", df, groups="g")
    grid = {psi: sm_profile_loglike(sm_model, np.array([[np.sqrt(psi)]]))
            for psi in (1e-3, 5e-3, 1e-2, 1.4e-2, 2e-2, 5e-2)}
    best = max(max(grid.values()), sm_result.llf)

    result = _fit("y ~ x", df, groups="g")
    assert result.converged
    assert result.llf >= best - 1e-9 * abs(best), (
        f"dlmm stopped at cov_re {result.cov_re.to_numpy().ravel().tolist()} with llf "
        f"{result.llf!r}; statsmodels' llf is {sm_result.llf!r} and its loglike at "
        f"cov_re/scale = 0.014 is {grid[1.4e-2]!r}")
    assert result.cov_re.to_numpy()[0, 0] > 1e-3 * result.scale
    assert result.singular is False
    _assert_local_max(result, sm_model, reml=True)


def test_variance_component_on_the_boundary_reduces_to_the_smaller_model():
    """A variance component whose true variance is 0 (and whose estimate is 0): the fit is
    the random-intercept-only model's, as statsmodels fits it."""
    df = grouped_data(n_groups=40, per_group=10, k_fe=2, re_cov=np.array([[1.0]]),
                      vc_sd={"c": 0.0}, vc_levels=3, seed=5)
    result = _fit("y ~ x1", df, groups="g", re_formula="1", vc_formula={"c": "0 + C(c)"})
    assert result.converged
    assert result.singular is True
    assert result.vcomp[0] <= 1e-12 * result.scale
    assert result.cov_re.to_numpy()[0, 0] > 0.5

    _, reduced, _, error = statsmodels_fit("y ~ x1", df, groups="g")
    assert error is None and reduced.converged
    assert result.llf >= reduced.llf - 1e-10 * abs(reduced.llf)
    np.testing.assert_allclose(result.llf, reduced.llf, rtol=1e-9)
    np.testing.assert_allclose(result.fe_params.to_numpy(), reduced.fe_params.to_numpy(),
                               rtol=1e-5)
    np.testing.assert_allclose(result.cov_re.to_numpy(), reduced.cov_re.to_numpy(), rtol=1e-4)
    np.testing.assert_allclose(result.scale, reduced.scale, rtol=1e-5)

    sm_full, _, _, _ = statsmodels_fit("y ~ x1", df, groups="g", re_formula="1",
                                       vc_formula={"c": "0 + C(c)"})
    _assert_local_max(result, sm_full, reml=True)


# -- singular covariance matrices ------------------------------------------------------------


def _perfectly_correlated(seed: int) -> pd.DataFrame:
    """Random slope = 2 x random intercept in every group (correlation exactly 1)."""
    rng = np.random.default_rng(seed)
    n_groups, size = 12, 6
    g = np.repeat(np.arange(n_groups), size)
    x = rng.normal(size=n_groups * size)
    u = rng.normal(size=n_groups)
    y = 1 + 0.5 * x + u[g] + 2 * u[g] * x + rng.normal(size=n_groups * size)
    return pd.DataFrame({"y": y, "x": x, "g": g})


def test_perfectly_correlated_random_effects_converge_singular():
    df = _perfectly_correlated(seed=3)
    sm_model, sm_result, sm_warnings, error = statsmodels_fit("y ~ x", df, groups="g",
                                                              re_formula="~x")
    result = _fit("y ~ x", df, groups="g", re_formula="~x")
    assert result.converged
    assert result.singular is True
    cov = result.cov_re.to_numpy()
    np.testing.assert_allclose(cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1]), 1.0, atol=1e-6)
    assert np.linalg.eigvalsh(cov).min() >= -1e-10 * cov.max()
    # statsmodels warns (and here does not converge); dlmm is at least as high.
    assert error is not None or sm_warnings
    if sm_result is not None and np.isfinite(sm_result.llf):
        assert result.llf >= sm_result.llf - 1e-9 * abs(sm_result.llf)
    _assert_local_max(result, sm_model, reml=True)


def test_many_random_slopes_on_few_groups_converge_singular():
    """statsmodels #9138: the random-effects formula repeats the covariates (k_re = 4) on
    6 groups; statsmodels warns and stops short; dlmm converges to a singular maximum."""
    df = grouped_data(n_groups=6, per_group=8, k_fe=4,
                      re_cov=np.diag([1.0, 0.0, 0.0, 0.0]) + 1e-12, seed=1)
    formula, re_formula = "y ~ x1 + x2 + x3", "~x1 + x2 + x3"
    sm_model, sm_result, sm_warnings, error = statsmodels_fit(formula, df, groups="g",
                                                              re_formula=re_formula)
    result = _fit(formula, df, groups="g", re_formula=re_formula)
    assert result.converged
    assert result.singular is True
    assert error is not None or not sm_result.converged or sm_warnings
    if sm_result is not None and np.isfinite(sm_result.llf):
        assert result.llf >= sm_result.llf - 1e-9 * abs(sm_result.llf)
    # #4847 (fits that run forever): a bounded number of map-reduce rounds.
    assert result.mle_retvals["evaluations"] <= 200
    _assert_local_max(result, sm_model, reml=True)


# -- group sizes -----------------------------------------------------------------------------


def test_groups_of_size_one_among_larger_groups():
    df = grouped_data(n_groups=60, per_group=(1, 8), k_fe=2, re_cov=np.array([[1.0]]), seed=4)
    sizes = df.groupby("g").size()
    assert (sizes == 1).sum() >= 3 and sizes.max() > 1
    result = _fit("y ~ x1", df, groups="g")
    _, sm_result, _, error = statsmodels_fit("y ~ x1", df, groups="g")
    assert error is None and sm_result.converged
    assert result.converged and not result.singular
    assert result.group_size_min == 1.0
    assert result.n_groups == 60
    assert result.llf >= sm_result.llf - 1e-10 * abs(sm_result.llf)
    np.testing.assert_allclose(result.llf, sm_result.llf, rtol=1e-9)
    np.testing.assert_allclose(result.fe_params.to_numpy(), sm_result.fe_params.to_numpy(),
                               rtol=1e-5)
    np.testing.assert_allclose(result.cov_re.to_numpy(), sm_result.cov_re.to_numpy(),
                               rtol=1e-4)
    # Every size-1 group has its predicted effect.
    singles = sizes.index[sizes == 1]
    assert all(label in result.random_effects for label in singles)


def test_one_group_crossed_variance_components():
    """One group (groups=None) with two crossed variance components, as statsmodels fits
    crossed effects (a constant group column)."""
    rng = np.random.default_rng(1)
    n = 400
    a, b = rng.integers(0, 12, n), rng.integers(0, 9, n)
    x = rng.normal(size=n)
    y = 1 + 0.3 * x + 0.8 * rng.normal(size=12)[a] + 0.5 * rng.normal(size=9)[b] \
        + rng.normal(size=n)
    df = pd.DataFrame({"y": y, "x": x, "a": a, "b": b, "one": 1})
    vc = {"a": "0 + C(a)", "b": "0 + C(b)"}
    result = _fit("y ~ x", df, groups=None, re_formula="0", vc_formula=vc)
    _, sm_result, _, error = statsmodels_fit("y ~ x", df, groups="one", re_formula="0",
                                             vc_formula=vc)
    assert error is None
    assert result.converged and result.n_groups == 1 and result.nobs == n
    assert result.llf >= sm_result.llf - 1e-10 * abs(sm_result.llf)
    np.testing.assert_allclose(result.llf, sm_result.llf, rtol=1e-9)
    np.testing.assert_allclose(result.vcomp, sm_result.vcomp, rtol=1e-4)
    np.testing.assert_allclose(result.fe_params.to_numpy(), sm_result.fe_params.to_numpy(),
                               rtol=1e-5)


def test_very_unbalanced_groups():
    """Group sizes from 1 to 10^4 rows in one fit."""
    rng = np.random.default_rng(3)
    sizes = np.r_[np.ones(30, dtype=int), rng.integers(2, 50, 60), [10_000, 3000]]
    g = np.repeat(np.arange(sizes.shape[0]), sizes)
    n = g.shape[0]
    x = rng.normal(size=n)
    u = rng.normal(size=(sizes.shape[0], 2)) * [1.0, 0.4]
    y = 2 + 0.5 * x + u[g, 0] + u[g, 1] * x + rng.normal(size=n)
    df = pd.DataFrame({"y": y, "x": x, "g": g})
    result = _fit("y ~ x", df, groups="g", re_formula="~x")
    assert result.converged and not result.singular
    assert (result.group_size_min, result.group_size_max) == (1.0, 10_000.0)
    assert result.nobs == n and result.n_groups == sizes.shape[0]
    _, sm_result, _, error = statsmodels_fit("y ~ x", df, groups="g", re_formula="~x")
    assert error is None
    assert result.llf >= sm_result.llf - 1e-10 * abs(sm_result.llf)
    np.testing.assert_allclose(result.llf, sm_result.llf, rtol=1e-8)
    np.testing.assert_allclose(result.fe_params.to_numpy(), sm_result.fe_params.to_numpy(),
                               rtol=1e-4)
    np.testing.assert_allclose(result.cov_re.to_numpy(), sm_result.cov_re.to_numpy(),
                               rtol=5e-3, atol=1e-3)


# -- scales ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scale_data() -> pd.DataFrame:
    return grouped_data(n_groups=40, per_group=(5, 15), k_fe=3,
                        re_cov=np.array([[1.0, 0.3], [0.3, 0.5]]), vc_sd={"c": 0.7}, seed=7)


@pytest.mark.parametrize("reml", [True, False], ids=["REML", "ML"])
@pytest.mark.parametrize("factor", [1e6, 1e-6])
def test_extreme_response_scales_give_rescaled_estimates(scale_data, factor, reml):
    kw = {"groups": "g", "re_formula": "~x1", "vc_formula": {"c": "0 + C(c)"}}
    base = _fit("y ~ x1 + x2", scale_data, reml=reml, **kw)
    scaled_data = scale_data.assign(y=scale_data["y"] * factor)
    scaled = _fit("y ~ x1 + x2", scaled_data, reml=reml, **kw)
    assert base.converged and scaled.converged
    rtol = 1e-7
    np.testing.assert_allclose(scaled.fe_params.to_numpy(),
                               factor * base.fe_params.to_numpy(), rtol=rtol)
    np.testing.assert_allclose(scaled.cov_re.to_numpy(), factor**2 * base.cov_re.to_numpy(),
                               rtol=rtol)
    np.testing.assert_allclose(scaled.vcomp, factor**2 * base.vcomp, rtol=rtol)
    np.testing.assert_allclose(scaled.scale, factor**2 * base.scale, rtol=rtol)
    np.testing.assert_allclose(scaled.bse_fe.to_numpy(), factor * base.bse_fe.to_numpy(),
                               rtol=1e-6)
    # Profile-scale parameters (cov_re / scale, vcomp / scale) do not change at all.
    np.testing.assert_allclose(scaled.params.to_numpy()[3:], base.params.to_numpy()[3:],
                               rtol=rtol)
    # The density of y * f is that of y divided by f per row: llf shifts by
    # -(n - p) log f (REML, fac = n - p) or -n log f (ML).
    fac = base.nobs - (3 if reml else 0)
    np.testing.assert_allclose(scaled.llf, base.llf - fac * np.log(factor), rtol=1e-10)
    re_base = base.random_effects_table()
    re_scaled = scaled.random_effects_table()
    np.testing.assert_allclose(re_scaled.to_numpy(), factor * re_base.to_numpy(), rtol=1e-6,
                               atol=1e-9 * factor * np.abs(re_base.to_numpy()).max())


# -- many random effects ---------------------------------------------------------------------


def test_six_random_effects_per_group_match_statsmodels():
    cov = 0.3 * np.eye(6) + 0.1
    df = grouped_data(n_groups=40, per_group=15, k_fe=6, re_cov=cov, seed=11)
    formula, re_formula = "y ~ x1 + x2 + x3 + x4 + x5", "~x1 + x2 + x3 + x4 + x5"
    result = _fit(formula, df, groups="g", re_formula=re_formula)
    _, sm_result, _, error = statsmodels_fit(formula, df, groups="g", re_formula=re_formula)
    assert error is None
    assert result.converged and result.k_re == 6
    assert result.cov_re.shape == (6, 6)
    assert result.llf >= sm_result.llf - 1e-10 * abs(sm_result.llf)
    np.testing.assert_allclose(result.llf, sm_result.llf, rtol=1e-8)
    np.testing.assert_allclose(result.fe_params.to_numpy(), sm_result.fe_params.to_numpy(),
                               rtol=1e-4)
    np.testing.assert_allclose(result.cov_re.to_numpy(), sm_result.cov_re.to_numpy(),
                               atol=1e-3)


# -- group labels ----------------------------------------------------------------------------


def test_group_label_types_give_identical_estimates():
    base = grouped_data(n_groups=30, per_group=(3, 9), k_fe=2, re_cov=np.array([[1.0]]),
                        seed=9)
    names = {v: f"grp{v:03d}" for v in range(30)}
    labels = {
        "int": base["g"],
        "str": base["g"].map(names),
        # A categorical with an unused category: that category is not a group.
        "categorical": pd.Categorical(base["g"].map(names),
                                      categories=[*sorted(names.values()), "unused"]),
        "float": base["g"].astype(float) + 0.5,
        "int_unordered": (base["g"] * 7919) % 101,
    }
    fits = {}
    for kind, lab in labels.items():
        fits[kind] = _fit("y ~ x1", base.assign(g=lab), groups="g")
    ref = fits["int"]
    for kind, result in fits.items():
        assert result.converged and result.n_groups == 30, kind
        np.testing.assert_allclose(result.fe_params.to_numpy(), ref.fe_params.to_numpy(),
                                   rtol=1e-10, err_msg=kind)
        np.testing.assert_allclose(result.cov_re.to_numpy(), ref.cov_re.to_numpy(),
                                   rtol=1e-10, err_msg=kind)
        np.testing.assert_allclose(result.scale, ref.scale, rtol=1e-10, err_msg=kind)
        np.testing.assert_allclose(result.llf, ref.llf, rtol=1e-12, err_msg=kind)
        # The same group gets the same predicted effect under its other label.
        mapped = {v: labels[kind][(base["g"] == v).to_numpy()].iloc[0]
                  if hasattr(labels[kind], "iloc") else
                  labels[kind][np.flatnonzero((base["g"] == v).to_numpy())[0]]
                  for v in range(30)}
        for v in range(30):
            np.testing.assert_allclose(result.random_effects[mapped[v]].to_numpy(),
                                       ref.random_effects[v].to_numpy(), rtol=1e-9,
                                       atol=1e-12, err_msg=f"{kind} group {v}")
