"""Gradient of log|C|, c'c and the profiled llf against finite differences."""

from __future__ import annotations

import numpy as np
import pytest

from dlmm.kernels.crossed import build_system, crossed_pieces, crossed_sums, factorize

from .cases import CASES, make_case, thetas
from .helpers import ALL_PATHS, central_derivative, profiled_grad, profiled_llf, set_pair_path


@pytest.fixture(autouse=True, params=ALL_PATHS)
def pair_path(request, monkeypatch):
    """Stored pairs, streamed pairs and a dense ``G21`` (:func:`.helpers.set_pair_path`)."""
    return set_pair_path(request.param, monkeypatch)


def _system(design):
    return build_system(
        crossed_sums(design.codes, design.terms, design.x, design.y, design.n_levels)
    )


@pytest.mark.parametrize("which", ["generic", "zero_entry", "singular"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_pieces_gradient_matches_finite_differences(name, which):
    design = make_case(name)
    theta = thetas(design)[which]
    system = _system(design)
    pieces = crossed_pieces(system, theta, gradient=True)
    fd_logdet = central_derivative(lambda t: factorize(system, t).logdet, theta)
    fd_ctc = central_derivative(lambda t: factorize(system, t).ctc, theta)
    np.testing.assert_allclose(pieces.dlogdet, fd_logdet, rtol=1e-7, atol=1e-7)
    scale = np.abs(fd_ctc).max()
    np.testing.assert_allclose(pieces.dhmh, fd_ctc, rtol=1e-7, atol=1e-8 * scale)


@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("name", ["three_with_slopes", "three_intercepts", "one_level_factor"])
def test_llf_gradient_matches_finite_differences(name, reml):
    design = make_case(name)
    theta = thetas(design)["generic"]
    system = _system(design)
    n = system.n_rows

    def llf(t):
        fac = factorize(system, t)
        return profiled_llf(fac.logdet, system.xy_cross - fac.ctc, n, reml).llf

    pieces = crossed_pieces(system, theta, gradient=True)
    value = profiled_llf(pieces.logdet, system.xy_cross - pieces.hmh, n, reml)
    grad = profiled_grad(value, pieces.dlogdet, pieces.dhmh, n, reml)
    np.testing.assert_allclose(grad, central_derivative(llf, theta), rtol=1e-6, atol=1e-7)
