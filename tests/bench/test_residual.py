"""The residual-model benchmark: its simulated data have the stated strata and AR(1)
errors, its cases read as documented, and nlme's spelling of them is the model's."""

from __future__ import annotations

import numpy as np
import pytest

from dlmm.bench.residual import _case, _model, _nlme, check_cases, strata_ar1_like


def test_strata_ar1_like_has_the_stated_errors():
    frame = strata_ar1_like(4000, 12, seed=3)
    assert list(frame.columns) == ["g", "t", "s", "x", "y"] and len(frame) == 48_000
    assert (frame.groupby("g")["t"].apply(list).map(lambda t: t == list(range(1, 13)))).all()
    np.testing.assert_allclose(frame["s"].value_counts(normalize=True)[["a", "b", "c"]],
                               [0.5, 0.3, 0.2], atol=0.01)
    # within-group differences remove the random intercept; the slope part is known
    wide = frame.pivot(index="g", columns="t", values="y").to_numpy()
    xs = frame.pivot(index="g", columns="t", values="x").to_numpy()
    delta = frame.pivot(index="g", columns="t", values="s").replace(
        {"a": 1.0, "b": 0.5, "c": 2.0}).to_numpy(dtype=float)
    b = (wide - 1 - 0.5 * xs)  # b0 + b1 x + δ e
    e = np.diff(b, axis=1)  # b1 (x_t+1 - x_t) + δ_t+1 e_t+1 - δ_t e_t
    dx = np.diff(xs, axis=1)
    d2 = delta[:, 1:] ** 2 + delta[:, :-1] ** 2
    # Var = 0.25 dx² + δ'² + δ² - 2 ρ δ δ' (unit-variance AR(1), ρ = 0.5)
    expected = 0.25 * dx**2 + d2 - 2 * 0.5 * delta[:, 1:] * delta[:, :-1]
    np.testing.assert_allclose((e**2).mean() / expected.mean(), 1.0, atol=0.03)


def test_cases_read_as_documented():
    check_cases(["orthodont", "10000x10"])
    case = _case("200x5")
    assert (case["groups"], case["per_group"], case["rows"]) == (200, 5, 1000)
    assert _model(case) == {"groups": "g", "re_formula": "~x", "residual_by": "s",
                            "residual_ar1": "t"}
    assert _nlme(case) == {"fixed": "y ~ x", "random": "~ x | g",
                           "weights": "varIdent(form = ~ 1 | s)",
                           "correlation": "corAR1(form = ~ t | g)"}
    for bad in ("nope", "0x5", "10x"):
        with pytest.raises(ValueError, match="residual case"):
            check_cases([bad])
