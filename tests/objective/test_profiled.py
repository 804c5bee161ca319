"""Analytic gradients against finite differences; the llf against statsmodels."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from statsmodels.regression.mixed_linear_model import MixedLM as SmMixedLM
from statsmodels.regression.mixed_linear_model import MixedLMParams as SmParams

import dlmm
from dlmm.kernels import block_pieces, build_block, group_crossproducts
from dlmm.kernels.block import KeyedCrossProducts
from dlmm.objective import grad_profile, grad_sqrt, profiled_value
from tests.simulate import grouped_data

K_RE = 2
COMP_LEVELS = (3, 4)
K_VC = len(COMP_LEVELS)
TRIL = np.tril_indices(K_RE)


def _fd(f, x, h=1e-4):
    """Five-point central differences: error O(h^4) + rounding O(eps |f| / h)."""
    x = np.asarray(x, dtype=float)
    out = np.zeros_like(x)
    for j in range(x.size):
        e = np.zeros_like(x)
        e[j] = h
        out[j] = (8 * (f(x + e) - f(x - e)) - (f(x + 2 * e) - f(x - 2 * e))) / (12 * h)
    return out


def _assert_grad(analytic, numeric):
    # relative to the size of the gradient: finite differences carry rounding error
    # of about eps * |llf| / h ~ 1e-10 whatever the component
    tol = 1e-7 * max(1.0, float(np.max(np.abs(numeric))))
    np.testing.assert_allclose(analytic, numeric, rtol=0, atol=tol)


@pytest.fixture(scope="module")
def problem():
    """A block of 25 groups with two standard random effects and two components."""
    rng = np.random.default_rng(2024)
    n_groups = 25
    n_i = rng.integers(3, 12, size=n_groups)
    codes = rng.permutation(np.repeat(np.arange(n_groups), n_i))
    n = codes.size
    x = np.column_stack([np.ones(n), rng.normal(size=(n, 2))])
    z = x[:, :K_RE]
    slot_component = np.repeat(np.arange(K_VC), COMP_LEVELS)
    w = np.zeros((n, slot_component.size))
    start = 0
    for levels in COMP_LEVELS:
        w[np.arange(n), start + rng.integers(0, levels, size=n)] = 1.0
        start += levels
    u = rng.normal(size=(n_groups, K_RE)) * [1.0, 0.5]
    v = rng.normal(size=(n_groups, slot_component.size)) * 0.7
    y = x @ [1.0, 0.5, -0.3] + np.sum(z * u[codes], axis=1) + np.sum(w * v[codes], axis=1)
    y += rng.normal(size=n)
    xy = np.column_stack([x, y])
    cp = group_crossproducts(codes, n_groups, z, xy, sp.csr_array(w))
    block = build_block([KeyedCrossProducts(np.arange(n_groups), cp)], slot_component)
    return block, xy.T @ xy, float(n)


def _value(problem, chol, sd, reml):
    block, k_cross, n = problem
    return profiled_value(block_pieces(block, chol, sd), k_cross, n, reml)


def _unpack_sqrt(theta):
    chol = np.zeros((K_RE, K_RE))
    chol[TRIL] = theta[: TRIL[0].size]
    return chol, theta[TRIL[0].size:]


def _unpack_profile(theta):
    psi = np.zeros((K_RE, K_RE))
    psi[TRIL] = theta[: TRIL[0].size]
    psi = psi + psi.T - np.diag(np.diag(psi))
    return np.linalg.cholesky(psi), np.sqrt(theta[TRIL[0].size:])


def _sqrt_points():
    rng = np.random.default_rng(5)
    points = []
    for _ in range(3):
        chol = np.tril(rng.uniform(-1, 1, size=(K_RE, K_RE)))
        chol[np.diag_indices(K_RE)] = rng.uniform(0.2, 1.5, size=K_RE)
        points.append(np.concatenate([chol[TRIL], rng.uniform(0.2, 1.5, size=K_VC)]))
    # boundary points are ordinary points of the sqrt parameterization
    points.append(np.array([0.8, -0.4, 0.0, 0.0, 0.6]))  # rank-1 Psi, a zero component
    points.append(np.array([0.0, 0.0, 0.0, 0.0, 0.0]))  # B = 0
    points.append(np.array([-0.7, 0.3, -0.5, 1.1, -0.4]))  # negative entries of L and s
    return points


@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("point", range(6))
def test_grad_sqrt_vs_finite_differences(problem, reml, point):
    theta = _sqrt_points()[point]
    chol, sd = _unpack_sqrt(theta)
    analytic = grad_sqrt(_value(problem, chol, sd, reml), chol, sd)

    def llf(t):
        return _value(problem, *_unpack_sqrt(t), reml).llf

    _assert_grad(analytic, _fd(llf, theta))


@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_grad_profile_vs_finite_differences(problem, reml, seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(K_RE, K_RE + 1))
    psi = a @ a.T / 2 + 0.1 * np.eye(K_RE)
    theta = np.concatenate([psi[TRIL], rng.uniform(0.1, 2.0, size=K_VC)])
    chol, sd = _unpack_profile(theta)
    value = _value(problem, chol, sd, reml)
    analytic = grad_profile(value)

    def llf(t):
        return _value(problem, *_unpack_profile(t), reml).llf

    _assert_grad(analytic, _fd(llf, theta, h=1e-5))
    # the symmetric matrix gradient: d llf / d Psi_ab with Psi_ab, Psi_ba free
    np.testing.assert_allclose(value.grad_psi, value.grad_psi.T, rtol=0, atol=0)


# -- through the public model API ------------------------------------------------------


@pytest.fixture(scope="module")
def data():
    return grouped_data(n_groups=40, per_group=(5, 12), k_fe=3,
                        re_cov=np.array([[1.0, 0.3], [0.3, 0.5]]),
                        vc_sd={"d": 0.4, "c": 0.8}, vc_levels=3, seed=11)


VC_FORMULA = {"d": "0 + C(d)", "c": "0 + C(c)"}  # not in sorted order on purpose


@pytest.fixture(scope="module")
def model(data):
    return dlmm.mixedlm("y ~ x1 + x2", data, groups="g", re_formula="~x1",
                        vc_formula=VC_FORMULA)


API_POINTS = [
    np.array([0.9, 0.2, 0.6, 0.5, 0.3]),
    np.array([1.4, -0.5, 0.3, 0.1, 1.2]),
    np.array([0.4, 0.1, 1.1, 2.0, 0.2]),
]


@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("use_sqrt", [True, False])
@pytest.mark.parametrize("point", range(3))
def test_model_score_vs_finite_differences(model, reml, use_sqrt, point):
    model.reml, model.use_sqrt = reml, use_sqrt
    params = API_POINTS[point].copy()
    if not use_sqrt:  # read the numbers as L and s, pass Psi = L L' and s^2
        chol, sd = _unpack_sqrt(params)
        params = np.concatenate([(chol @ chol.T)[TRIL], sd**2])
    score = np.asarray(model.score(params))
    assert score.shape == params.shape
    _assert_grad(score, _fd(lambda t: model.loglike(t), params, h=1e-5))


@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("point", range(3))
def test_loglike_matches_statsmodels(data, model, reml, point):
    sm_model = SmMixedLM.from_formula("y ~ x1 + x2", data, groups="g", re_formula="~x1",
                                      vc_formula=VC_FORMULA)
    chol, sd = _unpack_sqrt(API_POINTS[point])
    psi, vcomp = chol @ chol.T, sd**2
    assert not np.allclose(vcomp[0], vcomp[1])  # the order of the components matters
    sm_model.reml = reml
    sm_model.cov_pen = sm_model.fe_pen = None  # statsmodels sets these in fit()
    model.reml = reml
    sm_llf = sm_model.loglike(SmParams.from_components(cov_re=psi, vcomp=vcomp))
    ours = model.loglike(dlmm.MixedLMParams.from_components(cov_re=psi, vcomp=vcomp))
    np.testing.assert_allclose(ours, sm_llf, rtol=1e-10)
    # the same point as packed vectors, in both parameterizations
    for use_sqrt in (True, False):
        sm_model.use_sqrt = model.use_sqrt = use_sqrt
        packed = SmParams.from_components(cov_re=psi, vcomp=vcomp).get_packed(use_sqrt)
        np.testing.assert_allclose(model.loglike(packed), sm_model.loglike(packed),
                                   rtol=1e-10)


# -- points where the profiled likelihood is undefined (issue 10, item 7) ---------


def _pieces_of(hmh: np.ndarray):
    from types import SimpleNamespace
    return SimpleNamespace(hmh=hmh, logdet=0.0)


def test_non_positive_quadratic_form_is_an_infeasible_point():
    """``qf = S_yy - S_yX S_XX^-1 S_Xy <= 0`` (an exact fit, or rounding) has no log: the
    value is refused, not returned as NaN."""
    from dlmm.exceptions import InfeasiblePoint
    xy_cross = np.array([[4.0, 2.0], [2.0, 1.0]])  # y = x / 2 exactly: qf = 0
    with pytest.raises(InfeasiblePoint, match="quadratic form"):
        profiled_value(_pieces_of(np.zeros((2, 2))), xy_cross, 10.0, reml=False)
    with pytest.raises(InfeasiblePoint, match="quadratic form"):
        profiled_value(_pieces_of(np.array([[0.0, 0.0], [0.0, 0.5]])),
                       np.array([[4.0, 1.0], [1.0, 0.6]]), 10.0, reml=True)


def test_singular_gls_matrix_is_an_infeasible_point():
    from dlmm.exceptions import InfeasiblePoint
    xy_cross = np.array([[1.0, 1.0, 0.5], [1.0, 1.0, 0.5], [0.5, 0.5, 2.0]])
    with pytest.raises(InfeasiblePoint, match="not positive definite"):
        profiled_value(_pieces_of(np.zeros((3, 3))), xy_cross, 10.0, reml=True)


def test_profile_gradient_from_a_sqrt_gradient_with_standard_random_effects():
    """``profile_from_sqrt`` with a ``chol_re``: the symmetric gradient along the entries of
    Psi = L L' equals central differences of a function of Psi, from its gradient along
    the entries of L (differences too); at a singular L it is NaN, not a guess."""
    from dlmm.objective.profiled import profile_from_sqrt

    rng = np.random.default_rng(5)
    m = rng.normal(size=(3, 3))
    m = m @ m.T

    def f(psi):
        return np.linalg.slogdet(np.eye(3) + psi @ m)[1] + np.trace(psi) ** 2

    chol = np.tril(rng.normal(size=(3, 3))) + 2 * np.eye(3)
    rows, cols = np.tril_indices(3)
    h = 1e-6
    grad_l = np.empty(rows.size)
    for j, (a, b) in enumerate(zip(rows, cols)):
        e = np.zeros((3, 3))
        e[a, b] = h
        grad_l[j] = (f((chol + e) @ (chol + e).T) - f((chol - e) @ (chol - e).T)) / (2 * h)
    psi = chol @ chol.T
    expected = np.empty((3, 3))
    for a in range(3):
        for b in range(3):
            e = np.zeros((3, 3))
            e[a, b] = h
            expected[a, b] = (f(psi + e) - f(psi - e)) / (2 * h)
    expected = 0.5 * (expected + expected.T)
    grad_psi, grad_vc = profile_from_sqrt(np.concatenate([grad_l, [0.3]]),
                                          (chol, np.array([0.5])))
    np.testing.assert_allclose(grad_psi, expected, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(grad_vc, [0.3])
    singular = chol.copy()
    singular[1, 1] = 0.0
    assert np.isnan(profile_from_sqrt(np.concatenate([grad_l, [0.3]]),
                                      (singular, np.array([0.5])))[0]).all()
