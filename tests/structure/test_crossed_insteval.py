"""lme4's InstEval fits reproduced through ``dlmm.mixedlm`` in statsmodels' spelling.

lme4 1.1-31 (bobyqa) REML fits of ``y ~ service + (1 | s) + (1 | d)`` and
``... + (1 | dept:service)`` (``tests/kernels/crossed/data/insteval_lme4.json``),
stated as statsmodels states crossed effects: one group (``groups=None``), no
standard random effects (``re_formula="0"``), one variance component per factor.

lme4 stops at its optimizer's tolerance, so dlmm's llf may be higher (a better
optimum); the estimates are compared at tolerances that lme4's tolerance allows.
lme4's ``vcov`` is ``scale * S_XX^{-1}``; dlmm's (statsmodels') covariance of the
fixed effects inverts the Hessian in (fixed effects, variance parameters), whose
cross terms add ~1e-3 relative here: ``bse_fe`` is compared at that level, and
``scale * S_XX^{-1}`` itself (the fixed-effects block of the Hessian) exactly.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import dlmm

DATA = Path(__file__).resolve().parents[1] / "kernels" / "crossed" / "data"
CASES = ["insteval_crossed_reml", "insteval_three_reml"]


@functools.cache
def _insteval() -> pd.DataFrame:
    return pd.read_csv(DATA / "insteval.csv.gz", dtype={"dept_service": str})


@functools.cache
def _lme4() -> dict:
    return json.loads((DATA / "insteval_lme4.json").read_text())


@functools.cache
def _fit(case: str):
    model = _lme4()[case]["model"]
    assert model["groups"] is None and model["re_formula"] == "0" and model["reml"]
    return dlmm.mixedlm(model["formula"], _insteval(), groups=None, re_formula="0",
                        vc_formula=model["vc_formula"]).fit(reml=True)


@pytest.fixture(params=CASES)
def case(request):
    return request.param, _lme4()[request.param]["expected"]


def test_takes_the_crossed_engine_and_converges(case):
    name, expected = case
    result = _fit(name)
    assert result.engine == "crossed"
    assert result.converged is True
    assert result.nobs == expected["nobs"] and result.n_groups == 1
    assert result.diagnostics["hessian_negative_definite"]
    assert result.diagnostics["scaled_grad_max"] < 1e-6


def test_llf(case):
    name, expected = case
    llf = _fit(name).llf
    assert llf >= expected["llf"] - 1e-6 * abs(expected["llf"])
    assert llf <= expected["llf"] + 1e-6 * abs(expected["llf"])  # and not a wrong value


def test_variance_components_and_scale(case):
    name, expected = case
    result = _fit(name)
    assert sorted(result.vc_names) == result.vc_names == sorted(expected["vcomp"])
    for j, comp in enumerate(result.vc_names):
        assert result.vcomp[j] == pytest.approx(expected["vcomp"][comp], rel=1e-4), comp
    assert result.scale == pytest.approx(expected["scale"], rel=1e-4)


def test_fixed_effects(case):
    name, expected = case
    result = _fit(name)
    for coef, value in expected["fe_params"].items():
        assert result.fe_params[coef] == pytest.approx(value, rel=1e-6), coef


def test_fixed_effect_standard_errors(case):
    name, expected = case
    result = _fit(name)
    names = list(expected["bse_fe"])
    lme4 = np.array([expected["bse_fe"][c] for c in names])
    got = result.bse_fe[names].to_numpy()
    np.testing.assert_allclose(got, lme4, rtol=2e-3, atol=0)
    np.testing.assert_allclose(got, lme4, rtol=0, atol=1e-4)
    # lme4's vcov, scale * S_XX^{-1}, from the exact fixed-effects block of the Hessian.
    p = len(names)
    block = np.asarray(result.hessian)[:p, :p]
    order = [list(result.fe_params.index).index(c) for c in names]
    vcov = np.linalg.inv(-block)[np.ix_(order, order)]
    np.testing.assert_allclose(np.sqrt(np.diag(vcov)), lme4, rtol=1e-5)


def test_conditional_modes(case):
    name, _ = case
    result = _fit(name)
    reference = _lme4()[name]["random_effects"]
    table = result.vc_effects_table()
    for comp in result.vc_names:
        rows = table[table["component"] == comp]
        levels = rows["column"].str.extract(r"^C\([\w.]+\)\[(.*)\]$")[0]
        want = levels.map(reference[comp]).to_numpy(dtype=float)
        assert not np.isnan(want).any() and len(want) == len(reference[comp])
        np.testing.assert_allclose(rows["effect"].to_numpy(), want, rtol=0, atol=1e-3)
        assert np.all(rows["variance"] > 0)


#: Gradients (evaluations with the Schur part's inverse) and values (without) a fit may
#: take: the quasi-Newton start (``dlmm.optimize.qnewton``) and the polish's forward
#: differences. Before them, L-BFGS-B and central differences took 12 and 18 gradients;
#: with a Hessian of values at the start, 7 + 3 and 12 + 6; from the average
#: information of the start's own evaluation (:mod:`dlmm.kernels.crossed.information`),
#: no values.
EVALUATIONS = {"insteval_crossed_reml": (7, 0), "insteval_three_reml": (10, 0)}


def test_gradients_and_values_counted(case):
    name, _ = case
    result = _fit(name)
    log = result.optimization_log.to_frame()
    values = int(log["grad_norm"].isna().sum())
    gradients = result.timings["engine_evaluations"] - values
    most, expected_values = EVALUATIONS[name]
    assert result.mle_retvals["methods"][0]["method"] == "qnewton"
    assert gradients <= most and values == expected_values, (gradients, values)
