"""The one objective object: statsmodels' sqrt vector against statsmodels' own likelihood,
lme4's θ of a list of terms against a dense brute-force likelihood, exact Hessian against
differences of the gradient."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from statsmodels.regression.mixed_linear_model import MixedLM as SmMixedLM

import dlmm
from dlmm.objective.objective import ProfiledObjective
from dlmm.objective.params import SqrtMap, TermsMap
from dlmm.terms_model import TermsMixedLM


def _central(fun, x, h=1e-5):
    x = np.asarray(x, dtype=float)
    out = []
    for j in range(x.size):
        e = np.zeros_like(x)
        e[j] = h
        out.append((np.asarray(fun(x + e)) - np.asarray(fun(x - e))) / (2 * h))
    return np.array(out)


@pytest.fixture(scope="module")
def grouped() -> pd.DataFrame:
    rng = np.random.default_rng(71)
    g = np.repeat(np.arange(40), 6)
    x = rng.normal(size=g.size)
    effects = rng.normal(size=(40, 2)) * [1.0, 0.4]
    y = 1.0 + 0.5 * x + effects[g, 0] + effects[g, 1] * x + rng.normal(size=g.size)
    return pd.DataFrame({"y": y, "x": x, "g": g})


@pytest.mark.parametrize("reml", [True, False])
def test_sqrt_objective_is_statsmodels_loglike_and_score(grouped, reml):
    model = dlmm.mixedlm("y ~ x", grouped, groups="g", re_formula="~x")
    objective = model.objective(reml=reml)
    assert isinstance(objective, ProfiledObjective)
    assert isinstance(objective.theta_map, SqrtMap)
    sm = SmMixedLM.from_formula("y ~ x", grouped, groups="g", re_formula="~x")
    # as statsmodels' fit sets them
    sm.reml, sm.cov_pen, sm.fe_pen, sm._freepat = reml, None, None, None
    for theta in ([0.9, 0.2, 0.5], [1.3, -0.4, 0.1]):
        llf, grad = objective(np.asarray(theta))
        np.testing.assert_allclose(llf, sm.loglike(np.asarray(theta)), rtol=1e-10)
        np.testing.assert_allclose(grad, sm.score(np.asarray(theta)), rtol=1e-7, atol=1e-8)


def test_exact_hessian_is_the_differences_of_the_gradient(grouped):
    objective = dlmm.mixedlm("y ~ x", grouped, groups="g", re_formula="~x").objective()
    assert objective.has_hessian
    theta = np.array([0.9, 0.2, 0.5])
    llf, grad, hess = objective.with_hessian(theta)
    assert llf == pytest.approx(objective(theta)[0], rel=1e-12)
    numeric = _central(lambda t: objective(t)[1], theta)
    np.testing.assert_allclose(hess, 0.5 * (numeric + numeric.T), rtol=1e-6, atol=1e-6)
    # the polish's Hessian function is the exact one where the engine has the pieces
    assert objective.hessian_function() == objective.with_hessian


# -- lme4's θ of a list of terms -------------------------------------------------------


@pytest.fixture(scope="module")
def nested() -> pd.DataFrame:
    """Slopes at a nested level: 12 schools, 3 or 4 classes each, 4 to 6 pupils a class."""
    rng = np.random.default_rng(5)
    rows = []
    for s in range(12):
        for c in range(int(rng.integers(3, 5))):
            for _ in range(int(rng.integers(4, 7))):
                rows.append((s, f"{s}-{c}"))
    frame = pd.DataFrame(rows, columns=["school", "klass"])
    frame["x"] = rng.normal(size=len(frame))
    school = frame["school"].to_numpy()
    klass = pd.factorize(frame["klass"])[0]
    u_s = rng.normal(size=12)
    u_c = rng.normal(size=(klass.max() + 1, 2)) * [0.7, 0.5]
    frame["y"] = (2.0 + 0.3 * frame["x"] + u_s[school] + u_c[klass, 0]
                  + u_c[klass, 1] * frame["x"] + rng.normal(size=len(frame)))
    return frame


def _dense_llf(frame: pd.DataFrame, theta_lme4: np.ndarray, reml: bool) -> float:
    """The profiled (RE)ML of ``y ~ x + (1 + x | school:klass) + (1 | school)`` with dense
    matrices, θ in lme4's order (the class term, more levels, first)."""
    y = frame["y"].to_numpy()
    x = np.column_stack([np.ones(len(frame)), frame["x"]])
    klass = pd.factorize(frame["klass"])[0]
    school = frame["school"].to_numpy()
    n_c, n_s = klass.max() + 1, school.max() + 1
    z_c = np.zeros((len(frame), 2 * n_c))
    z_c[np.arange(len(frame)), 2 * klass] = 1.0
    z_c[np.arange(len(frame)), 2 * klass + 1] = frame["x"]
    z_s = np.zeros((len(frame), n_s))
    z_s[np.arange(len(frame)), school] = 1.0
    lam_c = np.array([[theta_lme4[0], 0.0], [theta_lme4[1], theta_lme4[2]]])
    big = np.zeros((2 * n_c + n_s, 2 * n_c + n_s))
    big[: 2 * n_c, : 2 * n_c] = np.kron(np.eye(n_c), lam_c)
    big[2 * n_c:, 2 * n_c:] = theta_lme4[3] * np.eye(n_s)
    zl = np.hstack([z_c, z_s]) @ big
    v = np.eye(len(frame)) + zl @ zl.T
    v_inv = np.linalg.inv(v)
    xvx = x.T @ v_inv @ x
    beta = np.linalg.solve(xvx, x.T @ v_inv @ y)
    r = y - x @ beta
    n, p = x.shape
    fac = n - p if reml else n
    qf = r @ v_inv @ r
    llf = -0.5 * np.linalg.slogdet(v)[1] - 0.5 * fac * np.log(qf) \
        - 0.5 * fac * (1 + np.log(2 * np.pi) - np.log(fac))
    return llf - 0.5 * np.linalg.slogdet(xvx)[1] if reml else llf


