"""statsmodels' nested shape (a group, its random effects, one component of a factor's
indicators within it) fitted by the nested engine: lme4's and statsmodels' answers,
every results feature, and the same estimates however the rows are partitioned."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

import dlmm

REFERENCE = Path(__file__).resolve().parents[1] / "reference" / "nested"
CASES = json.loads((REFERENCE / "lme4_nested.json").read_text())["cases"]
CHEM97 = ("score ~ gcsecnt + C(gender, Treatment('M'))",
          {"groups": "lea", "re_formula": "1", "vc_formula": {"school": "0 + C(school)"}})


@pytest.fixture(scope="module")
def chem97():
    return pd.read_csv(REFERENCE / "data" / "chem97.csv.gz")


@pytest.fixture(scope="module", params=[True, False], ids=["reml", "ml"])
def chem97_fit(request, chem97):
    formula, kw = CHEM97
    return request.param, dlmm.mixedlm(formula, chem97, **kw).fit(reml=request.param)


def test_chem97_is_lme4s_fit(chem97_fit):
    """``(1 | lea/school)`` on Chem97 (31,022 pupils, 2,410 schools, 131 authorities) on
    the nested engine: lme4 1.1-31's llf, fixed effects, variances, lme4-style standard
    errors and Satterthwaite's df (lmerTest), and its conditional modes."""
    reml, fit = chem97_fit
    ref = CASES["chem97_reml" if reml else "chem97_ml"]
    assert fit.engine == "nested" and fit.converged
    np.testing.assert_allclose(fit.llf, ref["llf"], rtol=1e-9)
    names = {"Intercept": "(Intercept)", "gcsecnt": "gcsecnt",
             "C(gender, Treatment('M'))[T.F]": "genderF"}
    for ours, theirs in names.items():
        np.testing.assert_allclose(fit.fe_params[ours], ref["fe_params"][theirs], rtol=1e-6)
    var = {row["grp"]: row["vcov"] for row in ref["varcorr"]}
    np.testing.assert_allclose(fit.cov_re.iloc[0, 0], var["lea"], rtol=1e-4)
    np.testing.assert_allclose(fit.vcomp[0], var["school:lea"], rtol=1e-4)
    np.testing.assert_allclose(fit.scale, var["Residual"], rtol=1e-5)
    table = fit.satterthwaite()
    for ours, theirs in names.items():
        np.testing.assert_allclose(table.loc[ours, "Std. Error"], ref["bse_fe"][theirs],
                                   rtol=1e-3)
        np.testing.assert_allclose(table.loc[ours, "df"], ref["satterthwaite_df"][theirs],
                                   rtol=1e-3)
    modes = ref["random_effects"]["school:lea"]["condval"]["(Intercept)"]
    effects = fit.random_effects
    for label, value in modes.items():
        school, lea = (int(v) for v in label.split(":"))
        assert effects[lea][f"school[C(school)[{school}]]"] == pytest.approx(value, abs=1e-4)
    lea_modes = ref["random_effects"]["lea"]["condval"]["(Intercept)"]
    for label, value in lea_modes.items():
        assert effects[int(label)]["lea"] == pytest.approx(value, abs=1e-4)
    # lme4's θ, its order and its names, from statsmodels' spelling of the model
    assert list(fit.theta.index) == ref["theta_names"]
    np.testing.assert_allclose(fit.theta.to_numpy(), ref["theta"], rtol=1e-4)


@pytest.mark.parametrize("reml", [True, False])
def test_exam_theta_is_lme4s_from_statsmodels_spelling(reml, tmp_path):
    """``mixedlm(groups="school", re_formula="~standLRT")`` is lme4's
    ``(standLRT | school)`` on mlmRev's Exam: lme4's θ (column-major factor, names)."""
    ref = CASES["exam_reml" if reml else "exam_ml"]
    exam = pd.read_csv(REFERENCE / "data" / "exam.csv")
    fit = dlmm.mixedlm("normexam ~ standLRT", exam, groups="school",
                       re_formula="~standLRT").fit(reml=reml)
    assert list(fit.theta.index) == ref["theta_names"]
    np.testing.assert_allclose(fit.theta.to_numpy(), ref["theta"], rtol=1e-4)
    fit.save(tmp_path / "fit")  # a saved fit gives it too, from its saved estimates
    loaded = dlmm.load_result(tmp_path / "fit").theta
    assert list(loaded.index) == ref["theta_names"]
    np.testing.assert_allclose(loaded.to_numpy(), ref["theta"], rtol=1e-4)


