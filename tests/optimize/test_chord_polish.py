"""The Newton polish on a Hessian by gradient differences (issue 23, item 3): the
Hessian is taken once and kept across the polish's steps while they converge (a chord
method), and again only where the point has left its reach; the optimum is the true one.

The objective is a closed form, ``llf = -sum_i log cosh(x_i - a_i)``: maximum at ``a``,
Hessian ``-diag(1 / cosh^2(x - a))``; the polish starts a few hundredths away, where
the Hessian at the start is off by up to 0.25 % and the chord steps gain 2.6 digits each.
"""

from __future__ import annotations

import numpy as np

from dlmm.objective.hessian import GradientHessian
from dlmm.optimize.driver import maximize

A = np.array([0.7, -1.3, 2.1, 0.4, -0.2])
OFFSET = np.array([0.05, -0.03, 0.02, 0.04, -0.01])


def test_the_polish_takes_two_difference_hessians_not_one_per_step():
    calls = []

    def fun(x):
        calls.append(np.array(x))
        z = np.asarray(x) - A
        return -float(np.sum(np.log(np.cosh(z)))), -np.tanh(z)

    hess = GradientHessian(fun, rel_step=1e-6, central=False)
    outcome = maximize(fun, A + OFFSET, 100.0, methods=(), hess_fun=hess)
    assert outcome.converged
    np.testing.assert_allclose(outcome.x, A, rtol=0, atol=1e-10)
    assert abs(outcome.llf) < 1e-20
    np.testing.assert_allclose(outcome.hessian, -np.eye(5), rtol=0, atol=1e-4)
    # one Hessian at the start (5 gradients), one at the optimum for the test and
    # the results (the start is 0.05 away, beyond its reuse of 1e-3); every other
    # evaluation is a step: the old polish took a new Hessian after every step
    steps = outcome.log.evaluations
    assert len(calls) == steps + 2 * A.size, (len(calls), steps)
    assert steps <= 6
