"""Points where the likelihood is undefined, met inside the polish and the escape step
(issue 10, item 7): they count as ``llf = -inf`` and the optimizer steps back, never crashes.

The objectives are small closed forms whose Newton steps and saddle escapes are known, with
a region where evaluating raises as the profiled likelihood does when ``X'V^-1 X`` is
singular or the residual quadratic form is not positive.
"""

from __future__ import annotations

import numpy as np

from dlmm.exceptions import InfeasiblePoint
from dlmm.optimize.driver import maximize


def _log_cosh(x: np.ndarray):
    """``llf = -log cosh(x - 1)``: a maximum at 1 whose Newton step from -1 overshoots to
    about 12.6; every point above 3 is infeasible."""
    z = float(x[0]) - 1.0
    if x[0] > 3.0:
        raise InfeasiblePoint("the residual quadratic form is -1 here (not positive)")
    llf = -np.log(np.cosh(z))
    return llf, np.array([-np.tanh(z)]), np.array([[-1.0 / np.cosh(z) ** 2]])


def test_polish_steps_back_from_an_infeasible_newton_step():
    outcome = maximize(lambda x: _log_cosh(x)[:2], np.array([-1.0]), 100.0, methods=(),
                       hess_fun=_log_cosh)
    assert outcome.converged
    assert abs(outcome.x[0] - 1.0) < 1e-8
    assert outcome.llf == 0.0 or abs(outcome.llf) < 1e-14
    # the infeasible trial point was logged as -inf, not taken
    assert any(e.llf == -np.inf for e in outcome.log.entries)


def _saddle(x: np.ndarray):
    """``llf = -a^2 + b^2 - b^4``: a saddle at the origin, maxima at ``b = +-1/sqrt 2``
    (llf 1/4); ``b > 0`` is infeasible (a singular ``X'V^-1 X``, say)."""
    a, b = float(x[0]), float(x[1])
    if b > 0:
        raise np.linalg.LinAlgError("Matrix is not positive definite")
    llf = -a * a + b * b - b**4
    grad = np.array([-2 * a, 2 * b - 4 * b**3])
    hess = np.array([[-2.0, 0.0], [0.0, 2 - 12 * b * b]])
    return llf, grad, hess


def test_escape_step_skips_an_infeasible_side_of_a_saddle():
    outcome = maximize(lambda x: _saddle(x)[:2], np.zeros(2), 100.0, methods=("bfgs",),
                       hess_fun=_saddle)
    assert outcome.converged
    np.testing.assert_allclose(outcome.x, [0.0, -1 / np.sqrt(2)], atol=1e-7)
    assert abs(outcome.llf - 0.25) < 1e-12
