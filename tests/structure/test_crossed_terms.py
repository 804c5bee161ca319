"""The crossed engine on lme4's terms (:mod:`dlmm.structure.crossed_terms`), checked
against a dense brute-force likelihood and finite differences.

Small random designs of each new shape (correlated slopes on a crossed factor, ``||``,
two blocks on one factor, three crossed factors, a crossed factor beside a nested
one), unbalanced, with a level seen in one row only. The brute force builds
``V = sigma^2 (I + sum_t (same level of t's factor) * (C_t Psi_t C_t'))`` row by row
from the data (``C_t`` the term's columns computed here, ``Psi_t = Lambda_t Lambda_t'``
from lme4's θ filled column by column) and profiles out ``beta`` and ``sigma^2`` in
closed form: nothing of dlmm's but the value it is compared with.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import dlmm
from dlmm.exceptions import InputError


def _data(seed: int = 0, n: int = 170) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    d = pd.DataFrame({
        "a": [f"a{k:02d}" for k in rng.integers(0, 11, n)],
        "b": [f"b{k}" for k in rng.integers(0, 7, n)],
        "c": [f"c{k}" for k in rng.integers(0, 6, n)],
        "k": [f"k{k}" for k in rng.integers(0, 3, n)],  # classes: labels repeat in c
        "x": rng.normal(size=n),
        "z": rng.normal(size=n),
    })
    d.loc[0, "a"] = "a_once"  # a level seen in one row
    codes = [pd.factorize(d[list(f)].astype(str).agg(":".join, axis=1))[0]
             for f in (["a"], ["a"], ["a"], ["b"], ["c"], ["c", "k"])]
    effects = [rng.normal(scale=s, size=code.max() + 1)[code]
               for s, code in zip((1.0, 0.5, 0.5, 0.7, 1.0, 0.5), codes)]
    d["y"] = (1 + 0.5 * d["x"] + effects[0] + effects[1] * d["x"] + effects[2] * d["z"]
              + sum(effects[3:]) + rng.normal(size=n))
    return d


#: formula, then per term as written: (factor columns, term columns, θ's column-major
#: lower triangle filled, "diag" for a one-column term), and a θ to evaluate at
SHAPES = {
    "correlated": ("y ~ x + (1 + x | a) + (1 | b)",
                   [(("a",), ["1", "x"]), (("b",), ["1"])],
                   [0.8, -0.3, 0.5, 0.6]),
    "diagonal": ("y ~ x + (x || a) + (1 | b)",
                 [(("a",), ["1"]), (("a",), ["x"]), (("b",), ["1"])],
                 [0.9, 0.4, 0.7]),
    "two_blocks": ("y ~ x + z + (1 | a) + (0 + x + z | a) + (1 | b)",
                   [(("a",), ["1"]), (("a",), ["x", "z"]), (("b",), ["1"])],
                   [0.8, 0.5, 0.2, 0.3, 0.6]),
    "three_factors": ("y ~ x + (1 + x | a) + (x | b) + (1 | c)",
                      [(("a",), ["1", "x"]), (("b",), ["1", "x"]), (("c",), ["1"])],
                      [0.8, 0.2, 0.4, 0.5, -0.3, 0.3, 0.7]),
    "beside_nested": ("y ~ x + (1 + x | a) + (1 | c/k)",
                      [(("a",), ["1", "x"]), (("c",), ["1"]), (("c", "k"), ["1"])],
                      [0.7, 0.3, 0.4, 0.6, 0.5]),
}


def _lower(values, k: int) -> np.ndarray:
    lam = np.zeros((k, k))
    pos = 0
    for j in range(k):  # column-major, as lme4
        for i in range(j, k):
            lam[i, j] = values[pos]
            pos += 1
    return lam


def brute_force(data: pd.DataFrame, shape: str, theta: np.ndarray, reml: bool) -> float:
    """The profiled (RE)ML log-likelihood at lme4's θ, by dense algebra on the rows."""
    formula, terms, _ = SHAPES[shape]
    fixed = formula.split("~")[1].split("+ (")[0].split("+")
    columns = {"1": np.ones(len(data)), "x": data["x"].to_numpy(), "z": data["z"].to_numpy()}
    x = np.column_stack([columns[c.strip()] for c in ["1"] + fixed])
    y = data["y"].to_numpy()
    n, p = x.shape
    v = np.eye(n)
    pos = 0
    for factor, cols in terms:
        k = len(cols)
        m = k * (k + 1) // 2
        lam = _lower(theta[pos:pos + m], k)
        pos += m
        label = data[list(factor)].astype(str).agg(":".join, axis=1).to_numpy()
        same = label[:, None] == label[None, :]
        c = np.column_stack([columns[col] for col in cols])
        v += same * (c @ lam @ lam.T @ c.T)
    vinv = np.linalg.inv(v)
    xvx = x.T @ vinv @ x
    beta = np.linalg.solve(xvx, x.T @ vinv @ y)
    r = y - x @ beta
    fac = n - p if reml else n
    sigma2 = r @ vinv @ r / fac
    llf = -0.5 * (np.linalg.slogdet(v)[1] + fac * np.log(2 * np.pi * sigma2) + fac)
    if reml:
        llf -= 0.5 * np.linalg.slogdet(xvx)[1]
    return float(llf)


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return _data()


