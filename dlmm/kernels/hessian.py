"""Second-order pieces: what the Hessian of the profiled likelihood needs.

The covariance parameters ``theta`` (packed: lower triangle of ``Psi`` row by
row, then ``vcomp / scale``) enter ``B`` linearly, ``dB/dtheta_j = E_j``:
``e_a e_b' + e_b e_a'`` for ``Psi_ab`` (``e_a e_a'`` on the diagonal) and the
identity on component k's columns for ``v_k``. With ``P = A'V^{-1}A`` and
``R = A'V^{-1}[X y]`` of a group:

    d log|V| / dj      = tr(E_j P)
    d2 log|V| / dj dk  = -tr(E_j P E_k P)
    dS / dj            = -R' E_j R
    d2S / dj dk        =  R' E_j P E_k R + R' E_k P E_j R

The kernel returns the group sums of ``tr(E_j P E_k P)``, ``R'E_j R`` and
``R'E_j P E_k R`` (plus ``H'MH`` for ``S``); the driver assembles the Hessian.
A step forms them with the value's pieces in one compiled loop over the groups
(:func:`dlmm.kernels.likelihood.sweep_batch`); ``numpy_*`` are the same sums
batched in NumPy, the reference that loop is tested against.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .block import sum_over_batches
from .layout import GroupBatch
from .likelihood import (
    SMALL_Q,
    SweepSums,
    _entrywise_pieces,
    _solve_pieces,
    entrywise_solve,
    numpy_batch_pieces,
    relative_factor,
    sweep_batch,
    uses_compiled,
)
from .pieces import LikelihoodPieces, _Additive


@dataclass(eq=False)
class HessianPieces(_Additive):
    """Group sums for the Hessian (``m`` covariance parameters, ``r = p + 1``).

    Attributes
    ----------
    hmh : ndarray (r, r)
        ``sum_i H_i' M_i H_i`` (as in LikelihoodPieces).
    trace2 : ndarray (m, m)
        ``sum_i tr(E_j P_i E_k P_i)``.
    d1 : ndarray (m, r, r)
        ``sum_i R_i' E_j R_i``.
    d2 : ndarray (m, m, r, r)
        ``sum_i R_i' E_j P_i E_k R_i``.
    """

    hmh: np.ndarray
    trace2: np.ndarray
    d1: np.ndarray
    d2: np.ndarray


def directions(k_re: int, widths: np.ndarray) -> np.ndarray:
    """The matrices ``E_j = dB / dtheta_j`` for a batch layout, shape (m, q, q)."""
    q = k_re + int(np.sum(widths))
    rows, cols = np.tril_indices(k_re)
    m = rows.shape[0] + len(widths)
    out = np.zeros((m, q, q))
    for j, (a, b) in enumerate(zip(rows, cols)):  # loop over parameters
        out[j, a, b] = 1.0
        out[j, b, a] = 1.0
    start = k_re
    for k, width in enumerate(widths):
        idx = np.arange(start, start + int(width))
        out[rows.shape[0] + k, idx, idx] = 1.0
        start += int(width)
    return out


def direction_pairs(k_re: int, widths: np.ndarray) -> list[list[tuple[int, int]]]:
    """Each ``E_j`` as its unit entries ``(u, v)``: ``E_j = sum e_u e_v'``."""
    rows, cols = np.tril_indices(k_re)
    out = [[(int(a), int(b)), (int(b), int(a))] if a != b else [(int(a), int(a))]
           for a, b in zip(rows, cols)]
    start = k_re
    for width in widths:
        out.append([(c, c) for c in range(start, start + int(width))])
        start += int(width)
    return out


def entrywise_hessian_pieces(batch: GroupBatch, solved) -> HessianPieces:
    """:func:`batch_hessian_pieces` from the entry-by-entry intermediates of
    :func:`dlmm.kernels.likelihood.entrywise_solve` (small q).

    With ``E_j = sum_(u,v) e_u e_v'``: ``tr(E_j P E_k P) = sum P_vs P_tu``,
    ``R'E_jR = sum outer(R_u, R_v)``, ``R'E_j P E_k R = sum P_vs outer(R_u, R_t)``
    over the entries (u, v) of j and (s, t) of k; each sum over groups is a dot
    or matrix product.
    """
    g = batch.g_by_entry
    qm, rr, u = solved.qm, solved.rr, solved.u
    q, r, nb = rr.shape
    p = g.copy()  # P = G - Q'Q entry by entry
    for a in range(q):
        for c in range(a, q):
            p[a, c] -= np.einsum("kb,kb->b", qm[:, a], qm[:, c])
            if c != a:
                p[c, a] = p[a, c]
    pairs = direction_pairs(batch.k_re, batch.widths)
    m = len(pairs)
    gram = (rr.reshape(q * r, nb) @ rr.reshape(q * r, nb).T).reshape(q, r, q, r)
    if q <= 3:
        # Every sum over groups of p[b, c] * outer(R_a, R_d), for all a, b, c, d at
        # once: one matrix product of the weighted rows (a, b, c) with the rows of R.
        weighted = (rr[:, None, None, :, :] * p[None, :, :, None, :]).reshape(q**3 * r, nb)
        quad = (weighted @ rr.reshape(q * r, nb).T).reshape(q, q, q, r, q, r)

        def term(a, b, c, d):
            return quad[a, b, c, :, d, :]
    else:  # q^3 weighted copies of R would be large: one product per term

        def term(a, b, c, d):
            return (rr[a] * p[b, c]) @ rr[d].T

    trace2 = np.zeros((m, m))
    d1 = np.zeros((m, r, r))
    d2 = np.zeros((m, m, r, r))
    for j, pj in enumerate(pairs):  # loop over parameters
        for a, b in pj:
            d1[j] += gram[a, :, b, :]
        for k, pk in enumerate(pairs):
            for a, b in pj:
                for c, d in pk:
                    trace2[j, k] += float(p[b, c] @ p[d, a])
                    d2[j, k] += term(a, b, c, d)
    hmh = sum(u[i] @ u[i].T for i in range(q))
    return HessianPieces(hmh=hmh, trace2=trace2, d1=d1, d2=d2)


