"""The residual parameters against nlme: a variance per stratum (``residual_by``, nlme's
``varIdent``) and AR(1) errors within groups (``residual_ar1``, nlme's ``corAR1``).

nlme's numbers come from ``tests/reference/residual/nlme_varident.R`` and
``nlme_ar1.R`` (Debian's r-cran-nlme), REML and ML: Orthodont with a residual variance
per Sex, a simulated design of 150 groups whose rows fall in three strata at random;
Ovary with AR(1) errors, Orthodont with both, and a simulated AR(1) design whose rows
are in shuffled order. Checked: the
log-likelihood, fixed effects and their standard errors, the random effects'
covariance and conditional modes, every stratum's residual variance, and the
standard error of log δ against the curvature of nlme's profile log-likelihood.
Then the saved result, the summary, the simulated responses and refit.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import dlmm

HERE = Path(__file__).resolve().parents[1] / "reference" / "residual"
REF = json.loads((HERE / "nlme_varident.json").read_text())
CASES = {
    "orthodont": ("orthodont.csv", "distance ~ age",
                  {"groups": "Subject", "re_formula": "~age", "residual_by": "Sex"}),
    "sim_strata": ("sim_strata.csv", "y ~ x",
                   {"groups": "g", "re_formula": "~x", "residual_by": "s"}),
}


def data(csv: str) -> pd.DataFrame:
    return pd.read_csv(HERE / csv)


@pytest.fixture(scope="module")
def fits():
    out = {}
    for case, (csv, formula, kw) in CASES.items():
        for reml in (True, False):
            out[case, reml] = dlmm.mixedlm(formula, data(csv), **kw).fit(reml=reml)
    return out


@pytest.mark.parametrize("reml", [True, False], ids=["REML", "ML"])
@pytest.mark.parametrize("case", list(CASES))
def test_nlme_agreement(fits, case, reml):
    result = fits[case, reml]
    ref = REF[case]["REML" if reml else "ML"]
    assert result.converged
    np.testing.assert_allclose(result.llf, ref["logLik"], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(result.fe_params), list(ref["fixef"].values()),
                               rtol=1e-6)
    table = result.satterthwaite()  # lme4's standard errors, σ² (X'V⁻¹X)⁻¹
    se = np.array(list(ref["se"].values()))
    if not reml:  # nlme's ML table scales σ² by N / (N - p); lme4's does not
        se *= np.sqrt((result.nobs - se.size) / result.nobs)
    np.testing.assert_allclose(table["Std. Error"].to_numpy(), se, rtol=1e-3)
    np.testing.assert_allclose(np.asarray(result.cov_re), ref["cov_re"], rtol=1e-4,
                               atol=1e-4 * ref["cov_re"][0][0])
    strata = result.residual
    delta = ref["delta"]
    reference_level = next(k for k, v in delta.items() if v == 1)
    assert strata.levels[0] == reference_level and sorted(strata.levels) == sorted(delta)
    variances = {k: ref["sigma"] ** 2 * v**2 for k, v in delta.items()}
    np.testing.assert_allclose(strata.variances, [variances[k] for k in strata.levels],
                               rtol=1e-4)
    np.testing.assert_allclose(result.scale, ref["sigma"] ** 2, rtol=1e-4)
    np.testing.assert_allclose(strata.delta, [delta[k] for k in strata.levels], rtol=1e-4)
    table = result.varcorr(long=True)  # the residual's rows: one per stratum
    residual_rows = table[table["grp"] == "Residual"]
    assert list(residual_rows["var1"]) == [f"{strata.column}={k}" for k in strata.levels]
    np.testing.assert_allclose(residual_rows["vcov"], [variances[k] for k in strata.levels],
                               rtol=1e-4)
    # standard error of log δ: the curvature of nlme's profile log-likelihood in log δ
    # (nlme's own apVar is about 1% off it on the simulated design)
    se_log = strata.delta_se[1:] / strata.delta[1:]
    np.testing.assert_allclose(
        se_log, [ref["se_log_delta_profile"][k] for k in strata.levels[1:]], rtol=1e-3)
    modes = result.random_effects
    ours = np.array([np.asarray(modes[g]) for g in ref["ranef_groups"]])
    np.testing.assert_allclose(ours, ref["ranef"], rtol=1e-3, atol=1e-3 * np.abs(ours).max())


AR1 = json.loads((HERE / "nlme_ar1.json").read_text())


def _orthodont_t() -> pd.DataFrame:
    return data("orthodont.csv").assign(t=lambda f: f["age"] // 2)


AR1_CASES = {
    "ovary": (lambda: data("ovary.csv").astype({"Mare": str}), "follicles ~ s1 + c1",
              {"groups": "Mare", "re_formula": "1", "residual_ar1": "t"}),
    "orthodont_ar1": (_orthodont_t, "distance ~ age",
                      {"groups": "Subject", "re_formula": "1", "residual_by": "Sex",
                       "residual_ar1": "t"}),
    "sim_ar1": (lambda: data("sim_ar1.csv"), "y ~ x",
                {"groups": "g", "re_formula": "~x", "residual_ar1": "t"}),
}


@pytest.mark.parametrize("reml", [True, False], ids=["REML", "ML"])
@pytest.mark.parametrize("case", list(AR1_CASES))
def test_nlme_ar1_agreement(case, reml):
    frame, formula, kw = AR1_CASES[case]
    result = dlmm.mixedlm(formula, frame(), **kw).fit(reml=reml)
    ref = AR1[case]["REML" if reml else "ML"]
    assert result.converged
    np.testing.assert_allclose(result.llf, ref["logLik"], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(result.fe_params), list(ref["fixef"].values()),
                               rtol=1e-6)
    se = np.array(list(ref["se"].values()))
    if not reml:  # nlme's ML table scales σ² by N / (N - p); lme4's does not
        se *= np.sqrt((result.nobs - se.size) / result.nobs)
    np.testing.assert_allclose(result.satterthwaite()["Std. Error"].to_numpy(), se, rtol=1e-3)
    np.testing.assert_allclose(np.asarray(result.cov_re), ref["cov_re"], rtol=1e-4,
                               atol=1e-4 * ref["cov_re"][0][0])
    res = result.residual
    assert res.time_column == "t"
    np.testing.assert_allclose(res.rho, ref["rho"], rtol=1e-4)
    np.testing.assert_allclose(result.scale, ref["sigma"] ** 2, rtol=1e-4)
    # standard errors: the curvature of nlme's profile log-likelihood in atanh ρ, log δ
    np.testing.assert_allclose(res.rho_se / (1 - res.rho**2), ref["se_atanh_rho"], rtol=1e-3)
    if "residual_by" in kw:
        delta = ref["delta"]
        np.testing.assert_allclose(res.delta, [delta[k] for k in res.levels], rtol=1e-4)
        np.testing.assert_allclose(res.delta_se[1:] / res.delta[1:],
                                   [ref["se_log_delta"][k] for k in res.levels[1:]], rtol=1e-3)
    modes = result.random_effects
    ours = np.array([np.asarray(modes[str(g)]) for g in ref["ranef_groups"]])
    np.testing.assert_allclose(ours.reshape(len(ref["ranef"]), -1), ref["ranef"], rtol=1e-3,
                               atol=1e-3 * np.abs(ours).max())


def test_saved_result_and_summary(fits, tmp_path):
    result = fits["orthodont", True]
    result.save(tmp_path / "fit")
    loaded = dlmm.load_result(tmp_path / "fit")
    assert loaded.residual.levels == result.residual.levels
    np.testing.assert_array_equal(loaded.residual.delta, result.residual.delta)
    np.testing.assert_array_equal(loaded.residual.delta_se,
                                  result.residual.delta_se)
    text = str(loaded.summary())
    assert "Residual by:" in text and "Scale Male:" in text and "2.7069" in text


def test_saved_ar1_result_and_summary(tmp_path):
    frame, formula, kw = AR1_CASES["ovary"]
    result = dlmm.mixedlm(formula, frame(), **kw).fit()
    result.save(tmp_path / "fit")
    loaded = dlmm.load_result(tmp_path / "fit")
    assert loaded.residual.time_column == "t" and loaded.residual.column is None
    assert loaded.residual.rho == result.residual.rho
    assert loaded.residual.rho_se == result.residual.rho_se
    assert re.search(rf"AR\(1\) in t: +{result.residual.rho:.4f} \(", str(loaded.summary()))


def test_simulated_ar1_errors():
    """Rows of a mare k visits apart: correlation (τ + ρ^k σ²) / (τ + σ²) across draws."""
    frame, formula, kw = AR1_CASES["ovary"]
    data = frame()
    result = dlmm.mixedlm(formula, data, **kw).fit()
    sims = result.simulate(n=3000, seed=1).to_numpy()
    tau, s2, rho = float(np.asarray(result.cov_re)[0, 0]), result.scale, result.residual.rho
    assert np.allclose(sims.var(axis=1).mean() / (tau + s2), 1.0, atol=0.03)
    order = data.sort_values(["Mare", "t"]).index.to_numpy()
    mare = data["Mare"].to_numpy()[order]
    centred = sims[order] - sims[order].mean(axis=1, keepdims=True)
    unit = centred / centred.std(axis=1, keepdims=True)
    for lag in (1, 2, 5):
        same = mare[lag:] == mare[:-lag]
        corr = (unit[lag:][same] * unit[:-lag][same]).mean()
        np.testing.assert_allclose(corr, (tau + rho**lag * s2) / (tau + s2), atol=0.02)


def test_simulated_residual_variance_by_stratum(fits):
    """Each row's simulated variance is z' cov_re z + its stratum's residual variance."""
    result = fits["orthodont", True]
    frame = data("orthodont.csv")
    sims = result.simulate(n=4000, seed=3).to_numpy()
    z = np.column_stack([np.ones(len(frame)), frame["age"]])
    by_level = dict(zip(result.residual.levels, result.residual.variances))
    expected = np.einsum("ra,ab,rb->r", z, np.asarray(result.cov_re), z) + \
        frame["Sex"].map(by_level).to_numpy()
    ratio = sims.var(axis=1) / expected
    for level in ("Male", "Female"):
        np.testing.assert_allclose(ratio[(frame["Sex"] == level).to_numpy()].mean(), 1.0,
                                   atol=0.03)


