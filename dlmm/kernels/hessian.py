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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .layout import GroupBatch
from .likelihood import _solve_pieces
from .pieces import _Additive


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


def batch_hessian_pieces(
    batch: GroupBatch, chol_re: np.ndarray, sd_vc: np.ndarray
) -> HessianPieces:
    """Hessian pieces of one batch (see the module docstring)."""
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
    total = 0
    for batch in block.batches:  # a handful of layouts, not groups
        total = total + batch_hessian_pieces(batch, chol_re, sd_vc)
    return total
