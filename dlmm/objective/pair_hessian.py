"""A polish Hessian by differences along fewer directions: entries the evaluation knows.

The crossed engine's float32 evaluations give the exact second derivatives of ``log|V|``
and ``hmh`` along the pairs of its dense part's factors
(:mod:`dlmm.kernels.crossed.dense_hessian`); :func:`profiled_pair_hessian` makes them
the profiled llf's (NaN off those pairs). :class:`PairGradientHessian` then takes the
polish's Hessian by forward differences of the gradient only along the directions whose
column is not wholly known (two intercepts: the first factor's, one evaluation where
:class:`~dlmm.objective.hessian.GradientHessian` takes two) and the rest from the
evaluation at the point itself. With ``S = xy_cross - hmh``, ``S_a = -d hmh_a``, ``c =
[-beta; 1]`` and ``qf = c'Sc`` (``beta`` optimal, so only ``S`` moves it to first order),

    d2 qf_ab = c'S_ab c - 2 (S_a c)_X' S_XX^{-1} (S_b c)_X
    d2 llf_ab = -d2 log|V|_ab / 2 - fac / 2 (d2 qf_ab / qf - c'S_a c c'S_b c / qf^2)
                [REML: - (tr(S_XX^{-1} S_ab,XX) - tr(S_XX^{-1} S_a,XX S_XX^{-1} S_b,XX)) / 2].

Measured on the 10^6 ratings (ML): see :mod:`dlmm.optimize.methods`.
"""

from __future__ import annotations

import numpy as np

from .hessian import GradientHessian, gls_at


def profiled_pair_hessian(pieces, xy_cross: np.ndarray, n_obs: float, reml: bool
                          ) -> np.ndarray | None:
    """The profiled llf's Hessian along sqrt directions where ``pieces.pair_hessian``
    knows it (NaN elsewhere), or None where the pieces have none."""
    pairs = getattr(pieces, "pair_hessian", None)
    if pairs is None:
        return None
    d2logdet, d2hmh = pairs
    s, c, qf, fac = gls_at(pieces, xy_cross, n_obs, reml)
    p = s.shape[0] - 1
    s_xx = s[:p, :p]
    s_a = -np.asarray(pieces.dhmh, dtype=float)  # (m, r, r)
    s_ab = -np.asarray(d2hmh, dtype=float)  # (m, m, r, r), NaN off the known pairs
    dq = np.einsum("aij,i,j->a", s_a, c, c)
    sc = (s_a @ c)[:, :p]  # (m, p)
    inv_xx = np.linalg.inv(s_xx) if p else np.zeros((0, 0))
    d2q = np.einsum("abij,i,j->ab", s_ab, c, c) - 2.0 * sc @ inv_xx @ sc.T
    hess = -0.5 * np.asarray(d2logdet, dtype=float) \
        - 0.5 * fac * (d2q / qf - np.outer(dq, dq) / qf**2)
    if reml and p:
        a_xx = inv_xx @ s_a[:, :p, :p]  # (m, p, p)
        hess -= 0.5 * (np.einsum("ij,abji->ab", inv_xx, s_ab[:, :, :p, :p])
                       - np.einsum("aij,bji->ab", a_xx, a_xx))
    return hess


class PairGradientHessian(GradientHessian):
    """:class:`~dlmm.objective.hessian.GradientHessian` (forward or central differences
    of ``fun``'s gradient, kept within ``reuse``) that differences only the columns
    ``known(x)`` (the Hessian at ``x`` with NaN where unknown, or None) leaves open: those
    of its unknown diagonal entries, then one of each unknown pair left (a known entry
    of a differenced column is the known one)."""

    def __init__(self, fun, known, **differences):
        super().__init__(fun, **differences)
        self.known = known

    def _take(self, x: np.ndarray, grad: np.ndarray) -> np.ndarray:
        m = x.shape[0]
        known = self.known(x)
        if known is None or known.shape != (m, m):
            known = np.full((m, m), np.nan)
        hess = np.array(known, dtype=float)
        # the columns of the unknown diagonal entries, then one of each unknown pair left
        open_ = np.isnan(np.diagonal(known)).copy()
        for i, k in zip(*np.nonzero(np.isnan(known))):
            open_[i] |= not (open_[i] or open_[k])
        for j in np.flatnonzero(open_):  # loop over the differenced directions
            e = np.zeros(m)
            e[j] = self.rel_step * max(1.0, abs(x[j]))
            low = np.asarray(self.fun(x - e)[1]) if self.central else grad
            column = (np.asarray(self.fun(x + e)[1]) - low) / ((2 if self.central else 1) * e[j])
            self.directions += 1
            fill = np.isnan(hess[:, j])
            hess[fill, j] = column[fill]
            hess[j, fill] = np.where(np.isnan(hess[j, fill]), column[fill], hess[j, fill])
        self.last = (x.copy(), 0.5 * (hess + hess.T))
        self.taken += 1
        return self.last[1]
