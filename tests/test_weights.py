"""Precision weights (lme4's ``weights=``; :mod:`dlmm.spec.residual`) on every engine.

lme4's numbers (``tests/reference/weights/lme4_weights.R`` made them, with the data
and the seeded Gamma weights in the CSVs beside it): the log-likelihood (with
lme4's ½ Σ log w), fixed effects, VarCorr and lmerTest's Satterthwaite standard
errors and df, REML and ML, on the grouped engine (sleepstudy, ``(Days | Subject)``
and ``(1 | Subject)``), the nested engine (Pastes, ``(1 | batch/cask)``) and the
crossed engine (Penicillin, ``(1 | plate) + (1 | sample)``); and models of terms
(``lme4_weights_terms.R``) on the nested and crossed terms engines.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import dlmm
import dlmm.structure.nested_grouped as nested_grouped
from dlmm.exceptions import InputError

HERE = Path(__file__).resolve().parent / "reference" / "weights"
REF = json.loads((HERE / "lme4_weights.json").read_text())

CASES = {
    # case: (csv, lmer formula, engine)
    "sleep_slope": ("sleepstudy_w.csv", "Reaction ~ Days + (Days | Subject)", "grouped"),
    "sleep_intercept": ("sleepstudy_w.csv", "Reaction ~ Days + (1 | Subject)", "grouped"),
    "pastes_nested": ("pastes_w.csv", "strength ~ 1 + (1 | batch/cask)", "nested"),
    "penicillin_crossed": ("penicillin_w.csv", "diameter ~ 1 + (1 | plate) + (1 | sample)",
                           "crossed"),
}


def data(csv: str) -> pd.DataFrame:
    return pd.read_csv(HERE / csv, dtype={"Subject": str})


def check_lme4(result, ref: dict) -> None:
    """The fit against lme4's: llf 1e-6 relative, fixed effects 1e-6, variances 1e-4,
    Satterthwaite SEs 1e-3 and df 1e-3."""
    assert result.converged
    np.testing.assert_allclose(result.llf, ref["logLik"], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(result.fe_params), list(ref["fixef"].values()),
                               rtol=1e-6)
    vc = result.varcorr(long=True)
    np.testing.assert_allclose(vc["vcov"].to_numpy(), [r["vcov"] for r in ref["varcorr"]],
                               rtol=1e-4, atol=1e-4 * abs(ref["varcorr"][0]["vcov"]))
    assert list(vc["grp"]) == [r["grp"] for r in ref["varcorr"]]
    np.testing.assert_allclose(result.scale, ref["sigma"] ** 2, rtol=1e-4)
    # lme4's theta, in lme4's order of the terms (statsmodels' spelling underneath)
    np.testing.assert_allclose(result.theta.to_numpy(), ref["theta"], rtol=1e-4, atol=1e-5)
    table = result.satterthwaite()
    np.testing.assert_allclose(table["Std. Error"].to_numpy(), list(ref["se"].values()),
                               rtol=1e-3)
    np.testing.assert_allclose(table["df"].to_numpy(), list(ref["df"].values()), rtol=1e-3)


@pytest.mark.parametrize("reml", [True, False], ids=["REML", "ML"])
@pytest.mark.parametrize("case", list(CASES))
def test_lme4_agreement(case, reml, monkeypatch):
    csv, formula, engine = CASES[case]
    monkeypatch.setattr(nested_grouped, "NESTED_MIN_LEVELS", 1)  # Pastes: 30 casks
    result = dlmm.lmer(formula, data(csv), weights="w", REML=reml)
    assert result.engine == engine
    check_lme4(result, REF[case]["REML" if reml else "ML"])


def test_arrays_api_weights():
    """``MixedLM(endog, exog, groups, exog_re, weights=...)``: lme4's fit."""
    d = data("sleepstudy_w.csv")
    exog = np.column_stack([np.ones(len(d)), d["Days"]])
    model = dlmm.MixedLM(d["Reaction"].to_numpy(), exog, d["Subject"].to_numpy(),
                         exog_re=exog, weights=d["w"].to_numpy())
    result = model.fit(reml=True)
    ref = REF["sleep_slope"]["REML"]
    np.testing.assert_allclose(result.llf, ref["logLik"], rtol=1e-6)
    np.testing.assert_allclose(result.fe_params, list(ref["fixef"].values()), rtol=1e-6)
    np.testing.assert_allclose(result.scale, ref["sigma"] ** 2, rtol=1e-4)


