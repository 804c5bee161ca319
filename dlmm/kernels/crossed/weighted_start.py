"""Start values of theta for two crossed intercepts, nearer the optimum than one-way moments.

:func:`~.theta.moment_theta` takes each factor's levels as equally informative. Here
each level's mean OLS residual ``r_l = s_l / n_l`` is weighed by its precision, as the
likelihood weighs it: with the other factor's variance ``tau_o^2`` and the residual
variance ``sigma^2``, ``r_l`` has variance ``tau^2 + w_l``, ``w_l = (sigma^2 + tau_o^2
q_l / n_l) / n_l`` (``q_l``: the sum over the other factor's levels of the squared
counts of rows the two share), and ``tau^2`` solves the one-way likelihood equation

    sum_l r_l^2 / (tau^2 + w_l)^2 = sum_l 1 / (tau^2 + w_l)

(one root, by bisection); ``sigma^2`` from the residual sum of squares,
``RSS ~ (n - p) sigma^2 + sum_k tau_k^2 (n - sum_l n_l^2 / n)``. A few rounds over the
two factors from the moment start. Measured on the 10^6 ratings (ML): theta within
7e-3 and 5e-3 of the optimum (the one-way moments: 6e-5 and 3e-2), and the fit one
float32 gradient shorter (:mod:`dlmm.optimize.qnewton`'s steps from there: 2, not 3).
"""

from __future__ import annotations

import numpy as np

from .theta import ols_residual

#: Rounds over the two factors (the 10^6 ratings: the third changes theta by 1e-6).
ROUNDS = 3


def _one_way(r: np.ndarray, w: np.ndarray) -> float:
    """The root ``t >= 0`` of ``sum r^2 / (t + w)^2 - sum 1 / (t + w)`` (0 if none)."""
    def score(t):
        v = t + w
        return float(np.sum(r * r / (v * v)) - np.sum(1.0 / v))

    if score(0.0) <= 0.0:
        return 0.0
    lo, hi = 0.0, max(float(np.mean(r * r)), 1e-300)
    while score(hi) > 0.0 and hi < 1e300:
        lo, hi = hi, 4.0 * hi
    for _ in range(100):  # bisection to float64's resolution
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        lo, hi = (mid, hi) if score(mid) > 0.0 else (lo, mid)
    return 0.5 * (lo + hi)


def weighted_theta(system, theta: np.ndarray, floor: float = 0.1) -> np.ndarray:
    """``theta`` (the moment start, the system's factor order) refined as the module
    docstring says, for two factors with intercepts only; otherwise ``theta`` as given
    (also where OLS cannot fit, or a result is not finite)."""
    theta = np.asarray(theta, dtype=float)
    ols = ols_residual(system)
    if not system.intercepts_only or len(system.rest) != 1 or ols is None:
        return theta
    c, _ = ols
    n = float(system.n_rows)
    p = system.xy_cross.shape[0] - 1
    rss = float(c @ system.xy_cross @ c)
    first, rest = system.first, system.rest[0]
    squares = system.g21.multiply(system.g21)  # (levels of rest, levels of first)
    levels = {first: (system.d[:, 0, 0], system.h1[:, 0, :] @ c,
                      np.asarray(squares.sum(axis=0)).ravel()),
              rest: (system.g22.diagonal(), system.h2 @ c,
                     np.asarray(squares.sum(axis=1)).ravel())}
    sigma2 = rss / (n - p) / (1.0 + float(theta @ theta))
    tau2 = theta * theta * sigma2
    spread = {k: n - float(np.sum(counts**2)) / n for k, (counts, _, _) in levels.items()}
    for _ in range(ROUNDS):
        for k, other in ((first, rest), (rest, first)):
            counts, sums, shared = levels[k]
            seen = counts > 0
            nk = counts[seen]
            w = (sigma2 + tau2[other] * shared[seen] / nk) / nk
            tau2[k] = _one_way(sums[seen] / nk, w)
        sigma2 = max((rss - sum(tau2[k] * spread[k] for k in levels)) / (n - p),
                     0.1 * rss / (n - p))
    out = np.maximum(np.sqrt(tau2 / sigma2), floor)
    return out if np.all(np.isfinite(out)) else theta
