"""An evaluation holds the dense Schur part about once: its inverse (the gradient's)
takes the factor's own memory (issue 24, item 1), with the same numbers."""

from __future__ import annotations

import tracemalloc

import numpy as np

from dlmm.kernels.crossed import build_system, crossed_pieces, crossed_sums, factorize
from dlmm.kernels.crossed.gradient import gradient_pieces


def test_the_inverse_takes_the_factors_memory():
    """Two crossed intercept factors (3,000 and 1,500 levels, 40,000 rows): the peak of
    one evaluation with its gradient is at most 1.7 dense parts of 8 Q2^2 bytes (2.4
    when the inverse was a new array), and its numbers are those of an evaluation
    that keeps its factor, to the last bit."""
    rng = np.random.default_rng(3)
    n = 40_000
    codes = [rng.integers(0, 3000, n), rng.integers(0, 1500, n)]
    x = np.column_stack([np.ones(n), rng.normal(size=n)])
    y = x @ [1.0, 0.5] + rng.normal(size=3000)[codes[0]] + rng.normal(size=1500)[codes[1]] \
        + rng.normal(size=n)
    system = build_system(crossed_sums(codes, [None, None], x, y, [3000, 1500]))
    q2 = system.dense_size
    assert q2 == 1500
    theta = np.array([0.8, 1.1])
    crossed_pieces(system, theta, gradient=True)  # compiled loops, caches: not counted
    tracemalloc.start()
    try:
        pieces = crossed_pieces(system, theta, gradient=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= 1.7 * 8 * q2 * q2, peak / (8 * q2 * q2)
    kept = factorize(system, theta)
    grad = gradient_pieces(system, kept)  # the factor kept: a second inverse array
    assert kept.l22 is not None
    assert pieces.logdet == kept.logdet
    np.testing.assert_array_equal(pieces.dlogdet, grad.dlogdet)
    np.testing.assert_array_equal(pieces.dhmh, grad.dctc)

