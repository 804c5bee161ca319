"""The Newton steps' arithmetic for :func:`dlmm.optimize.driver.maximize`: the Newton
decrement and step, the convergence test, and the way off a saddle (an ascent direction
of the Hessian and the step lengths to try along it)."""

from __future__ import annotations

import numpy as np


def newton_decrement(grad: np.ndarray, hess: np.ndarray) -> tuple[float, np.ndarray | None]:
    """``g'(-H)^{-1}g / 2`` and the Newton step, or ``(inf, None)`` if -H is not PD
    (or either is not finite: a point where the likelihood is undefined)."""
    if not (np.all(np.isfinite(grad)) and np.all(np.isfinite(hess))):
        return np.inf, None
    try:
        chol = np.linalg.cholesky(-hess)
    except np.linalg.LinAlgError:
        return np.inf, None
    step = np.linalg.solve(chol.T, np.linalg.solve(chol, grad))
    return float(0.5 * grad @ step), step


def converged_test(grad: np.ndarray, hess: np.ndarray | None, tol_llf: float,
               tol_grad: float) -> bool:
    """The convergence test of the module docstring at one point."""
    if hess is None or not np.all(np.isfinite(grad)) or not np.all(np.isfinite(hess)):
        return False
    decrement, _ = newton_decrement(grad, hess)
    if np.isfinite(decrement):
        return decrement <= tol_llf
    grad_max = float(np.max(np.abs(grad))) if grad.size else 0.0
    return grad_max <= tol_grad and ascent_direction(hess) is None


def ascent_direction(hess: np.ndarray | None) -> np.ndarray | None:
    """Unit eigenvector of the largest clearly positive eigenvalue of the llf's
    Hessian (a direction in which the llf curves up), or None."""
    if hess is None or hess.size == 0 or not np.all(np.isfinite(hess)):
        return None
    w, v = np.linalg.eigh(0.5 * (hess + hess.T))
    if w[-1] <= 1e-8 * max(1.0, float(np.max(np.abs(w)))):
        return None
    return v[:, -1]


#: Gain of llf (relative to ``max(1, |llf|)``) that counts as leaving a saddle: above
#: the rounding of the llf, so that an escape is never a step within noise.
ESCAPE_GAIN = 1e-10


def escape_steps(x: np.ndarray, llf: float, hess: np.ndarray) -> list[float]:
    """Step lengths to try along the ascent direction of ``hess`` from the stationary
    point ``x``: 0.05, 0.2 and 1 times ``max(1, |x|)``, then shorter ones, each a
    quarter of the one before, down to where the quadratic model's gain
    ``lambda t^2 / 2`` (``lambda``: the positive curvature) falls to the rounding of
    the llf. The likelihood of the interior is thus compared with the boundary's
    however close to the boundary the maximum lies (a variance whose maximum is
    1e-4 of the residual's: the first steps overshoot it and lose)."""
    radius = max(1.0, float(np.linalg.norm(x)))
    steps = [0.05 * radius, 0.2 * radius, radius]
    curvature = float(np.linalg.eigvalsh(0.5 * (hess + hess.T))[-1])
    shortest = np.sqrt(2 * ESCAPE_GAIN * max(1.0, abs(llf)) / curvature)
    t = steps[0] / 4
    while t >= shortest and len(steps) < 40:
        steps.append(t)
        t /= 4
    return steps
