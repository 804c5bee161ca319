"""An approximate Hessian of the profiled llf from one evaluation: the average information.

The crossed engine's evaluation with its gradient can give ``(F, J)``
(:mod:`dlmm.kernels.crossed.information`: ``m r`` solves with the factor it already
has, no inverse). With ``c = [-beta; 1]``, ``qf = c'Sc``, ``fac = n`` (ML) or ``n - p``
(REML), ``z_a = c'J_a c``, ``y_a = (J_a c)_X`` and ``M_ab = c'F_ab c - y_a' S_XX^{-1}
y_b``, the average information along the square-root parameters ``theta`` is

    AI_ab = 2 theta_a theta_b fac / qf (M_ab - z_a z_b / qf) - delta_ab g_a / theta_a

(``g``: the llf's gradient), and ``-AI`` stands for the Hessian where Newton steps need
one but no more: :mod:`dlmm.optimize.qnewton` starts from it instead of ``m (m + 1) / 2``
values (each a factorization). It differs from the Hessian by the observed information's
random part (about ``1 / sqrt(levels)`` relative): the polish and the standard errors
never use it.
"""

from __future__ import annotations

import numpy as np


def information_hessian(information: tuple, hmh: np.ndarray, xy_cross: np.ndarray,
                        n_obs: float, reml: bool, theta: np.ndarray,
                        grad: np.ndarray) -> np.ndarray | None:
    """``-AI`` (m x m) of the module docstring, or None where it is undefined (``S_XX``
    singular, ``qf`` not positive, a result not finite).

    Parameters
    ----------
    information : tuple
        ``(F (m, m, r, r), J (m, r, r))`` of the evaluation at ``theta``.
    hmh : ndarray (r, r)
        The evaluation's ``c'c``; ``S = xy_cross - hmh``.
    theta : ndarray (m,)
        The square-root parameters (one per factor, intercepts only).
    grad : ndarray (m,)
        The llf's gradient along ``theta`` there.
    """
    f, j = information
    s = xy_cross - hmh
    p = s.shape[0] - 1
    try:
        beta = np.linalg.solve(s[:p, :p], s[:p, p]) if p else np.zeros(0)
        c = np.concatenate([-beta, [1.0]])
        qf = float(c @ s @ c)
        jc = j @ c  # (m, r)
        y = jc[:, :p]
        m_ab = np.einsum("abij,i,j->ab", f, c, c) - (
            y @ np.linalg.solve(s[:p, :p], y.T) if p else 0.0)
    except np.linalg.LinAlgError:
        return None
    if not qf > 0.0:
        return None
    z = jc @ c
    fac = n_obs - p if reml else n_obs
    theta = np.asarray(theta, dtype=float)
    ai = 2.0 * np.outer(theta, theta) * fac / qf * (m_ab - np.outer(z, z) / qf)
    safe = np.where(theta > 0.0, theta, 1.0)
    ai[np.diag_indices_from(ai)] -= np.where(theta > 0.0, grad / safe, 0.0)
    hess = -0.5 * (ai + ai.T)
    return hess if np.all(np.isfinite(hess)) else None
