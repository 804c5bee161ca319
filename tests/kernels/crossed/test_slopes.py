"""d3's shape in small: three crossed factors, each a correlated intercept and slope, pairs
streamed (``Lambda_2`` folded into the blocks, :mod:`dlmm.kernels.crossed.slopes`, and the
two-term compiled loops of :mod:`dlmm.kernels.crossed.level_pairs`) against the dense
brute force on ``V``: log-determinant, GLS solution, gradient, conditional variances."""

from __future__ import annotations

import numpy as np
import pytest

from dlmm.kernels.crossed import (
    build_system,
    conditional_variances,
    crossed_pieces,
    crossed_sums,
    factorize,
    theta_index,
)

from .helpers import brute_force, random_design


@pytest.fixture(autouse=True)
def pair_path():
    """Once: the system below is built streamed whatever the default path."""
    return "streamed"


@pytest.fixture(scope="module")
def d3_small():
    rng = np.random.default_rng(23)
    # unbalanced (Dirichlet), the last two levels of each factor seen once, one unseen level
    design = random_design(rng, 150, [14, 6, 5], [2, 2, 2], p=2, once=2, unseen=1)
    system = build_system(crossed_sums(design.codes, design.terms, design.x, design.y,
                                       design.n_levels), streamed=True, sparse=False)
    theta = rng.uniform(0.3, 1.2, size=9)
    off = [j for j, (_, a, b) in enumerate(theta_index(design.n_terms)) if a != b]
    theta[off] = rng.uniform(-0.6, 0.6, size=len(off))
    return design, system, theta


def test_streamed_two_term_path_is_taken(d3_small):
    _, system, theta = d3_small
    assert system.streamed and system.n_terms[system.first] == 2
    assert factorize(system, theta).lambda_w is not None


def test_value_and_gls_match_brute_force(d3_small):
    design, system, theta = d3_small
    ref = brute_force(design, theta)
    fac = factorize(system, theta)
    s = system.xy_cross - fac.ctc
    assert fac.logdet == pytest.approx(ref.logdet, rel=1e-11)
    np.testing.assert_allclose(s, ref.s, rtol=1e-10, atol=1e-10 * np.abs(ref.s).max())
    beta = np.linalg.solve(s[:-1, :-1], s[:-1, -1])
    np.testing.assert_allclose(beta, ref.reml.beta, rtol=1e-9, atol=1e-11)


def test_gradient_matches_brute_force_differences(d3_small):
    design, system, theta = d3_small
    pieces = crossed_pieces(system, theta, gradient=True)
    h = 1e-4
    fd_logdet, fd_s = [], []
    for e in np.eye(theta.size):
        lo, hi = brute_force(design, theta - h * e), brute_force(design, theta + h * e)
        fd_logdet.append((hi.logdet - lo.logdet) / (2 * h))
        fd_s.append((hi.s - lo.s) / (2 * h))
    np.testing.assert_allclose(pieces.dlogdet, fd_logdet, rtol=1e-6, atol=1e-6)
    fd_s = np.array(fd_s)  # dS = -d(c'c)
    np.testing.assert_allclose(-pieces.dhmh, fd_s, rtol=1e-6, atol=1e-7 * np.abs(fd_s).max())


def test_conditional_variances_match_brute_force(d3_small):
    design, system, theta = d3_small
    ref = brute_force(design, theta)
    got = conditional_variances(system, factorize(system, theta), ref.reml.scale)
    for mine, want in zip(got, ref.variances):
        np.testing.assert_allclose(mine, want, rtol=1e-9, atol=1e-12)