@pytest.mark.parametrize("reml", [True, False])
def test_terms_objective_is_the_dense_likelihood_in_lme4_order(nested, reml):
    model = TermsMixedLM.from_lmer("y ~ x + (1 | school) + (1 + x | school:klass)", nested)
    objective = model.objective(reml=reml)
    assert isinstance(objective.theta_map, TermsMap)
    # lme4 puts the term with more levels first; the engine goes outermost first
    assert model.layout.names[0].startswith("school:klass")
    assert model.layout.names[-1] == "school.(Intercept)"
    theta = np.array([0.8, 0.3, 0.45, 1.2])  # lme4's order: distinct values
    value = objective.value(model.engine_theta(theta))
    np.testing.assert_allclose(value.llf, _dense_llf(nested, theta, reml), rtol=1e-10)
    numeric = _central(lambda t: _dense_llf(nested, t, reml), theta, h=1e-6)
    np.testing.assert_allclose(model.lme4_theta(value.grad_theta), numeric, rtol=1e-6,
                               atol=1e-6)


def test_both_spellings_of_a_model_compile_to_the_same_terms(nested):
    """statsmodels' spelling, learned on the data, and lme4's give one list of terms."""
    from dlmm.spec.terms import from_lmer

    spelled = dlmm.mixedlm("y ~ x", nested, groups="school", re_formula="1",
                           vc_formula={"klass": "0 + C(klass)"}).random_terms
    lme4 = from_lmer("y ~ x + (1 | school) + (1 | school:klass)")[1]
    assert spelled.layout().signature() == lme4.layout().signature()
    assert spelled.nesting() == lme4.nesting() == (("school",), ("school", "klass"))
    written = TermsMixedLM.from_lmer("y ~ x + (1 | school) + (1 + x | school:klass)", nested)
    assert written.random_terms.nesting() == (("school",), ("school", "klass"))
