"""The average-information pieces of an evaluation: a Hessian for Newton steps, no inverse.

With ``V = I + Z Lambda Lambda' Z'`` (relative to ``sigma^2``), intercepts only, the
derivative along ``theta_a`` is ``V_a = 2 theta_a Z_a Z_a'``. The average information
(the observed and expected information's mean, Gilmour, Thompson and Cullis 1995) of the
profiled log-likelihood, with ``r = V^{-1}(y - X beta)``, ``Q = V^{-1} - V^{-1}X
S_XX^{-1} X'V^{-1}`` and ``sigma^2 = c'Sc / fac``, is

    AI_ab = r'V_a Q V_b r / (2 sigma^2) - (r'V_a r)(r'V_b r) / (2 fac sigma^4)
            - delta_ab g_a / theta_a

(the last term is the observed information's ``V_aa = V_a / theta_a`` part exactly: minus
the gradient over ``theta_a``; :func:`dlmm.objective.information.information_hessian`
contracts it). With ``z = Z'r = R c`` (``R = Z'V^{-1}[X y]``, the gradient's,
:func:`.gradient.residual_products`; ``c = [-beta; 1]``), ``W_a = E_a R`` (``R`` on
factor ``a``'s levels) and ``Z'V^{-1}Z = G - G Lambda C^{-1} Lambda G``:

    r'V_a r       = 2 theta_a c'J_a c,              J_a  = W_a'W_a
    r'V_a Q V_b r = 4 theta_a theta_b (c'F_ab c - (J_a c)_X' S_XX^{-1} (J_b c)_X),
                                                    F_ab = W_a'(G - G Lambda C^{-1} Lambda G) W_b

``J`` and ``F`` (``O(m^2 r^2)`` numbers) are what an evaluation gives; they cost ``m r``
solves with the factor of ``C`` (its Schur part's triangular solves, ``O(Q2^2)`` each)
and products with ``G``: no inverse, no factorization. The Newton steps of
:mod:`dlmm.optimize.qnewton` start from it instead of a Hessian of values (``m (m + 1)
/ 2`` factorizations). It is not the Hessian (their difference is the observed
information's random part, about ``1 / sqrt(levels)`` relative); the polish and the
standard errors never use it.
"""

from __future__ import annotations

import numpy as np

from .factor import CrossedFactor, dense_theta, tri_solve
from .system import CrossedSystem


def _g_product(system: CrossedSystem, v1: np.ndarray, v2: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """``G [v1; v2]`` (intercepts only: ``G11`` is the diagonal of counts ``d``)."""
    d = system.d[:, 0, 0]
    return (d[:, None] * v1 + system.g21_t @ v2,
            system.g21 @ v1 + system.g22_sparse() @ v2)


def _c_solve(system: CrossedSystem, factor: CrossedFactor, v1: np.ndarray, v2: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
    """``C^{-1} [v1; v2]`` by block elimination on the factor: ``x2 = A^{-1}(v2 - C21
    C11^{-1} v1)``, ``x1 = C11^{-1}(v1 - C12 x2)`` (``C21 = Lambda_2 G21 Lambda_1``)."""
    theta1 = float(factor.factors[system.first][0, 0])
    lam2 = dense_theta(system, factor.factors)[:, None]
    c11 = 1.0 + theta1 * theta1 * system.d[:, 0, 0][:, None]
    u2 = v2 - lam2 * (system.g21 @ (theta1 * v1 / c11))
    if system.dense_size:
        x2 = tri_solve(factor.l22, tri_solve(factor.l22, u2, trans=False), trans=True)
    else:
        x2 = u2
    x1 = (v1 - theta1 * (system.g21_t @ (lam2 * x2))) / c11
    return x1, x2


def information_pieces(system: CrossedSystem, factor: CrossedFactor, r1: np.ndarray,
                       r2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(F, J)`` of the module docstring at the factor's theta, intercepts only.

    Parameters
    ----------
    r1 : ndarray (l_1, 1, r)
        ``R`` on factor 1's levels; ``r2`` (Q2, r) on the dense part.

    Returns
    -------
    F : ndarray (m, m, r, r)
    J : ndarray (m, r, r)
        In the caller's factor order (``m`` factors).
    """
    m = len(system.n_levels)
    l1, r = r1.shape[0], r1.shape[2]
    q2 = system.dense_size
    theta1 = float(factor.factors[system.first][0, 0])
    lam2 = dense_theta(system, factor.factors)[:, None]
    # W_a = E_a R for every factor, side by side: (levels, m r)
    w1 = np.zeros((l1, m * r))
    w2 = np.zeros((q2, m * r))
    w1[:, system.first * r:(system.first + 1) * r] = r1[:, 0, :]
    for k, off in zip(system.rest, system.rest_offsets):
        sl = slice(off, off + system.n_levels[k])
        w2[sl, k * r:(k + 1) * r] = r2[sl]
    gw1, gw2 = _g_product(system, w1, w2)
    x1, x2 = _c_solve(system, factor, theta1 * gw1, lam2 * gw2)
    h1, h2 = _g_product(system, theta1 * x1, lam2 * x2)
    u1, u2 = gw1 - h1, gw2 - h2
    f = (w1.T @ u1 + w2.T @ u2).reshape(m, r, m, r).transpose(0, 2, 1, 3)
    j = (w1.T @ w1 + w2.T @ w2).reshape(m, r, m, r)[np.arange(m), :, np.arange(m), :]
    return 0.5 * (f + f.transpose(1, 0, 3, 2)), j