def _slopes_data(n_groups=30, seed=3):
    """Groups with a random intercept and a slope on x (far from 0: the pass shifts it),
    and 2-4 levels of ``h`` within each group (about 90 levels in all: the nested engine's,
    ``NESTED_MIN_LEVELS``)."""
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(n_groups):
        a, b = rng.normal(0, [1.0, 0.4])
        for h in range(rng.integers(2, 5)):
            c = rng.normal(0, 0.8)
            n = int(rng.integers(1, 7))
            x = 1000.0 + rng.normal(0, 2, n)
            y = 1 + 0.5 * (x - 1000) + a + b * (x - 1000) + c + rng.normal(0, 1, n)
            rows.append(pd.DataFrame({"g": f"g{g:02d}", "h": 10 * g + h, "x": x, "y": y}))
    return pd.concat(rows, ignore_index=True)


@pytest.fixture(scope="module")
def slopes():
    frame = _slopes_data()
    kw = {"groups": "g", "re_formula": "1 + x", "vc_formula": {"h": "0 + C(h)"}}
    fit = dlmm.mixedlm("y ~ x", frame, **kw).fit()
    import statsmodels.formula.api as smf

    # statsmodels' own optimizer stops far below the optimum on x around 1000 (llf -757
    # against -522): it fits the same model on x - 1000, Z = [1, x - 1000] = [1, x] U^{-1}.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = smf.mixedlm("y ~ x", frame.assign(x=frame["x"] - 1000.0), **kw).fit()
    return frame, kw, fit, ref


def test_a_slope_beside_the_nested_component_is_statsmodels_fit(slopes):
    """A random slope on a covariate around 1000 (shifted in the pass) beside the nested
    component, text group labels: statsmodels' estimates (of the same model on x - 1000:
    b_s = U b, cov_s = U cov U') and random effects."""
    frame, kw, fit, ref = slopes
    u = np.array([[1.0, 1000.0], [0.0, 1.0]])
    assert fit.engine == "nested" and fit.converged
    assert fit.llf >= ref.llf - 1e-9 * abs(ref.llf)
    np.testing.assert_allclose(fit.llf, ref.llf, rtol=1e-8)
    np.testing.assert_allclose(fit.fe_params["x"], ref.fe_params["x"], rtol=1e-5)
    np.testing.assert_allclose(fit.fe_params["Intercept"] + 1000 * fit.fe_params["x"],
                               ref.fe_params["Intercept"], rtol=1e-5)
    np.testing.assert_allclose(u @ fit.cov_re.to_numpy() @ u.T, ref.cov_re, rtol=2e-3,
                               atol=1e-5)
    np.testing.assert_allclose(fit.vcomp, ref.vcomp, rtol=2e-3)
    np.testing.assert_allclose(fit.bse_fe["x"], ref.bse_fe["x"], rtol=2e-3)
    for group in ("g00", "g17"):
        theirs = ref.random_effects[group].to_numpy()
        ours = fit.random_effects[group].to_numpy()
        np.testing.assert_allclose(u @ ours[:2], theirs[:2], rtol=1e-3, atol=1e-5)
        np.testing.assert_allclose(ours[2:], theirs[2:], rtol=1e-3, atol=1e-5)


def test_the_nested_engine_does_not_see_the_partitioning(slopes, dask_client):
    """1, 3 and 17 partitions on Dask give the in-process estimates to 1e-8."""
    frame, kw, fit, _ = slopes
    for n in (1, 3, 17):
        other = dlmm.mixedlm("y ~ x", dd.from_pandas(frame, npartitions=n), **kw).fit(
            client=dask_client)
        assert other.engine == "nested"
        np.testing.assert_allclose(other.llf, fit.llf, rtol=1e-10)
        np.testing.assert_allclose(other.fe_params, fit.fe_params, rtol=1e-8)
        np.testing.assert_allclose(other.vcomp, fit.vcomp, rtol=1e-6)


def test_fitted_values_predictions_and_a_saved_fit_on_the_nested_engine(slopes, tmp_path):
    """The nested engine's random effects feed the fitted values and predictions as the
    grouped engine's do: statsmodels' fitted values (the model on x - 1000 has the same
    ones), in memory and from a saved and loaded fit."""
    frame, kw, fit, ref = slopes
    expected = ref.fittedvalues.to_numpy()
    np.testing.assert_allclose(np.asarray(fit.fittedvalues), expected, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(np.asarray(fit.predict(frame, random_effects=True)), expected,
                               rtol=1e-5, atol=1e-4)
    fit.save(tmp_path / "fit")
    loaded = dlmm.load_result(tmp_path / "fit")
    assert loaded.llf == fit.llf
    np.testing.assert_allclose(np.asarray(loaded.predict(frame, random_effects=True)),
                               expected, rtol=1e-5, atol=1e-4)
