"""Exact maps between the centred, scaled one pass and the model's own parameters.

With the shifts of :class:`dlmm.spec.centering.Centering` (``m_x`` for the
columns of ``X``, 0 at the intercept ``i0``; ``m_y``; ``m_z`` for ``Z``, 0 at its
intercept ``k0``) and its scales (``D = diag(d_x)``, ``d_y``, ``E = diag(e_z)``;
1 at the intercepts):

Fixed effects: ``X_c = (X - 1 m_x') D^{-1}`` and ``y_c = (y - m_y) / d_y`` give
``beta = A beta_c + a`` with ``A = d_y (I - e_i0 m_x') D^{-1}`` and
``a = m_y e_i0``. Covariances and Hessians in ``(beta, theta)`` follow from the
constant Jacobian ``J = blockdiag(A, I)``.

Scale and likelihood: ``Psi`` and ``vcomp / scale`` do not change with the
response's units; ``scale = d_y^2 scale_c`` and the log-likelihood is the
centred one plus the log-Jacobian, ``-fac log d_y`` (``fac = n - p`` for REML,
``n`` for ML) and, for REML, ``-sum log d_x`` (from ``log|X'V^-1 X|``)
(:func:`log_jacobian`; :func:`~dlmm.objective.profiled.profiled_value` with
``xy_scale``).

Random effects: ``Z = Z_c U`` with ``U = E (I + e_k0 m_z')``, so ``V`` at ``Psi``
equals the centred ``V`` at ``Psi_c = U Psi U'``; the pieces summed on the
centred statistics map back with ``U`` (``P = U'P_c U``, ``R = U'R_c``) and, for
the Hessian and moment sums indexed by packed parameters, with the matrix
``M`` of ``E_j -> U E_j U'`` in the packed basis. Effects: ``b = d_y U^{-1} b_c``.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..kernels.hessian import HessianPieces, NewtonPieces
from ..kernels.moments import MomentPieces
from ..kernels.pieces import LikelihoodPieces


def fixed_effects_map(xy_shift: np.ndarray, x_intercept: int | None,
                      xy_scale: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(A, a)`` with ``beta = A beta_c + a`` (identity and zero without an intercept
    and scales)."""
    p = xy_shift.shape[0] - 1
    a_mat = np.eye(p)
    offset = np.zeros(p)
    if x_intercept is not None:
        a_mat[x_intercept, :] -= xy_shift[:p]
        a_mat[x_intercept, x_intercept] = 1.0
        offset[x_intercept] = xy_shift[p]
    if xy_scale is not None:
        a_mat = a_mat * (xy_scale[p] / xy_scale[:p])[None, :]
    return a_mat, offset


def random_effects_map(z_shift: np.ndarray, z_intercept: int | None,
                       z_scale: np.ndarray | None = None) -> np.ndarray:
    """``U`` with ``Z = Z_c U`` (the identity without a shift and scales)."""
    k = z_shift.shape[0]
    u = np.eye(k)
    if z_intercept is not None:
        u[z_intercept, :] += z_shift
        u[z_intercept, z_intercept] = 1.0
    if z_scale is not None:
        u = np.asarray(z_scale, dtype=float)[:, None] * u
    return u


def log_jacobian(xy_scale: np.ndarray, n_obs: float, reml: bool) -> float:
    """The model's log-likelihood minus the scaled pass's (see the module docstring)."""
    xy_scale = np.asarray(xy_scale, dtype=float)
    p = xy_scale.shape[0] - 1
    fac = n_obs - p if reml else n_obs
    out = -fac * np.log(xy_scale[p])
    if reml:
        out -= float(np.sum(np.log(xy_scale[:p])))
    return float(out)


def packed_map(u: np.ndarray, k_vc: int) -> np.ndarray:
    """``M`` with ``U E_j U' = sum_k M[j, k] E_k`` over the packed directions
    (lower triangle of ``Psi`` row by row, then the components, unchanged)."""
    k = u.shape[0]
    rows, cols = np.tril_indices(k)
    m = rows.shape[0]
    out = np.zeros((m + k_vc, m + k_vc))
    for j, (a, b) in enumerate(zip(rows, cols)):  # loop over parameters
        e = np.zeros((k, k))
        e[a, b] = e[b, a] = 1.0
        mapped = u @ e @ u.T
        out[j, :m] = mapped[rows, cols]
    out[m:, m:] = np.eye(k_vc)
    return out


def raw_pieces(pieces: LikelihoodPieces, u: np.ndarray) -> LikelihoodPieces:
    """Value and gradient pieces of the centred statistics in the model's ``Psi`` (any
    further directions, such as the residual strata's weights, are the same in both)."""
    return replace(
        pieces, p_re=u.T @ pieces.p_re @ u,
        t_re=np.einsum("ca,db,cdij->abij", u, u, pieces.t_re),
    )


def raw_newton_pieces(pieces: NewtonPieces, u: np.ndarray, m: np.ndarray) -> NewtonPieces:
    """Value, gradient and Hessian pieces of the centred statistics in the model's ``Psi``."""
    h = pieces.hess
    hess = HessianPieces(
        hmh=h.hmh, trace2=m @ h.trace2 @ m.T, d1=np.einsum("jk,kab->jab", m, h.d1),
        d2=np.einsum("jk,lm,kmab->jlab", m, m, h.d2),
    )
    return NewtonPieces(raw_pieces(pieces.value, u), hess)


def raw_moment_pieces(pieces: MomentPieces, m: np.ndarray) -> MomentPieces:
    """Moment equations in the model's packed parameters (``theta_c = M' theta``)."""
    return MomentPieces(pieces.lhs, pieces.g, pieces.design @ m.T, pieces.explained,
                        pieces.rank)


def parameter_jacobian(a_mat: np.ndarray, u: np.ndarray | None, k_re: int,
                       k_vc: int) -> np.ndarray:
    """``J`` with ``params = J params_c + const``: ``blockdiag(A, N')`` where
    ``N = packed_map(U^{-1})`` maps the centred packed covariance parameters to the
    model's (``Psi = U^{-1} Psi_c U^{-T}``); the components are unchanged."""
    p = a_mat.shape[0]
    m = k_re * (k_re + 1) // 2 + k_vc
    j = np.eye(p + m)
    j[:p, :p] = a_mat
    if u is not None:
        j[p:, p:] = packed_map(np.linalg.inv(u), k_vc).T
    return j


def raw_covariance(cov: np.ndarray, jac: np.ndarray) -> np.ndarray:
    """``J cov J'``: the covariance of the model's parameters from the centred one."""
    return jac @ cov @ jac.T


def raw_hessian(hess: np.ndarray, jac: np.ndarray) -> np.ndarray:
    """``J^{-T} H J^{-1}``: the Hessian in the model's parameters from the centred one."""
    j_inv = np.linalg.inv(jac)
    return j_inv.T @ hess @ j_inv


def centred_fixed_effects(beta: np.ndarray, a_mat: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """``beta_c = A^{-1} (beta - a)``."""
    return np.linalg.solve(a_mat, beta - offset)
