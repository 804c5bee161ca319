"""A crossed fit whose quasi-Newton steps and polish factor the Schur complement in float32
ends at the optimum: the dense brute force's (``V`` built explicitly, ``n x n``) Newton
step is within float32's refined gradients' precision there, its llf and GLS fixed
effects are the fit's to float64's."""

from __future__ import annotations

import numpy as np
import pytest

import dlmm
from dlmm.kernels.crossed import counts
from dlmm.kernels.crossed import single as single_module

from .crossed_data import crossed_data

VC = {"user": "0 + C(user)", "item": "0 + C(item)"}


@pytest.fixture(scope="module")
def data():
    return crossed_data(n=800, n_users=150, n_items=110, seed=23)


@pytest.fixture(scope="module")
def fitted(data):
    """ML fit, in process from pandas; the float32 path opened to this small dense Schur
    part (110 items; by default it starts at ``SINGLE_DENSE_MIN`` = 2,000), the pairs
    stored (not a dense ``G21``)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(single_module, "SINGLE_DENSE_MIN", 100)
        mp.setattr(counts, "DENSE_G21_RATIO", 0.0)
        model = dlmm.mixedlm("y ~ x1 + C(k)", data, groups=None, re_formula="0",
                             vc_formula=VC)
        result = model.fit(reml=False)
    return model, result


def _brute(data):
    """``theta -> (llf, beta, d llf / d theta)``, ML, from dense ``V = I + sum_k theta_k^2
    Z_k Z_k'`` (theta: user, item; beta: Intercept, C(k)[T.b], x1)."""
    n = len(data)
    x = np.column_stack([np.ones(n), data["k"] == "b", data["x1"]]).astype(float)
    y = data["y"].to_numpy()
    zs = [np.equal.outer(data[f].to_numpy(), np.unique(data[f])).astype(float)
          for f in ("user", "item")]
    zz = [z @ z.T for z in zs]

    def at(theta):
        v = np.eye(n) + sum(t * t * g for t, g in zip(theta, zz))
        vinv = np.linalg.inv(v)
        beta = np.linalg.solve(x.T @ vinv @ x, x.T @ vinv @ y)
        r = y - x @ beta
        vr = vinv @ r
        qf = r @ vr
        llf = (-0.5 * np.linalg.slogdet(v)[1] - 0.5 * n * np.log(qf)
               - 0.5 * n * (1 + np.log(2 * np.pi) - np.log(n)))
        grad = np.array([-t * np.sum(vinv * g) + n / qf * t * np.sum((z.T @ vr) ** 2)
                         for t, z, g in zip(theta, zs, zz)])
        return llf, beta, grad

    return at


def _theta(result):
    names = list(result.vc_names)
    return np.sqrt(np.array([result.vcomp[names.index(f)] for f in ("user", "item")])
                   / result.scale)


def test_float32_steps_were_taken(fitted):
    model, result = fitted
    assert result.converged and result.engine == "crossed"
    coarse = result.timings["coarse_evaluations"]
    assert coarse >= 4  # the start's gradient, steps, the polish's differences
    # the start's Hessian is its own evaluation's average information: no values
    log = result.optimization_log.to_frame()
    assert not log["grad_norm"].isna().any()
    # the polish's Hessian differences one direction (the dense factor's entry is the
    # evaluation's own, kernels/crossed/dense_hessian): the float32 evaluations are the
    # logged ones (the handover point logged twice) and that one difference
    assert model._stats.single_evaluations == int((log["stage"] != "final").sum())
    assert model._stats.single_evaluations == coarse  # all of them factored in float32
    # one evaluation in float64: the value at the optimum (with the float32 derivatives)
    assert result.timings["engine_evaluations"] == coarse + 1


def test_ends_at_the_float64_optimum(data, fitted):
    _, result = fitted
    theta = _theta(result)
    brute = _brute(data)
    llf, beta, grad = brute(theta)
    # the brute force's own Newton step from the fit's theta (Hessian by differences)
    h = 1e-6
    hess = np.column_stack([(brute(theta + h * e)[2] - grad) / h for e in np.eye(2)])
    step = np.linalg.solve(hess, -grad)
    # the polish, too, on float32 gradients (refined): the optimum to their precision,
    # its steps stop within COARSE_NEWTON_STEP = 5e-8 (all float64: 1e-13)
    assert np.all(np.abs(step) <= 5e-8 * np.maximum(1.0, theta)), step
    assert result.llf == pytest.approx(llf, rel=1e-12)
    assert list(result.fe_params.index) == ["Intercept", "C(k)[T.b]", "x1"]
    np.testing.assert_allclose(result.fe_params.to_numpy(), beta, rtol=1e-10)


def test_small_dense_part_stays_float64(data):
    """Below ``SINGLE_DENSE_MIN`` (110 items) no evaluation is float32, and the
    quasi-Newton steps are not run as coarse ones (their noise allowance unused)."""
    model = dlmm.mixedlm("y ~ x1 + C(k)", data, groups=None, re_formula="0", vc_formula=VC)
    result = model.fit(reml=False)
    assert result.converged
    assert result.timings["coarse_evaluations"] == 0 and model._stats.single_evaluations == 0
    assert result.mle_retvals["methods"][0]["method"] == "qnewton"
