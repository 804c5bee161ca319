"""Exact second derivatives along the dense part's factors from the Schur part's inverse.

Intercepts only, ``Lambda = sum_k theta_k E_k`` (``E_k``: factor ``k``'s levels), ``P =
C^{-1}``, ``dC_a = E_a G Lambda + Lambda G E_a``. Since ``Lambda G Lambda = C - I``,
``theta_a P dC_a = P E_a C + E_a - 2 P E_a`` and (``CP = I``)

    d2 log|C|_ab = 2 <P_ab, G_ab> - (2 delta_ab n_a + 2 <P_ab, C_ab> - 8 delta_ab tr P_aa
                   + 4 ||P_ab||_F^2) / (theta_a theta_b)

(``n_a`` levels; ``X_ab``: the block of rows ``a``, columns ``b``). For ``a, b`` in the
dense part every term is read from ``A^{-1} = P22``, the inverse the gradient has
(:mod:`.inverse`): ``O(Q2^2)``, no factorization. With the first factor ``||P_1b||`` is
the whole ``l_1 x Q2`` block of ``P``, not at hand: its column of the Hessian is left to
differences of the gradient (:class:`dlmm.objective.pair_hessian.PairGradientHessian`:
one evaluation, not ``m``). ``c'c = H'Lambda P Lambda H`` has, with ``B = P Lambda H``,
``R = H - G Lambda B`` and ``Y_a = E_a R - Lambda G E_a B``,

    d2 (c'c)_ab = Y_a' P Y_b + Y_b' P Y_a - (E_a B)' G (E_b B) - (E_b B)' G (E_a B)

(``P Y_b`` by block elimination with ``A^{-1}``). Both are NaN off the dense pairs and
where a ``theta`` of the pair is 0 (the formula divides by it).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg.blas as blas

from .factor import CrossedFactor, dense_theta
from .inverse import lower_at
from .system import CrossedSystem

#: Columns of the inverse's lower triangle summed at a time (:func:`_lower_squares`).
CHUNK = 512


def _lower_squares(ainv: np.ndarray, rows: slice, cols: slice) -> float:
    """``sum A^{-1}_ij^2`` over the block ``rows x cols`` of the symmetric ``A^{-1}``,
    read from its lower triangle (``rows`` at or after ``cols``; the same range: the
    whole square block, both triangles, counted from the lower one)."""
    total = 0.0
    if rows != cols:
        for j in range(cols.start, cols.stop, CHUNK):  # loop over column chunks
            part = ainv[rows, j:min(j + CHUNK, cols.stop)]
            total += float(np.einsum("ij,ij->", part, part, dtype=np.float64))
        return total
    diagonal = 0.0
    for j in range(cols.start, cols.stop, CHUNK):  # loop over column chunks
        hi = min(j + CHUNK, cols.stop)
        square = np.tril(ainv[j:hi, j:hi])
        below = ainv[hi:rows.stop, j:hi]
        total += float(np.einsum("ij,ij->", square, square, dtype=np.float64))
        total += float(np.einsum("ij,ij->", below, below, dtype=np.float64))
        diagonal += float(np.sum(np.diagonal(ainv[j:hi, j:hi]).astype(np.float64) ** 2))
    return 2.0 * total - diagonal


def _ainv_product(ainv: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``A^{-1} b`` from the lower triangle, in the inverse's precision: BLAS ``symv`` a
    column at a time (``Q2`` = 5,000, three columns: 2.5 times faster than one ``symm``,
    which is poorly blocked for so few)."""
    symv = blas.ssymv if ainv.dtype == np.float32 else blas.dsymv
    out = np.empty(b.shape)
    for j in range(b.shape[1]):  # loop over the few columns
        out[:, j] = symv(1.0, ainv, np.asarray(b[:, j], dtype=ainv.dtype), lower=1)
    return out