def test_unit_weights_are_the_unweighted_model():
    """All weights 1: the unweighted fit (statsmodels' own numbers for sleepstudy)."""
    d = data("sleepstudy_w.csv").assign(one=1.0)
    plain = dlmm.mixedlm("Reaction ~ Days", d, groups="Subject", re_formula="~Days").fit()
    ones = dlmm.mixedlm("Reaction ~ Days", d, groups="Subject", re_formula="~Days",
                        weights="one").fit()
    np.testing.assert_allclose(ones.llf, -871.8141, atol=5e-5)  # lme4's REML logLik
    np.testing.assert_allclose(ones.llf, plain.llf, rtol=1e-10)
    np.testing.assert_allclose(ones.fe_params, plain.fe_params, rtol=1e-8)


@pytest.mark.parametrize("value, what", [(0.0, "zero or negative"), (-1.0, "zero or negative")])
def test_nonpositive_weights_refused(value, what):
    d = data("sleepstudy_w.csv")
    d.loc[[3, 7, 11], "w"] = value
    with pytest.raises(InputError) as err:
        dlmm.mixedlm("Reaction ~ Days", d, groups="Subject", weights="w").fit()
    message = str(err.value)
    assert "\n" not in message and "'w'" in message and "3 " in message and what in message


def test_missing_and_infinite_weights_named():
    d = data("sleepstudy_w.csv")
    d.loc[[1, 2], "w"] = np.nan
    with pytest.raises(InputError, match=r"column 'w' has 2 missing values"):
        dlmm.mixedlm("Reaction ~ Days", d, groups="Subject", weights="w").fit()
    d.loc[[1, 2], "w"] = [np.inf, 1.0]
    with pytest.raises(InputError, match=r"'w' has 1 infinite"):
        dlmm.mixedlm("Reaction ~ Days", d, groups="Subject", weights="w").fit()


def test_unknown_weights_column():
    d = data("sleepstudy_w.csv")
    with pytest.raises(InputError, match=r"weights column 'wt' is not in the data"):
        dlmm.mixedlm("Reaction ~ Days", d, groups="Subject", weights="wt").fit()


TERMS_REF = json.loads((HERE / "lme4_weights_terms.json").read_text())


@pytest.mark.parametrize("reml", [True, False], ids=["REML", "ML"])
@pytest.mark.parametrize("case, engine", [("slopes2_nested", "nested"),
                                          ("beside_crossed", "crossed")])