def _hessian_from_sweep(sums: SweepSums, k_re: int) -> HessianPieces:
    """The :class:`HessianPieces` of a sweep along :func:`direction_pairs`: ``R'E_jR``
    is ``t_re[a, b] + t_re[b, a]`` (``t_re[a, a]``) for ``Psi_ab`` and ``t_vc[k]`` for
    component k."""
    rows, cols = np.tril_indices(k_re)
    d1 = [sums.t_re[a, b] + sums.t_re[b, a] if a != b else sums.t_re[a, a].copy()
          for a, b in zip(rows, cols)] + [x.copy() for x in sums.t_vc]
    r = sums.hmh.shape[0]
    d1 = np.array(d1).reshape(len(d1), r, r)
    return HessianPieces(hmh=sums.hmh.copy(), trace2=sums.trace2, d1=d1, d2=sums.d2)


def batch_hessian_pieces(
    batch: GroupBatch, chol_re: np.ndarray, sd_vc: np.ndarray
) -> HessianPieces:
    """Hessian pieces of one batch (see the module docstring): by the compiled loop
    for many groups (:func:`dlmm.kernels.likelihood.uses_compiled`), else in NumPy."""
    if uses_compiled(batch):
        return compiled_batch_newton_pieces(batch, chol_re, sd_vc).hess
    return numpy_batch_hessian_pieces(batch, chol_re, sd_vc)


def numpy_batch_hessian_pieces(
    batch: GroupBatch, chol_re: np.ndarray, sd_vc: np.ndarray
) -> HessianPieces:
    """:func:`batch_hessian_pieces` batched in NumPy (the reference)."""
    if batch.q <= SMALL_Q:
        lam = relative_factor(chol_re, sd_vc, batch.widths)
        return entrywise_hessian_pieces(batch, entrywise_solve(batch, lam))
    _, _, u, qm = _solve_pieces(batch, chol_re, sd_vc)
    qt = np.swapaxes(qm, 1, 2)
    p = batch.g - qt @ qm  # (b, q, q)
    rr = batch.h - qt @ u  # (b, q, r)
    e = directions(batch.k_re, batch.widths)  # (m, q, q)
    pe = np.einsum("bxy,jyz->bjxz", p, e)  # P E_j
    er = np.einsum("jxy,byr->bjxr", e, rr)  # E_j R
    trace2 = np.einsum("bjxy,bkyx->jk", pe, pe)
    d1 = np.einsum("bxr,bjxs->jrs", rr, er)
    per = np.einsum("bxy,bkyr->bkxr", p, er)  # P E_k R
    d2 = np.einsum("bjxr,bkxs->jkrs", er, per)
    return HessianPieces(hmh=np.einsum("bqi,bqj->ij", u, u), trace2=trace2, d1=d1, d2=d2)


def block_hessian_pieces(block, chol_re: np.ndarray, sd_vc: np.ndarray):
    """Sum of :func:`batch_hessian_pieces` over a block's batches (0 if empty)."""
    return sum_over_batches(block, batch_hessian_pieces, chol_re, sd_vc)


@dataclass(eq=False)
class NewtonPieces(_Additive):
    """Value, gradient and Hessian pieces from one pass over a block."""

    value: LikelihoodPieces
    hess: HessianPieces


def batch_newton_pieces(batch: GroupBatch, chol_re: np.ndarray,
                        sd_vc: np.ndarray) -> NewtonPieces:
    """:func:`~dlmm.kernels.likelihood.batch_pieces` and :func:`batch_hessian_pieces`
    of a batch: in one compiled sweep over its groups where it has many
    (:func:`dlmm.kernels.likelihood.uses_compiled`), else in NumPy."""
    if uses_compiled(batch):
        return compiled_batch_newton_pieces(batch, chol_re, sd_vc)
    return numpy_batch_newton_pieces(batch, chol_re, sd_vc)


def compiled_batch_newton_pieces(batch: GroupBatch, chol_re: np.ndarray,
                                 sd_vc: np.ndarray) -> NewtonPieces:
    """:func:`batch_newton_pieces` by the compiled loop, whatever the size."""
    pairs = direction_pairs(batch.k_re, batch.widths)
    sums = sweep_batch(batch, chol_re, sd_vc, pairs)
    return NewtonPieces(sums.likelihood(batch.g.shape[0]),
                        _hessian_from_sweep(sums, batch.k_re))


def numpy_batch_newton_pieces(batch: GroupBatch, chol_re: np.ndarray,
                              sd_vc: np.ndarray) -> NewtonPieces:
    """:func:`batch_newton_pieces` batched in NumPy (the reference), sharing one
    factorization."""
    if batch.q <= SMALL_Q:
        lam = relative_factor(chol_re, sd_vc, batch.widths)
        solved = entrywise_solve(batch, lam)
        return NewtonPieces(_entrywise_pieces(batch, lam, solved),
                            entrywise_hessian_pieces(batch, solved))
    return NewtonPieces(numpy_batch_pieces(batch, chol_re, sd_vc),
                        numpy_batch_hessian_pieces(batch, chol_re, sd_vc))


def block_newton_pieces(block, chol_re: np.ndarray, sd_vc: np.ndarray):
    """Sum of :func:`batch_newton_pieces` over a block's batches (0 if empty)."""
    return sum_over_batches(block, batch_newton_pieces, chol_re, sd_vc)