def dense_pair_hessian(system: CrossedSystem, factor: CrossedFactor, ainv: np.ndarray,
                       b1: np.ndarray, b2: np.ndarray, r2: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray] | None:
    """``(d2 log|C|, d2 (c'c))`` (``(m, m)``, ``(m, m, r, r)``, caller's factor order) on
    the pairs of the dense part's factors, NaN elsewhere (see the module docstring); None
    where no entry is known.

    Parameters
    ----------
    ainv : ndarray (Q2, Q2)
        ``A^{-1}`` by its lower triangle (dense: ``dpotri``'s or ``spotri``'s).
    b1, b2 : ndarray
        ``B = C^{-1} Lambda'H`` on factor 1 ``(l_1, 1, r)`` and the dense part ``(Q2, r)``.
    r2 : ndarray (Q2, r)
        ``R = Z'V^{-1}[X y]`` on the dense part.
    """
    m = len(system.n_levels)
    r = r2.shape[1]
    theta = np.array([float(f[0, 0]) for f in factor.factors])
    rest = [k for k in system.rest if theta[k] > 0.0]
    if not rest:
        return None
    theta1 = theta[system.first]
    lam2 = dense_theta(system, factor.factors)[:, None]
    c11 = 1.0 + theta1 * theta1 * system.d[:, 0, 0][:, None]
    g22 = system.g22_sparse()
    span = {k: slice(off, off + system.n_levels[k])
            for k, off in zip(system.rest, system.rest_offsets)}
    # <P_ab, G_ab> over G22's nonzeros (both triangles), tr P_aa, ||P_ab||^2
    rows, cols, values, flat = system.g22_entries()
    owner = np.full(system.dense_size, -1, dtype=np.int64)
    for k in rest:
        owner[span[k]] = k
    pg = np.zeros((m, m))
    keep = (owner[rows] >= 0) & (owner[cols] >= 0)
    np.add.at(pg, (owner[rows[keep]], owner[cols[keep]]),
              values[keep] * lower_at(ainv, flat[keep]))
    diagonal = np.diagonal(ainv).astype(np.float64)
    # Y_b = E_b R - Lambda G E_b B and P Y_b, every factor of the dense part side by side
    w = np.zeros((system.dense_size, len(rest) * r))  # E_b B
    y2 = np.zeros_like(w)
    for i, k in enumerate(rest):
        cols_k = slice(i * r, (i + 1) * r)
        w[span[k], cols_k] = b2[span[k]]
        y2[span[k], cols_k] = r2[span[k]]
    gw = g22 @ w
    y1 = -theta1 * (system.g21_t @ w)
    y2 = y2 - lam2 * gw
    u2 = y2 - lam2 * (system.g21 @ (theta1 * y1 / c11))
    x2 = _ainv_product(ainv, u2)
    x1 = (y1 - theta1 * (system.g21_t @ (lam2 * x2))) / c11
    ypy = y1.T @ x1 + y2.T @ x2  # (|rest| r, |rest| r)
    bgb = w.T @ gw
    d2logdet = np.full((m, m), np.nan)
    d2ctc = np.full((m, m, r, r), np.nan)
    for i, a in enumerate(rest):  # loop over the dense part's factor pairs
        for j, b in enumerate(rest[:i + 1]):
            squares = _lower_squares(ainv, span[a], span[b])
            same = a == b
            trace = float(diagonal[span[a]].sum()) if same else 0.0
            p_c = theta[a] * theta[b] * pg[a, b] + trace
            value = 2.0 * pg[a, b] - (2.0 * same * system.n_levels[a] + 2.0 * p_c
                                      - 8.0 * trace + 4.0 * squares) / (theta[a] * theta[b])
            ia, ib = slice(i * r, (i + 1) * r), slice(j * r, (j + 1) * r)
            block = ypy[ia, ib] + ypy[ib, ia] - bgb[ia, ib] - bgb[ib, ia]  # symmetric
            d2logdet[a, b] = d2logdet[b, a] = value
            d2ctc[a, b] = d2ctc[b, a] = 0.5 * (block + block.T)
    return d2logdet, d2ctc
