"""The crossed dense part by tiles (issue 24, item 3): the tile kernels and the tiled
factor, solves and inverse (scheduled in process) against a dense brute force of
``C = I + Lambda'Z'Z Lambda`` built from the rows' indicators."""

from __future__ import annotations

import numpy as np
import pytest

from dlmm.kernels.crossed import crossed_sums
from dlmm.kernels.crossed import tiles as kt
from dlmm.structure import tiled_cholesky as tc
from dlmm.structure.crossed_tiled import scatter_tiles, tiled_effects, tiled_pieces

LEVELS = [90, 40, 25]  # the first factor is the largest: Q2 = 65


@pytest.fixture(autouse=True)
def pair_path():
    """The tiled path has no stored or streamed pairs: each test runs once."""
    return None


@pytest.fixture(scope="module")
def case():
    """Three crossed intercept factors, precision weights, and the dense brute force."""
    rng = np.random.default_rng(11)
    n = 1200
    codes = [rng.integers(0, lv, n) for lv in LEVELS]
    x = np.column_stack([np.ones(n), rng.normal(size=n)])
    y = x @ [0.5, -1.0] + sum(rng.normal(size=lv)[c] for lv, c in zip(LEVELS, codes)) \
        + rng.normal(size=n)
    w = np.sqrt(rng.uniform(0.5, 2.0, n))  # sqrt of precision weights, on each indicator
    sums = crossed_sums(codes, [w] * 3, x * w[:, None], y * w, LEVELS)
    z = np.concatenate([np.eye(lv)[c] * w[:, None] for lv, c in zip(LEVELS, codes)], axis=1)
    xy = np.column_stack([x, y]) * w[:, None]
    return sums, z, xy


def brute(z, xy, theta):
    """``log|C|``, ``c'c`` and their exact derivatives along theta, densely."""
    owner = np.repeat(np.arange(len(LEVELS)), LEVELS)
    lam = np.diag(theta[owner])
    g, h = z.T @ z, z.T @ xy
    c = np.eye(z.shape[1]) + lam @ g @ lam
    cinv = np.linalg.inv(c)
    logdet = np.linalg.slogdet(c)[1]
    hmh = h.T @ lam @ cinv @ lam @ h
    dlogdet, dhmh = [], []
    for k in range(len(LEVELS)):
        dlam = np.diag((owner == k).astype(float))
        dc = dlam @ g @ lam + lam @ g @ dlam
        dlogdet.append(np.trace(cinv @ dc))
        part = h.T @ dlam @ cinv @ lam @ h
        dhmh.append(part + part.T - h.T @ lam @ cinv @ dc @ cinv @ lam @ h)
    return logdet, hmh, np.array(dlogdet), np.array(dhmh), c, cinv


@pytest.mark.parametrize("tile", [7, 30, 65])
def test_tiled_pieces_equal_the_dense_brute_force(case, tile):
    """Tiles of 7 (10 tile rows), 30 and 65 rows (one tile): log|C|, c'c and their
    gradient equal the brute force to 1e-10 relative."""
    sums, z, xy = case
    theta = np.array([0.7, 1.3, 0.4])
    system = kt.tiled_system(sums)
    schur = scatter_tiles(system, tc.InlineRunner(), tile=tile)
    assert schur.n == -(-65 // tile)
    logdet, hmh, dlogdet, dhmh, _, _ = brute(z, xy, theta)
    value = tiled_pieces(system, schur, theta, gradient=False)
    full = tiled_pieces(system, schur, theta, gradient=True)
    np.testing.assert_allclose(value.logdet, logdet, rtol=1e-12)
    np.testing.assert_allclose(value.hmh, hmh, rtol=1e-10, atol=1e-10 * np.abs(hmh).max())
    np.testing.assert_allclose(full.logdet, logdet, rtol=1e-12)
    np.testing.assert_allclose(full.dlogdet, dlogdet, rtol=1e-10)
    np.testing.assert_allclose(full.dhmh, dhmh, rtol=1e-9, atol=1e-10 * np.abs(dhmh).max())


def test_tiles_solve_and_inverse_equal_the_dense_schur_complement(case):
    """The tiles of A are the dense Schur complement of C's first block; the tiled
    solve is A^{-1} u and the tiled inverse is A^{-1}, to rounding; on the boundary
    (theta_1 = 0) too."""
    sums, z, xy = case
    system = kt.tiled_system(sums)
    schur = scatter_tiles(system, tc.InlineRunner(), tile=16)
    runner, n, e = schur.runner, schur.n, schur.edges
    for theta in (np.array([0.7, 1.3, 0.4]), np.array([0.0, 0.9, 0.2])):
        c = brute(z, xy, theta)[4]
        l1 = LEVELS[0]
        a = c[l1:, l1:] - c[l1:, :l1] @ np.linalg.solve(c[:l1, :l1], c[:l1, l1:])
        first = kt.first_factor(system, theta)
        params = first.params(system, theta)
        for i in range(n):
            for j in range(i + 1):
                tile = kt.schur_tile(schur.blocks[i], schur.blocks[j],
                                     schur.g22[i, j], params)
                np.testing.assert_allclose(tile, a[e[i]:e[i + 1], e[j]:e[j + 1]], atol=1e-12)
        low = schur.factor(params)
        np.testing.assert_allclose(tc.logdet(runner, low, n), np.linalg.slogdet(a)[1],
                                   rtol=1e-12)
        u = np.random.default_rng(2).normal(size=(a.shape[0], 3))
        b = np.concatenate(tc.backward(runner, low, n, tc.forward(runner, low, n,
                                                                  schur.split(u))))
        np.testing.assert_allclose(b, np.linalg.solve(a, u), rtol=1e-10, atol=1e-12)
        inv = tc.inverse(runner, low, n)
        ainv = np.linalg.inv(a)
        for (i, j), tile in inv.items():
            np.testing.assert_allclose(tile, ainv[e[i]:e[i + 1], e[j]:e[j + 1]], atol=1e-12)


def test_tiled_effects_equal_the_dense_conditional_moments(case):
    """Conditional modes ``Lambda C^{-1} Lambda'Z'(y - X beta)`` and variances
    ``scale (Lambda C^{-1} Lambda')_ii`` of every level, densely."""
    sums, z, xy = case
    theta = np.array([0.7, 1.3, 0.4])
    system = kt.tiled_system(sums)
    schur = scatter_tiles(system, tc.InlineRunner(), tile=20)
    beta = np.array([0.4, -0.9])
    modes, variances = tiled_effects(system, schur, theta, beta, scale=1.7)
    cinv = brute(z, xy, theta)[5]
    lam = np.diag(theta[np.repeat(np.arange(3), LEVELS)])
    resid = xy[:, -1] - xy[:, :-1] @ beta
    np.testing.assert_allclose(np.concatenate(modes), lam @ cinv @ lam @ z.T @ resid,
                               rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.concatenate(variances), 1.7 * np.diag(lam @ cinv @ lam),
                               rtol=1e-10)


def test_random_slopes_are_not_tiled():
    """A factor with two terms is refused by the tiled path, naming why."""
    rng = np.random.default_rng(0)
    codes = [rng.integers(0, 5, 50), rng.integers(0, 3, 50)]
    sums = crossed_sums(codes, [rng.normal(size=(50, 2)), None], np.ones((50, 1)),
                        rng.normal(size=50), [5, 3])
    with pytest.raises(kt.NotTileable, match="random slopes"):
        kt.tiled_system(sums)