def test_refit_keeps_the_strata(fits):
    result = fits["orthodont", True]
    frame = data("orthodont.csv")
    again = result.refit(frame["distance"].to_numpy())
    np.testing.assert_allclose(again.llf, result.llf, rtol=1e-10)
    assert again.residual.levels == result.residual.levels


def test_profile_intervals_maximize_over_delta_and_rho():
    """A profile interval's end for a fixed effect is where the model with that
    coefficient held (the response less it, refitted: δ and ρ re-estimated) loses the
    chi-square(1) quantile of deviance; statsmodels' profile_re peaks at the fit."""
    frame = _orthodont_t()
    kw = {"groups": "Subject", "re_formula": "1", "residual_by": "Sex", "residual_ar1": "t"}
    result = dlmm.mixedlm("distance ~ age", frame, **kw).fit(reml=False)
    intervals = result.profile_conf_int()
    for end in ("lower", "upper"):
        value = intervals.loc["age", end]
        held = dlmm.mixedlm("y ~ 1", frame.assign(y=frame["distance"] - value * frame["age"]),
                            **kw).fit(reml=False)
        np.testing.assert_allclose(2 * (result.llf - held.llf), 3.841458820694124, rtol=1e-6)
    curve = result.profile_re(0, "re", num_low=2, dist_low=1.0, num_high=2, dist_high=1.0)
    assert np.argmax(curve[:, 1]) == 2
    np.testing.assert_allclose(curve[2, 1], result.llf, rtol=1e-10)
