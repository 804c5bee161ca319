"""Blocked factorization against dense brute force: log|V|, S, GLS beta, REML/ML llf."""

from __future__ import annotations

import numpy as np
import pytest

from dlmm.kernels.crossed import (
    build_system,
    crossed_pieces,
    crossed_sums,
    explicit_l21,
    factor_order,
    factorize,
)

from .cases import CASES, make_case, thetas
from .helpers import ALL_PATHS, brute_force, dense_lambda, dense_z, profiled_llf, set_pair_path


@pytest.fixture(autouse=True, params=ALL_PATHS)
def pair_path(request, monkeypatch):
    """Stored pairs, streamed pairs and a dense ``G21`` (:func:`.helpers.set_pair_path`)."""
    return set_pair_path(request.param, monkeypatch)


RTOL = 1e-10


def _system(design):
    return build_system(
        crossed_sums(design.codes, design.terms, design.x, design.y, design.n_levels)
    )


@pytest.mark.parametrize("which", ["generic", "zero_entry", "singular"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_value_matches_dense(name, which):
    design = make_case(name)
    theta = thetas(design)[which]
    system = _system(design)
    fac = factorize(system, theta)
    ref = brute_force(design, theta)
    assert fac.logdet == pytest.approx(ref.logdet, rel=RTOL, abs=1e-10)
    s = system.xy_cross - fac.ctc
    np.testing.assert_allclose(s, ref.s, rtol=RTOL, atol=RTOL * np.abs(ref.s).max())
    n = system.n_rows
    for reml, expected in [(True, ref.reml), (False, ref.ml)]:
        got = profiled_llf(fac.logdet, s, n, reml)
        assert got.llf == pytest.approx(expected.llf, rel=RTOL)
        np.testing.assert_allclose(got.beta, expected.beta, rtol=1e-9, atol=1e-10)
        assert got.scale == pytest.approx(expected.scale, rel=1e-9)
    pieces = crossed_pieces(system, theta)
    assert pieces.logdet == fac.logdet
    np.testing.assert_array_equal(pieces.hmh, fac.ctc)


@pytest.mark.parametrize("name", ["two_intercepts", "three_with_slopes", "slope_factor_dense"])
def test_blocked_factor_is_the_cholesky_factor_of_c(name):
    design = make_case(name)
    theta = thetas(design)["generic"]
    system = _system(design)
    fac = factorize(system, theta)
    zl = dense_z(design) @ dense_lambda(theta, design)
    c = zl.T @ zl + np.eye(zl.shape[1])
    # permute C into the system's factor order
    sizes = [lv * t for lv, t in zip(design.n_levels, design.n_terms)]
    starts = np.concatenate([[0], np.cumsum(sizes)])
    perm = np.concatenate([np.arange(starts[k], starts[k + 1]) for k in system.order])
    c = c[np.ix_(perm, perm)]
    l1, t1 = fac.l11.shape[:2]
    q1 = l1 * t1
    l11 = np.zeros((q1, q1))
    for a in range(t1):
        for b in range(t1):
            l11[np.arange(l1) * t1 + a, np.arange(l1) * t1 + b] = fac.l11[:, a, b]
    l21 = explicit_l21(system, fac)
    full = np.zeros_like(c)
    full[:q1, :q1] = l11
    full[q1:, :q1] = l21.toarray()
    full[q1:, q1:] = np.tril(fac.l22)
    np.testing.assert_allclose(full @ full.T, c, rtol=1e-12, atol=1e-12)
    # no fill-in: L21 lives on the pattern of Z_2'Z_1
    g21_pattern = system.g21.toarray() != 0
    assert not np.any((l21.toarray() != 0) & ~g21_pattern)


def test_factors_are_ordered_by_random_effects_largest_first():
    assert factor_order([4, 11, 6], [1, 1, 1]) == [1, 2, 0]
    assert factor_order([7, 5], [1, 2]) == [1, 0]  # 5 levels x 2 terms > 7
    assert factor_order([3, 3], [1, 1]) == [0, 1]  # ties keep the caller's order
    system = _system(make_case("three_intercepts"))
    assert system.order == [1, 2, 0]
    assert system.dense_size == 4 + 6


def test_cost_does_not_depend_on_rows():
    design = make_case("three_with_slopes")
    doubled = design.take(np.concatenate([np.arange(design.y.size)] * 2))
    a, b = _system(design).cost(), _system(doubled).cost()
    assert a == b
    lv, t = design.n_levels, design.n_terms
    assert a.first_size == lv[0] * t[0]  # factor 0 (13 levels x 2 terms) is first
    assert a.dense_size == lv[1] * t[1] + lv[2] * t[2]


def test_zero_theta_gives_ordinary_least_squares():
    design = make_case("three_with_slopes")
    system = _system(design)
    fac = factorize(system, np.zeros_like(thetas(design)["generic"]))
    assert fac.logdet == 0.0
    assert np.all(fac.ctc == 0)


@pytest.mark.parametrize("seed", range(8))
def test_random_configurations_match_dense(seed):
    """Two to four factors, random level counts (some 1) and terms, random theta."""
    from dlmm.kernels.crossed import gradient_pieces, theta_sizes

    from .helpers import profiled_grad, random_design

    rng = np.random.default_rng(1000 + seed)
    k = int(rng.integers(2, 5))
    levels = [int(v) for v in rng.integers(1, 10, size=k)]
    terms = [int(v) for v in rng.integers(1, 3, size=k)]
    design = random_design(rng, int(rng.integers(30, 90)), levels, terms, p=2, unseen=1)
    theta = rng.normal(size=sum(theta_sizes(design.n_terms)))
    system = _system(design)
    fac = factorize(system, theta)
    ref = brute_force(design, theta)
    value = profiled_llf(fac.logdet, system.xy_cross - fac.ctc, system.n_rows, True)
    assert value.llf == pytest.approx(ref.reml.llf, rel=RTOL)
    grad = gradient_pieces(system, fac)
    g = profiled_grad(value, grad.dlogdet, grad.dctc, system.n_rows, True)
    h = 1e-5
    for j in range(theta.size):
        e = np.zeros_like(theta)
        e[j] = h
        up, down = factorize(system, theta + e), factorize(system, theta - e)
        fd = (
            profiled_llf(up.logdet, system.xy_cross - up.ctc, system.n_rows, True).llf
            - profiled_llf(down.logdet, system.xy_cross - down.ctc, system.n_rows, True).llf
        ) / (2 * h)
        assert g[j] == pytest.approx(fd, rel=1e-5, abs=1e-6)
