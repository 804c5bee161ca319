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


def ols_residual(system) -> tuple[np.ndarray, float] | None:
    """``(c, sigma^2)`` of ordinary least squares on the system's ``[X y]'[X y]``:
    ``c = [-beta_ols; 1]``, ``sigma^2 = c'Kc / (n - p)``; None where OLS cannot fit (too
    few rows, a singular ``X'X``, a residual variance that is not positive)."""
    n = float(system.n_rows)
    xy = system.xy_cross
    p = xy.shape[0] - 1
    if n <= p + 1:
        return None
    try:
        beta = np.linalg.solve(xy[:p, :p], xy[:p, p]) if p else np.zeros(0)
    except np.linalg.LinAlgError:
        return None
    c = np.concatenate([-beta, [1.0]])
    sigma2 = float(c @ xy @ c) / (n - p)
    if not np.isfinite(sigma2) or sigma2 <= 0:
        return None
    return c, sigma2


def moment_theta(system, floor: float = 0.1) -> np.ndarray:
    """Start values of theta from one-way moments of each factor (no optimization).

    One-way analysis of variance of the OLS residuals per factor, the other factors
    taken as noise: with ``c = [-beta_ols; 1]``, ``RSS = c'Kc``, ``sigma^2 = RSS / (n - p)``
    and, per level ``l`` of factor ``k``, ``n_l`` rows and residual sum
    ``s_l = (Z_k'[X y])_l c``: between levels ``B_k = sum_l s_l^2 / n_l``, within levels
    ``W_k = (RSS - B_k) / (n - L_k)``, ``E[B_k] ~ n tau_k^2 + L_k W_k``, so
    ``tau_k^2 = max(B_k - L_k W_k, 0) / n``; the residual variance is what is left,
    ``sigma^2 - sum_k tau_k^2`` (at least ``sigma^2 / 10``), and
    ``theta_k = sqrt(tau_k^2 / sigma_e^2)``, at least ``floor`` (away from the boundary,
    where the gradient in theta vanishes). Factors with several terms, or a design
    OLS cannot fit, get the identity.

    Parameters
    ----------
    system : CrossedSystem
        Its per-level counts and ``Z_k'[X y]`` (factor 1: ``d``, ``h1``; the others:
        the diagonal of ``g22`` and ``h2``) and ``[X y]'[X y]``.
    """
    n_terms = list(system.n_terms)
    factors = [np.eye(t) for t in n_terms]
    ols = None if any(t != 1 for t in n_terms) else ols_residual(system)
    if ols is None:
        return pack_theta(factors)
    c, sigma2 = ols
    n = float(system.n_rows)
    p = system.xy_cross.shape[0] - 1
    per_level = {system.first: (system.d[:, 0, 0], system.h1[:, 0, :] @ c)}
    counts2 = system.g22.diagonal()
    resid2 = system.h2 @ c
    for k, off in zip(system.rest, system.rest_offsets):
        sl = slice(off, off + system.n_levels[k])
        per_level[k] = (counts2[sl], resid2[sl])
    rss = sigma2 * (n - p)
    tau2 = np.zeros(len(n_terms))
    for k, (counts, resid) in per_level.items():  # loop over factors
        seen = counts > 0
        between = float(np.sum(resid[seen] ** 2 / counts[seen]))
        n_seen = int(seen.sum())
        within = (rss - between) / (n - n_seen) if n > n_seen else sigma2
        tau2[k] = max(between - n_seen * within, 0.0) / n
    residual = max(sigma2 - tau2.sum(), 0.1 * sigma2)
    theta = np.maximum(np.sqrt(tau2 / residual), floor)
    return theta if np.all(np.isfinite(theta)) else pack_theta(factors)


def moment_covariances(system, floor: float = 0.1) -> list[np.ndarray] | None:
    """Start values of every factor's relative covariance ``T_k T_k'`` (random effects
    of any number of columns ``t_k``), from moments of the OLS residuals.

    With ``c = [-beta_ols; 1]`` and ``sigma^2 = c'Kc / (n - p)``: per level ``l`` of factor
    ``k``, ``M_l = (Z_k'Z_k)_l`` (t_k x t_k) and ``s_l = (Z_k'[X y])_l c``; on the levels
    where ``M_l`` is well conditioned, the level's least-squares effects
    ``b_l = M_l^{-1} s_l`` have ``E[b_l b_l'] ~ Sigma_k + sigma^2 M_l^{-1}`` (the other
    factors taken as noise), so ``Sigma_k = mean(b_l b_l') - sigma^2 mean(M_l^{-1})``.
    The residual variance is what is left, ``sigma_e^2 = sigma^2 - sum_k tr(Sigma_k
    sum_l M_l) / n`` (at least ``sigma^2 / 10``), and each ``Sigma_k / sigma_e^2`` has its
    eigenvalues raised to at least ``floor^2`` (a start away from the boundary, where
    the gradient along a standard deviation vanishes). Whole-array arithmetic over the
    levels. None where OLS cannot fit the design or a factor has no usable level.

    Parameters
    ----------
    system : CrossedSystem
        Per level of the first factor ``d`` and ``h1``; of the others, the diagonal
        blocks of ``g22`` and the rows of ``h2`` (level-major); and ``[X y]'[X y]``.

    Returns
    -------
    list of ndarray, or None
        Per factor in the caller's order, ``(t_k, t_k)``.
    """
    ols = ols_residual(system)
    if ols is None:
        return None
    c, sigma2 = ols
    n = float(system.n_rows)
    blocks = {system.first: (np.asarray(system.d), np.asarray(system.h1) @ c)}
    resid2 = np.asarray(system.h2) @ c
    for k, off in zip(system.rest, system.rest_offsets):  # loop over the few factors
        t = int(system.n_terms[k])
        idx = off + np.arange(system.n_levels[k])[:, None] * t + np.arange(t)[None, :]
        m = np.empty((idx.shape[0], t, t))
        for a in range(t):  # G22 is sparse: its t x t blocks term by term
            for b in range(t):
                m[:, a, b] = np.asarray(system.g22[idx[:, a], idx[:, b]]).ravel()
        blocks[k] = (m, resid2[idx])
    covariances: dict[int, np.ndarray] = {}
    explained = 0.0
    for k, (m, s) in blocks.items():  # loop over the few factors
        t = m.shape[1]
        vals = np.linalg.eigvalsh(m)
        usable = vals[:, 0] > 1e-8 * np.maximum(vals[:, -1], 1e-300)
        if not usable.any():
            return None
        m_ok, s_ok = m[usable], s[usable]
        inv = np.linalg.inv(m_ok)
        b = np.einsum("lij,lj->li", inv, s_ok)
        sigma_k = (b.T @ b) / b.shape[0] - sigma2 * inv.mean(axis=0)
        covariances[k] = 0.5 * (sigma_k + sigma_k.T)
        explained += float(np.trace(covariances[k] @ m.sum(axis=0))) / n if t else 0.0
    residual = max(sigma2 - explained, 0.1 * sigma2)
    out = []
    for k in range(len(system.n_terms)):  # caller's order
        w, v = np.linalg.eigh(covariances[k] / residual)
        out.append((v * np.maximum(w, floor**2)) @ v.T)
    return out if all(np.all(np.isfinite(o)) for o in out) else None
