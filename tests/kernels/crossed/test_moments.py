"""Moment start values of crossed factors with vector random effects
(kernels/crossed/theta.moment_covariances) against the covariances that simulated them."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dlmm.kernels.crossed import moment_covariances
from dlmm.terms_model import TermsMixedLM


def test_moments_recover_the_simulated_covariances():
    """Two crossed factors, a correlated intercept and slope on each (2,000 and 1,500
    levels, 60,000 rows): each factor's moment estimate of its relative covariance is
    within 15% (entry-wise, of the largest) of the one the data were drawn from."""
    rng = np.random.default_rng(11)
    n = 60_000
    frame = pd.DataFrame({"a": rng.integers(0, 2000, n), "b": rng.integers(0, 1500, n),
                          "x": rng.normal(size=n)})
    truth = {"a": np.array([[0.64, 0.12], [0.12, 0.25]]),
             "b": np.array([[0.36, -0.06], [-0.06, 0.16]])}
    y = 1.0 + 0.5 * frame["x"].to_numpy() + rng.normal(size=n)
    for name, cov in truth.items():
        levels = frame[name].max() + 1
        effects = rng.multivariate_normal(np.zeros(2), cov, size=levels)
        codes = frame[name].to_numpy()
        y += effects[codes, 0] + effects[codes, 1] * frame["x"].to_numpy()
    frame["y"] = y
    frame["a"], frame["b"] = frame["a"].astype(str), frame["b"].astype(str)
    model = TermsMixedLM.from_lmer("y ~ x + (1 + x | a) + (1 + x | b)", frame)
    stats = model.prepare()._stats
    assert stats.engine_name == "crossed"
    covariances = moment_covariances(stats.system)
    for level, factor in enumerate(model.engine_layout.levels):
        expected = truth[factor[0]]  # residual variance 1: relative = absolute
        got = covariances[level]
        assert np.max(np.abs(got - expected)) < 0.15 * np.max(np.abs(expected)), (factor, got)
