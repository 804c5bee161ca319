"""The average-information Hessian of an evaluation against dense algebra on ``V``."""

from __future__ import annotations

import numpy as np
import pytest

from dlmm.kernels.crossed import build_system, crossed_pieces, crossed_sums
from dlmm.objective.information import information_hessian

from .cases import make_case, thetas
from .helpers import ALL_PATHS, dense_z, set_pair_path


@pytest.fixture(autouse=True, params=ALL_PATHS)
def pair_path(request, monkeypatch):
    """Stored pairs, streamed pairs and a dense ``G21`` (:func:`.helpers.set_pair_path`)."""
    return set_pair_path(request.param, monkeypatch)


def _dense_information(design, theta, reml):
    """``-AI`` by dense algebra: ``V = I + Z Lambda Lambda' Z'``, ``V_a = 2 theta_a Z_a
    Z_a'``, ``Q = V^-1 - V^-1 X (X'V^-1 X)^-1 X'V^-1``, ``r = Q y``, ``sigma^2 = y'Qy /
    fac``; ``AI_ab = r'V_a Q V_b r / (2 sigma^2) - r'V_a r r'V_b r / (2 fac sigma^4) -
    delta_ab g_a / theta_a`` with ``g`` the profiled llf's gradient (its own dense
    formula: ``-tr(V^-1 V_a) / 2 + r'V_a r / (2 sigma^2)`` [REML: ``Q`` in the trace])."""
    z = dense_z(design)
    n, p = design.x.shape
    v = np.eye(n) + (z * np.repeat(theta, design.n_levels) ** 2) @ z.T
    vinv = np.linalg.inv(v)
    x = design.x
    q = vinv - vinv @ x @ np.linalg.solve(x.T @ vinv @ x, x.T @ vinv)
    r = q @ design.y
    fac = n - p if reml else n
    sigma2 = float(design.y @ r) / fac
    starts = np.concatenate([[0], np.cumsum(design.n_levels)])
    va = [2 * t * z[:, a:b] @ z[:, a:b].T for t, a, b in zip(theta, starts[:-1], starts[1:])]
    trace_of = q if reml else vinv
    grad = np.array([-0.5 * np.trace(trace_of @ d) + 0.5 * r @ d @ r / sigma2 for d in va])
    m = theta.size
    ai = np.empty((m, m))
    for a in range(m):
        for b in range(m):
            ai[a, b] = (0.5 * r @ va[a] @ q @ va[b] @ r / sigma2
                        - 0.5 * (r @ va[a] @ r) * (r @ va[b] @ r) / (fac * sigma2**2))
    ai[np.diag_indices(m)] -= grad / theta
    return -ai, grad


@pytest.mark.parametrize("reml", [False, True])
@pytest.mark.parametrize("name", ["two_intercepts", "three_intercepts"])
def test_information_matches_dense_algebra(name, reml):
    design = make_case(name)
    theta = thetas(design)["generic"]
    system = build_system(
        crossed_sums(design.codes, design.terms, design.x, design.y, design.n_levels))
    pieces = crossed_pieces(system, theta, gradient=True, information=True)
    expected, grad = _dense_information(design, theta, reml)
    got = information_hessian(pieces.information, pieces.hmh, system.xy_cross,
                              system.n_rows, reml, theta, grad)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9 * np.abs(expected).max())


def test_no_information_unless_asked():
    design = make_case("two_intercepts")
    system = build_system(
        crossed_sums(design.codes, design.terms, design.x, design.y, design.n_levels))
    assert crossed_pieces(system, thetas(design)["generic"], gradient=True).information is None
