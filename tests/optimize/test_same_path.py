"""The same data take the same optimizer path wherever they live (issue 10, item 8).

The trust-region Newton method stops at the first accepted step that passes the driver's
convergence test (the Newton decrement, or the gradient): scipy's own test of the next,
rounding-sized, step differs with the summation order, and used to send one backend into
BFGS and the others not. The data are dietox-like (statsmodels' dietox example needs the
network): 72 pigs weighed in 12 weeks, ``Weight ~ Time`` with a random intercept and slope
per pig of the published magnitudes (statsmodels' fit: intercept 15.7, slope 6.94, pig
variance 19.5, slope variance 0.416, covariance 0.294, residual variance 6.04).
"""

from __future__ import annotations

import warnings

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

import dlmm
from dlmm.optimize.driver import maximize
from tests.reliability.helpers import statsmodels_fit

FORMULA, GROUPS, RE = "Weight ~ Time", "Pig", "~Time"


def dietox_like(seed: int = 0) -> pd.DataFrame:
    """72 pigs x 12 weeks, random intercept and slope per pig (dietox's magnitudes)."""
    rng = np.random.default_rng(seed)
    pigs, weeks = 72, 12
    cov = np.array([[19.49, 0.294], [0.294, 0.416]])
    effects = rng.multivariate_normal([0.0, 0.0], cov, size=pigs)
    pig = np.repeat(np.arange(pigs), weeks)
    time = np.tile(np.arange(1.0, weeks + 1.0), pigs)
    weight = (15.72 + 6.94 * time + effects[pig, 0] + effects[pig, 1] * time
              + rng.normal(scale=np.sqrt(6.04), size=pigs * weeks))
    return pd.DataFrame({"Weight": weight, "Time": time, "Pig": pig})


@pytest.fixture(scope="module")
def dietox() -> pd.DataFrame:
    return dietox_like(0)


@pytest.fixture(scope="module")
def statsmodels_llf(dietox) -> float:
    _, result, _, error = statsmodels_fit(FORMULA, dietox, groups=GROUPS, re_formula=RE)
    assert error is None and result.converged
    return float(result.llf)


@pytest.fixture(scope="module")
def in_process(dietox):
    return dlmm.mixedlm(FORMULA, dietox, groups=GROUPS, re_formula=RE).fit()


def _fit_dask(frame, n_parts, client):
    data = dd.from_pandas(frame, npartitions=n_parts, sort=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", dlmm.ConvergenceWarning)
        return dlmm.mixedlm(FORMULA, data, groups=GROUPS, re_formula=RE, client=client).fit()


def test_in_process_fit_is_statsmodels_and_newton_only(in_process, statsmodels_llf):
    np.testing.assert_allclose(in_process.llf, statsmodels_llf, rtol=1e-8)
    methods = [m["method"] for m in in_process.optimization_log.methods]
    assert methods == ["trust-exact"], in_process.optimization_log.methods


@pytest.mark.parametrize("n_parts", [1, 3, 17])
def test_same_evaluations_on_every_partitioning(dietox, in_process, statsmodels_llf,
                                                dask_client, n_parts):
    result = _fit_dask(dietox, n_parts, dask_client)
    np.testing.assert_allclose(result.llf, statsmodels_llf, rtol=1e-8)
    assert [m["method"] for m in result.optimization_log.methods] == ["trust-exact"]
    assert result.optimization_log.evaluations == in_process.optimization_log.evaluations


def _quadratic(hess, center, noise=0.0):
    """llf = -(x - c)' A (x - c) / 2 with noise on the value and the gradient (as summation
    order leaves on a real objective), deterministic in x."""
    def full(x):
        d = x - center
        rng = np.random.default_rng(abs(hash(x.tobytes())) % 2**32)
        return (-0.5 * d @ hess @ d + noise * rng.normal(), -hess @ d + 10 * noise *
                rng.normal(size=d.shape), -hess)

    return full


def test_a_converged_newton_step_ends_the_methods():
    """On a quadratic (one Newton step reaches the maximum) whose value and gradient carry
    noise, the first accepted step passes the decrement test while scipy's gradient test
    (1e-9) never does: no BFGS or Nelder-Mead evaluations follow."""
    hess = np.array([[4.0, 1.0], [1.0, 3.0]])
    full = _quadratic(hess, np.array([0.3, -0.2]), noise=1e-9)
    out = maximize(lambda x: full(x)[:2], np.array([1.0, 1.0]), n_obs=1.0,
                   methods=("newton", "bfgs", "nelder-mead"), hess_fun=full)
    assert out.converged
    assert [m["method"] for m in out.log.methods] == ["trust-exact"]
    assert {e.stage for e in out.log.entries} <= {"trust-newton", "newton"}
    np.testing.assert_allclose(out.x, [0.3, -0.2], atol=1e-6)
