"""The covariance parameter theta of a crossed model: packing and unpacking.

Factor ``k`` has a lower-triangular relative factor ``T_k`` (``t_k x t_k``), and
``b_k ~ N(0, sigma^2 I_{l_k} (x) T_k T_k')``. ``theta`` concatenates, in the
caller's factor order, the lower triangle of every ``T_k`` in the row-major order
of ``np.tril_indices`` (the order of ``dlmm.objective.grad_sqrt``; for
``t_k <= 2`` it coincides with lme4's column-major order). Diagonal entries are
bounded below by 0 (lme4's convention); ``theta = 0`` is an ordinary point.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def theta_sizes(n_terms: Sequence[int]) -> list[int]:
    """Number of theta entries of each factor, ``t_k (t_k + 1) / 2``."""
    return [t * (t + 1) // 2 for t in n_terms]


def theta_index(n_terms: Sequence[int]) -> list[tuple[int, int, int]]:
    """``(factor, row, column)`` of ``T_factor`` for every entry of theta, in order."""
    out = []
    for k, t in enumerate(n_terms):
        rows, cols = np.tril_indices(t)
        out.extend((k, int(a), int(b)) for a, b in zip(rows, cols))
    return out


def unpack_theta(theta: np.ndarray, n_terms: Sequence[int]) -> list[np.ndarray]:
    """The relative factors ``T_k`` (lower triangular, ``t_k x t_k``) from packed theta.

    Raises
    ------
    ValueError
        If ``theta`` does not have ``sum_k t_k (t_k + 1) / 2`` entries.
    """
    theta = np.asarray(theta, dtype=float).ravel()
    sizes = theta_sizes(n_terms)
    if theta.size != sum(sizes):
        raise ValueError(f"theta has {theta.size} entries, the factors need {sum(sizes)}")
    out = []
    start = 0
    for t, size in zip(n_terms, sizes):
        lam = np.zeros((t, t))
        lam[np.tril_indices(t)] = theta[start : start + size]
        out.append(lam)
        start += size
    return out


def pack_theta(factors: Sequence[np.ndarray]) -> np.ndarray:
    """Inverse of :func:`unpack_theta`: the lower triangles of ``T_k``, concatenated."""
    parts = [np.asarray(f, dtype=float)[np.tril_indices(f.shape[0])] for f in factors]
    return np.concatenate(parts) if parts else np.zeros(0)


def theta_lower_bounds(n_terms: Sequence[int]) -> np.ndarray:
    """Lower bounds for an optimizer: 0 for diagonal entries of ``T_k``, ``-inf`` elsewhere."""
    return np.array([0.0 if a == b else -np.inf for _, a, b in theta_index(n_terms)])


def theta_from_covariances(covariances: Sequence[np.ndarray], scale: float) -> np.ndarray:
    """Packed theta with ``T_k T_k' = cov_k / scale`` (``T_k`` the Cholesky factor).

    For an intercept-only factor with variance ``vcomp_k`` this is
    ``sqrt(vcomp_k / scale)``. A singular ``cov_k`` is not supported here.
    """
    factors = [
        np.linalg.cholesky(np.atleast_2d(np.asarray(c, dtype=float)) / scale) for c in covariances
    ]
    return pack_theta(factors)
