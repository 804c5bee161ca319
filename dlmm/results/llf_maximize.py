"""The inner maximization of a likelihood profile: the llf over the free parameters
with one held fixed (:mod:`dlmm.results.profile`, :mod:`dlmm.results.terms_profile`)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import optimize


def maximize_llf(fun: Callable[[np.ndarray], tuple[float, np.ndarray]], start: np.ndarray,
                 n: int, constraint=None, *, gtol: float = 1e-10, ftol: float = 1e-14,
                 maxiter: int = 1000) -> tuple[np.ndarray, float]:
    """``(x, llf)`` at the largest ``llf`` of ``fun(x) -> (llf, gradient)`` from ``start``.

    Minimizes ``-llf / n`` (``n`` the rows: per-row values keep the tolerances
    meaningful across data sizes): by L-BFGS-B (``gtol``, ``ftol``, ``maxiter``), or
    under ``constraint`` (a :mod:`scipy.optimize` constraint: one parameter held on its
    profile's line) by SLSQP (``ftol``, at most 500 iterations). A point where ``fun``
    is not finite, or where its factorization fails (a step far out, SLSQP's near a
    boundary), is worse than any other.
    """

    def neg(x):
        try:
            llf, grad = fun(x) if np.all(np.isfinite(x)) else (-np.inf, None)
        except np.linalg.LinAlgError:
            llf = -np.inf
        if not np.isfinite(llf):
            return 1e300, np.zeros_like(x)
        return -llf / n, -grad / n

    if constraint is None:
        res = optimize.minimize(neg, start, jac=True, method="L-BFGS-B",
                                options={"maxiter": maxiter, "gtol": gtol, "ftol": ftol})
    else:
        res = optimize.minimize(neg, start, jac=True, method="SLSQP",
                                constraints=[constraint],
                                options={"maxiter": 500, "ftol": ftol})
    return res.x, -res.fun * n