def test_terms_models_take_weights(case, engine, reml):
    """Models of terms statsmodels' spelling cannot state, weighted (lme4's numbers,
    ``tests/reference/weights/lme4_weights_terms.R``): slopes at two nested levels, and
    items with a correlated slope crossed with classes in schools."""
    spec = TERMS_REF[case]
    ref = spec["REML" if reml else "ML"]
    frame = pd.read_csv(HERE / spec["csv"], dtype={c: str for c in spec["labels"]})
    result = dlmm.lmer(spec["formula"], frame, weights="w", REML=reml)
    assert result.engine == engine and result.converged
    np.testing.assert_allclose(result.llf, ref["logLik"], rtol=1e-6)
    np.testing.assert_allclose(result.fe_params.to_numpy(), list(ref["fixef"].values()),
                               rtol=1e-6)
    assert list(result.theta.index) == ref["theta_names"]
    np.testing.assert_allclose(result.theta.to_numpy(), ref["theta"], rtol=1e-4, atol=1e-5)
    vc = result.varcorr()
    np.testing.assert_allclose(vc["vcov"].to_numpy(), [r["vcov"] for r in ref["varcorr"]],
                               rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(result.scale, ref["sigma"] ** 2, rtol=1e-4)
    table = result.satterthwaite()
    np.testing.assert_allclose(table["Std. Error"].to_numpy(), list(ref["se"].values()),
                               rtol=1e-3)
    np.testing.assert_allclose(table["df"].to_numpy(), list(ref["df"].values()), rtol=1e-3)
    np.testing.assert_allclose(result.fittedvalues.to_numpy()[:5], ref["fitted_head"],
                               rtol=1e-5)


def test_terms_models_refuse_nonpositive_weights():
    spec = TERMS_REF["slopes2_nested"]
    frame = pd.read_csv(HERE / spec["csv"], dtype={c: str for c in spec["labels"]})
    frame.loc[[2, 5], "w"] = 0.0
    with pytest.raises(InputError) as err:
        dlmm.lmer(spec["formula"], frame, weights="w")
    assert "\n" not in str(err.value) and "'w'" in str(err.value) and "2 " in str(err.value)


# -- the dense brute-force likelihood on a small random design -------------------------

N_ROWS, N_G, N_H, N_F = 240, 20, 4, 6


@pytest.fixture(scope="module")
def small() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    d = pd.DataFrame({"g": rng.integers(0, N_G, N_ROWS), "h": rng.integers(0, N_H, N_ROWS),
                      "f": rng.integers(0, N_F, N_ROWS), "x": rng.normal(size=N_ROWS),
                      "w": rng.gamma(2.0, 0.5, N_ROWS) + 0.05})
    d["y"] = (1 + 0.5 * d.x + rng.normal(size=N_G)[d.g] + rng.normal(size=(N_G, N_H))[d.g, d.h]
              + rng.normal(size=N_F)[d.f] + rng.normal(size=N_ROWS) / np.sqrt(d.w))
    return d


def _indicators(codes: np.ndarray, k: int) -> np.ndarray:
    out = np.zeros((codes.shape[0], k))
    out[np.arange(codes.shape[0]), codes] = 1.0
    return out


def _dense_llf(result, d: pd.DataFrame, blocks, reml: bool) -> float:
    """The (RE)ML log-likelihood of y ~ N(X beta, scale W^-1 + sum Z C Z') at the fit's
    estimates, from the dense n x n covariance."""
    y, x = d.y.to_numpy(), np.column_stack([np.ones(len(d)), d.x])
    cov = np.diag(result.scale / d.w.to_numpy())
    for z, c in blocks:
        cov = cov + z @ c @ z.T
    resid = y - x @ np.asarray(result.fe_params)
    inv = np.linalg.inv(cov)
    value = np.linalg.slogdet(cov)[1] + resid @ inv @ resid
    if reml:
        return -0.5 * (value + np.linalg.slogdet(x.T @ inv @ x)[1]
                       + (len(d) - 2) * np.log(2 * np.pi))
    return -0.5 * (value + len(d) * np.log(2 * np.pi))


DENSE = {  # case: (model options, engine)
    "slope": (dict(groups="g", re_formula="~x"), "grouped"),
    "components": (dict(groups="g", re_formula="1", vc_formula={"h": "0 + C(h)"}), "grouped"),
    "nested": (dict(groups="g", re_formula="1", vc_formula={"h": "0 + C(h)"}), "nested"),
    "crossed": (dict(groups=None, re_formula="0",
                     vc_formula={"g": "0 + C(g)", "f": "0 + C(f)"}), "crossed"),
}


@pytest.mark.parametrize("reml", [True, False], ids=["REML", "ML"])
@pytest.mark.parametrize("case", list(DENSE))
def test_dense_likelihood(small, case, reml, monkeypatch):
    options, engine = DENSE[case]
    if engine == "nested":
        monkeypatch.setattr(nested_grouped, "NESTED_MIN_LEVELS", 1)
    result = dlmm.mixedlm("y ~ x", small, weights="w", **options).fit(reml=reml)
    assert result.engine == engine and result.converged
    g = _indicators(small.g.to_numpy(), N_G)
    if case == "slope":
        blocks = [(np.hstack([g, g * small.x.to_numpy()[:, None]]),
                   np.kron(np.asarray(result.cov_re), np.eye(N_G)))]
    elif case in ("components", "nested"):
        gh = _indicators((small.g * N_H + small.h).to_numpy(), N_G * N_H)
        blocks = [(g, np.asarray(result.cov_re)[0, 0] * np.eye(N_G)),
                  (gh, result.vcomp[0] * np.eye(N_G * N_H))]
    else:
        names = list(result.model.spec.vc_names)
        blocks = [(g, result.vcomp[names.index("g")] * np.eye(N_G)),
                  (_indicators(small.f.to_numpy(), N_F),
                   result.vcomp[names.index("f")] * np.eye(N_F))]
    np.testing.assert_allclose(result.llf, _dense_llf(result, small, blocks, reml), rtol=1e-10)


@pytest.mark.parametrize("reml", [True, False], ids=["REML", "ML"])
def test_gradient_against_finite_differences(reml):
    d = data("sleepstudy_w.csv")
    model = dlmm.mixedlm("Reaction ~ Days", d, groups="Subject", re_formula="~Days",
                         weights="w")
    model.reml = reml
    theta = np.array([0.94, -0.008, 0.27])  # packed square-root parameters, off the optimum
    h = 1e-6
    differences = [(model.loglike(theta + h * e) - model.loglike(theta - h * e)) / (2 * h)
                   for e in np.eye(3)]
    np.testing.assert_allclose(model.score(theta), differences, rtol=1e-6)


def test_terms_refit_keeps_the_weights():
    """``refit`` of a weighted model of terms to its own response is lme4's weighted fit."""
    spec = TERMS_REF["slopes2_nested"]
    frame = pd.read_csv(HERE / spec["csv"], dtype={c: str for c in spec["labels"]})
    result = dlmm.lmer(spec["formula"], frame, weights="w", REML=False)
    again = result.refit("y")
    assert again.weights == "w"
    np.testing.assert_allclose(again.llf, spec["ML"]["logLik"], rtol=1e-6)