@pytest.fixture(scope="module")
def models(data) -> dict:
    out = {}
    for shape, (formula, _, _) in SHAPES.items():
        model = dlmm.lmer(formula, data, fit=False)
        model._ensure_stats()
        assert model._stats.engine_name == "crossed"
        out[shape] = model
    return out


@pytest.mark.parametrize("reml", [True, False], ids=["reml", "ml"])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_profiled_likelihood_is_the_dense_one(models, data, shape, reml):
    model = models[shape]
    theta = np.asarray(SHAPES[shape][2], dtype=float)
    assert model.engine_layout.n_theta == theta.size
    value = model.profiled(theta, reml=reml)
    np.testing.assert_allclose(value.llf, brute_force(data, shape, theta, reml), rtol=1e-10)
    # at the boundary too (a zero variance of one factor)
    theta0 = theta.copy()
    theta0[-1] = 0.0
    np.testing.assert_allclose(model.profiled(theta0, reml=reml).llf,
                               brute_force(data, shape, theta0, reml), rtol=1e-10)


@pytest.mark.parametrize("reml", [True, False], ids=["reml", "ml"])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_gradient_is_the_finite_differences(models, shape, reml):
    model = models[shape]
    theta = np.asarray(SHAPES[shape][2], dtype=float)
    grad = model.profiled(theta, reml=reml).grad_theta
    h = 1e-6
    fd = np.array([(model.profiled(theta + h * e, reml=reml).llf
                    - model.profiled(theta - h * e, reml=reml).llf) / (2 * h)
                   for e in np.eye(theta.size)])
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-6 * np.abs(fd).max())


def test_levels_are_those_of_the_data(models, data):
    model = models["beside_nested"]
    stats = model._stats
    levels = dict(zip((":".join(f) for f in model.engine_layout.levels), stats.n_nodes))
    assert levels == {"a": data["a"].nunique(), "c": data["c"].nunique(),
                      "c:k": len(data.groupby(["c", "k"]))}


def test_a_dense_part_too_large_is_refused_in_one_line(data, monkeypatch):
    """The factors after the largest one form the dense part; over the limit the fit is
    refused after the pass, naming them and their sizes (the limit lowered here)."""
    from dlmm.structure import crossed_terms

    monkeypatch.setattr(crossed_terms, "MAX_DENSE_EFFECTS", 5)
    with pytest.raises(InputError, match=r"^the crossed engine keeps the factors after the "
                       r"largest one \('b' \(7 levels x 1 effects\)\) as a dense 7 x 7 "
                       r"matrix; at most 5 ") as caught:
        dlmm.lmer("y ~ x + (1 + x | a) + (1 | b)", data)
    assert "\n" not in str(caught.value)


def test_missing_values_dropped_and_collinear_columns(data):
    """Rows with a missing response, slope or grouping value are dropped (``missing=
    "drop"``), and a fixed column that repeats another is dropped (``drop_collinear``):
    the fit's llf is the dense one of the complete rows at the fit's θ, its maximum."""
    holes = data.assign(x2=2.0 * data["x"])
    holes.loc[[3, 10], "y"] = np.nan
    holes.loc[[5], "x"] = np.nan
    holes.loc[[7], "b"] = None
    fit = dlmm.lmer("y ~ x + x2 + (1 + x | a) + (1 | b)", holes, missing="drop",
                    drop_collinear=True)
    assert fit.engine == "crossed" and fit.converged and fit.nobs == len(data) - 4
    assert list(fit.fe_params.index) == ["Intercept", "x"]
    complete = data.drop(index=[3, 10, 5, 7])
    theta = fit.model.engine_theta(fit.theta.to_numpy())
    np.testing.assert_allclose(fit.llf, brute_force(complete, "correlated", theta, True),
                               rtol=1e-10)
    h = 1e-4
    for e in np.eye(theta.size):  # a maximum of the dense likelihood
        for step in (h, -h):
            assert brute_force(complete, "correlated", theta + step * e, True) < fit.llf
