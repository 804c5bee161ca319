"""Batched small dense linear algebra on stacks of ``t x t`` blocks (one per level).

``t`` is the number of random-effect terms per level (1 or 2 in practice). The
``t == 1`` case is plain vector arithmetic; otherwise NumPy's stacked LAPACK
calls. Also: applying ``Lambda = blockdiag_k(I (x) T_k)`` to the rows or
columns of a dense matrix whose index runs over several factors.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def batched_cholesky(a: np.ndarray) -> np.ndarray:
    """Lower Cholesky factors ``L_l`` with ``L_l L_l' = a_l`` for a stack ``(m, t, t)``."""
    if a.shape[1] == 1:
        return np.sqrt(a)
    return np.linalg.cholesky(a)


def batched_solve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a_l^{-1} b_l`` for stacks ``a (m, t, t)`` and ``b (m, t, s)``."""
    if a.shape[1] == 1:
        return b / a
    return np.linalg.solve(a, b)


def batched_inverse(a: np.ndarray) -> np.ndarray:
    """``a_l^{-1}`` for a stack ``(m, t, t)``."""
    if a.shape[1] == 1:
        return 1.0 / a
    return np.linalg.inv(a)


def level_products(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``sum_l outer-in-terms a_l' b_l``: ``out[i, j] = sum_l a[l, i, :]' b[l, j, :]``
    (``a (m, t, r)``, ``b (m, u, s)`` -> ``(t, u, r, s)``), one matrix product (BLAS)
    per pair of terms instead of an ``einsum`` over the levels."""
    out = np.empty((a.shape[1], b.shape[1], a.shape[2], b.shape[2]))
    for i in range(a.shape[1]):
        for j in range(b.shape[1]):
            out[i, j] = a[:, i, :].T @ b[:, j, :]
    return out


def block_apply(blocks: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """``blocks_l @ rhs_l`` for stacks ``(m, t, u)`` and ``(m, u, s)`` (a broadcast
    product when ``t = u = 1``)."""
    if blocks.shape[1] == 1 and blocks.shape[2] == 1:
        return blocks * rhs
    return np.einsum("lab,lbs->las", blocks, rhs)


def sym_block_product(tri: np.ndarray, mid: np.ndarray) -> np.ndarray:
    """``T' mid_l T`` for one ``t x t`` matrix ``T`` and a stack ``mid (m, t, t)``."""
    return np.einsum("ai,lab,bj->lij", tri, mid, tri, optimize=True)


def apply_lambda_rows(
    dense: np.ndarray,
    factors: Sequence[np.ndarray],
    offsets: Sequence[int],
    levels: Sequence[int],
    transpose: bool,
) -> None:
    """In place, ``dense <- Lambda' dense`` (``transpose``) or ``Lambda dense``.

    The rows of ``dense`` run over the columns of several factors: factor ``k``
    owns rows ``offsets[k] : offsets[k] + levels[k] t_k``, level-major, and
    ``Lambda`` there is ``I_{levels[k]} (x) T_k`` with ``T_k = factors[k]``.
    """
    for tri, off, n_lev in zip(factors, offsets, levels):
        t = tri.shape[0]
        block = dense[off : off + n_lev * t]
        if t == 1:
            block *= tri[0, 0]
            continue
        op = tri.T if transpose else tri
        dense[off : off + n_lev * t] = _combine_rows(op, block.reshape(n_lev, t, -1)) \
            .reshape(block.shape)


def _combine_rows(op: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``out[:, a] = sum_b op[a, b] rows[:, b]`` for a small ``t x t`` ``op`` and ``rows``
    ``(levels, t, m)``: ``t^2`` whole-array multiply-adds on strided views (an einsum
    over a strided block of a ``Q2 x Q2`` Fortran array ran its scalar loops: 0.4 s
    per evaluation at Q2 = 2,400 with ``t = 2``)."""
    t = op.shape[0]
    out = np.empty(rows.shape)
    for a in range(t):
        np.multiply(rows[:, 0], op[a, 0], out=out[:, a])
        for b in range(1, t):
            if op[a, b] != 0.0:
                out[:, a] += op[a, b] * rows[:, b]
    return out


def apply_lambda_cols(
    dense: np.ndarray,
    factors: Sequence[np.ndarray],
    offsets: Sequence[int],
    levels: Sequence[int],
) -> None:
    """In place, ``dense <- dense Lambda`` with the layout of :func:`apply_lambda_rows`."""
    for tri, off, n_lev in zip(factors, offsets, levels):
        t = tri.shape[0]
        block = dense[:, off : off + n_lev * t]
        if t == 1:
            block *= tri[0, 0]
            continue
        new = np.einsum("mlb,ba->mla", block.reshape(dense.shape[0], n_lev, t), tri)
        dense[:, off : off + n_lev * t] = new.reshape(block.shape)
