"""A quasi-Newton method for engines whose value costs much less than value and gradient.

Each evaluation of the crossed engine factors its dense part (``dpotrf``, ``Q2^3 / 3``);
its gradient also inverts it (``dpotri``, ``2 Q2^3 / 3``), so a value alone costs about
a third of a value with its gradient (the 10^6 ratings, ``Q2`` = 5,000: 0.45 s against
1.3 s). With its few parameters (one per factor) a good Hessian at the start is cheap
from values, and with it Newton's steps converge in a few gradients where L-BFGS-B,
which starts from a unit step along the gradient, spends some on finding the scale:

1. value and gradient at the start ``x0``;
2. the Hessian there from values alone: ``f(x0 + h_j e_j)`` and ``f(x0 + h_i e_i + h_j
   e_j)`` (``m (m + 1) / 2`` values) with the gradient at ``x0``,

       H_jj = 2 (f_j - f_0 - h_j g_j) / h_j^2,   H_ij = (f_ij - f_i - f_j + f_0) / (h_i h_j),

   ``h_j = rel_step max(|x_j|, 0.1)``, accurate to about ``h_j`` relative (enough for
   steps; the standard errors never come from it);
3. Newton steps ``-H^{-1} g`` from there, halved until the value rises enough
   (Armijo), each accepted step updating ``H`` by BFGS on the change of the gradient,
   until the next step is within ``tol_step`` (relative to ``max(1, |x|)``): the
   optimizer's polish then takes the Hessian at that point (for its test and the
   standard errors) and the last step.

Where the engine gives the average information of its evaluation (``information``: the
crossed engine with intercepts only, :mod:`dlmm.kernels.crossed.information`, from ``m
r`` solves with the factor the start's gradient already has), step 2 takes that instead,
no values: on the 10^6 ratings (ML, from the precision-weighted start) the first step
then leaves a gradient of 0.35 where the Hessian of values left 2.9, and the fit takes 5
gradients and no values where it took 5 and 3 (InstEval, REML: 7 gradients and no
values, 7 and 3 before; three factors 10 and none, 12 and 6).

Measured on the 10^6 ratings (ML, two factors, from the one-way moment start): 4
gradients and 3 values (the start's steps 1.2e-2, 7e-4, 5e-5, then 2e-7 left) where
L-BFGS-B took 7 gradients to come within 1e-6.

Where the Hessian from values is not negative definite, or a step finds no rise, the
method reports failure and the optimizer's next method (L-BFGS-B) takes over from the
best point seen.

With ``noise`` (the crossed engine's float32 evaluations, :data:`SINGLE_NOISE`) a step
may lower the value by that much and still be taken, and steps that stop shrinking
below :data:`NOISE_STEP` end the method as well: the float64 polish takes it from
there (:mod:`dlmm.optimize.driver`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: Largest Newton step (relative to ``max(1, |x|)``) at which the method hands the
#: point to the polish: the polish's Hessian, taken there, is then within its reuse
#: (1e-6) of the optimum.
TOL_STEP = 5e-7

#: Relative error of the llf the method allows for in the crossed engine's coarse
#: phase (its Schur complement in float32, :mod:`dlmm.kernels.crossed.single`):
#: measured on the 10^6 ratings, 1.5e-6 to 7.6e-6 in an llf of 1.46e6 (about 5e-12
#: relative), the gradient within 6e-5 (its Hessian about 5e4): this allows 200
#: times as much.
SINGLE_NOISE = 1e-9

#: Steps (relative to ``max(1, |x|)``) below which, with noisy values, a step that does
#: not halve the one before means the values' precision is reached.
NOISE_STEP = 1e-4


@dataclass
class QuasiNewtonResult:
    """Outcome of :func:`quasi_newton`."""

    x: np.ndarray
    success: bool
    message: str
    nit: int
    nfev: int


def value_hessian(value: Callable[[np.ndarray], float], x: np.ndarray, llf: float,
                  grad: np.ndarray, rel_step: float = 1e-3) -> np.ndarray:
    """The Hessian of ``value`` at ``x`` (whose value ``llf`` and gradient ``grad`` are
    known) from ``m (m + 1) / 2`` more values (see the module docstring)."""
    m = x.shape[0]
    steps = rel_step * np.maximum(np.abs(x), 0.1)
    ones = [value(x + steps[j] * np.eye(m)[j]) for j in range(m)]  # loop over parameters
    hess = np.zeros((m, m))
    for j in range(m):
        hess[j, j] = 2.0 * (ones[j] - llf - steps[j] * grad[j]) / steps[j] ** 2
        for i in range(j):
            pair = value(x + steps[i] * np.eye(m)[i] + steps[j] * np.eye(m)[j])
            hess[i, j] = hess[j, i] = (pair - ones[i] - ones[j] + llf) / (steps[i] * steps[j])
    return hess


def _positive_definite(b: np.ndarray) -> bool:
    if not np.all(np.isfinite(b)):
        return False
    try:
        np.linalg.cholesky(b)
    except np.linalg.LinAlgError:
        return False
    return True


def start_hessian(information, value: Callable[[np.ndarray], float], x: np.ndarray,
                  llf: float, grad: np.ndarray, rel_step: float) -> tuple[np.ndarray, int]:
    """``-H`` at the start and the values it took: ``information(x)`` (an approximate
    Hessian from the start's own evaluation, none) where it is given and negative
    definite, else :func:`value_hessian`."""
    if information is not None:
        hess = information(x)
        if hess is not None and _positive_definite(-hess):
            return -hess, 0
    return -value_hessian(value, x, llf, grad, rel_step), x.size * (x.size + 1) // 2


def quasi_newton(llf_grad: Callable[[np.ndarray], tuple[float, np.ndarray]],
                 value: Callable[[np.ndarray], float], x0: np.ndarray,
                 max_iter: int = 30, rel_step: float = 1e-3,
                 tol_step: float = TOL_STEP, noise: float = 0.0,
                 information: Callable[[np.ndarray], np.ndarray | None] | None = None,
                 ) -> QuasiNewtonResult:
    """Maximize ``llf`` from ``x0`` by the method of the module docstring.

    Parameters
    ----------
    llf_grad : callable
        ``x -> (llf, gradient)``; ``-inf`` where the likelihood is undefined.
    value : callable
        ``x -> llf`` alone (cheaper).
    x0 : ndarray
    max_iter : int
        Newton steps at most.
    rel_step : float
        Relative step of the Hessian's differences of values.
    tol_step : float
        Stop (successfully) when the next step is this small, relative to
        ``max(1, |x|)``.
    noise : float
        Relative error of the values and gradients (0: float64's rounding; the crossed
        engine's coarse phase, :data:`SINGLE_NOISE`): a step is accepted if the value
        falls by no more than ``noise max(1, |llf|)``, and once the steps no longer
        shrink (at most :data:`NOISE_STEP`, not half the one before) the point is as
        good as such values can tell, a success.
    information : callable, optional
        ``x -> H`` (or None), an approximate Hessian from the evaluation at ``x`` itself
        (the crossed engine's average information,
        :meth:`dlmm.objective.objective.ProfiledObjective.information`): the start's
        Hessian, where it is negative definite, in place of the values'.
    """
    x = np.asarray(x0, dtype=float).copy()
    nfev = 1
    try:  # (before llf_grad: its evaluation, kept by the engine, serves both)
        first = information(x) if information is not None else None
    except (np.linalg.LinAlgError, FloatingPointError, ZeroDivisionError):
        first = None
    llf, grad = llf_grad(x)
    if not (np.isfinite(llf) and np.all(np.isfinite(grad))):
        return QuasiNewtonResult(x, False, "the likelihood is undefined at the start", 0, nfev)
    # minus the Hessian: PD at a maximum
    b, values = start_hessian(None if first is None else (lambda _: first), value, x, llf,
                              grad, rel_step)
    nfev += values
    if not _positive_definite(b):
        return QuasiNewtonResult(x, False, "the Hessian at the start is not negative "
                                 "definite", 0, nfev)
    last = np.inf
    for it in range(max_iter):
        step = np.linalg.solve(b, grad)
        size = float(np.max(np.abs(step) / np.maximum(1.0, np.abs(x))))
        if size <= tol_step:
            return QuasiNewtonResult(x, True, "the Newton step is within tolerance", it, nfev)
        if noise and size <= NOISE_STEP and size > 0.5 * last:
            return QuasiNewtonResult(x, True, "the Newton steps no longer shrink at the "
                                     "values' precision", it, nfev)
        last = size
        t = 1.0
        for _ in range(20):
            cand = x + t * step
            cand_llf, cand_grad = llf_grad(cand)
            nfev += 1
            slack = noise * max(1.0, abs(llf))
            if np.isfinite(cand_llf) and np.all(np.isfinite(cand_grad)) \
                    and cand_llf >= llf + 1e-4 * t * float(grad @ step) - slack:
                break
            t *= 0.5
        else:
            return QuasiNewtonResult(x, False, "no step raised the likelihood", it, nfev)
        s = cand - x
        y = grad - cand_grad  # the change of the gradient of -llf
        sy = float(s @ y)
        if sy > 1e-12 * float(np.linalg.norm(s) * np.linalg.norm(y)):
            bs = b @ s
            b = b - np.outer(bs, bs) / float(s @ bs) + np.outer(y, y) / sy
        x, llf, grad = cand, cand_llf, cand_grad
    return QuasiNewtonResult(x, False, f"no convergence in {max_iter} steps", max_iter, nfev)
