"""Stacks of small matrices, one per node: compiled products and Cholesky inverses.

Every node of a level has blocks of ``q x q`` or ``q x r`` (``q`` the level's random-effect
columns, usually 1 to 3). NumPy's stacked ``@`` and LAPACK calls pay a per-matrix
overhead that dominates at that size, and gathering an ancestor's block or summing into
it would copy whole stacks; here one compiled loop over the nodes (numba) does the
product, reading an operand at an index (an ancestor) and adding into an output at an
index (a scatter-add to ancestors). Measured on 10^6 nodes of 2 x 2 times 2 x 3 blocks
(median of 7, one run on a loaded 2-core machine): NumPy's ``a @ b`` 0.10 s, with ``a``
transposed 0.19 s, the loop 0.02 s and 0.04 s; that product summed into 10^4 parents
(100 contiguous children each) 0.12 s with ``np.add.reduceat``, 0.19 s with
``np.bincount`` over the flattened entries, 0.36 s with ``np.add.at``, 0.011 s as the
loop's scatter-add; ``a @ b[parent]`` 0.13 s, the loop reading at the index 0.02 s; a
stacked LAPACK Cholesky of the 2 x 2 blocks 0.3 s. The loops (:mod:`.loops`, imported
when first used, so that importing dlmm does not import numba) are serial and release
the GIL (a Dask worker's threads run blocks side by side).
"""

from __future__ import annotations

import numpy as np

_NONE = np.full(1, -1, dtype=np.int64)


def product(a: np.ndarray, b: np.ndarray, *, trans_a: bool = False, trans_b: bool = False,
            rows_a: np.ndarray | None = None, rows_b: np.ndarray | None = None,
            out: np.ndarray | None = None, into: np.ndarray | None = None,
            sign: float = 1.0) -> np.ndarray:
    """``out[into[k]] += sign * op(a[rows_a[k]]) @ op(b[rows_b[k]])`` for every node ``k``.

    ``a`` and ``b`` are stacks (n, ., .); one of shape (1, ., .) (or a 2-d matrix) is
    used for every node; ``op`` transposes where asked. Without ``rows_*`` node ``k``
    reads item ``k``; without ``into`` it writes item ``k``; without ``out`` a new
    zero stack is made (then ``into`` is not allowed).

    Returns
    -------
    ndarray
        ``out``.
    """
    a = np.ascontiguousarray(a if a.ndim == 3 else a[None], dtype=float)
    b = np.ascontiguousarray(b if b.ndim == 3 else b[None], dtype=float)
    sizes = {x for x in (a.shape[0] if rows_a is None else len(rows_a),
                         b.shape[0] if rows_b is None else len(rows_b)) if x != 1}
    if len(sizes) > 1:
        raise ValueError(f"stacks of {sorted(sizes)} nodes")
    n = sizes.pop() if sizes else 1
    p = a.shape[2] if trans_a else a.shape[1]
    s = b.shape[1] if trans_b else b.shape[2]
    if out is None:
        if into is not None:
            raise ValueError("a scatter (into) needs its output")
        out = np.zeros((n, p, s))
    if (not out.flags.c_contiguous or out.dtype != np.float64 or out.shape[1:] != (p, s)
            or (out.shape[0] if into is None else len(into)) != n):
        raise ValueError("the output is not a C-contiguous float64 stack of the product's shape")
    from .loops import product_loop

    product_loop(n, a, b, out, _index(rows_a), _index(rows_b), _index(into),
             trans_a, trans_b, float(sign))
    return out


def _index(rows: np.ndarray | None) -> np.ndarray:
    """An index array for the loop; ``[-1]`` stands for none (0 nodes: ``[0]``, unread)."""
    if rows is None:
        return _NONE
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    return rows if rows.size else np.zeros(1, dtype=np.int64)


def sum_products(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``sum_k a_k (x) b_k`` (a_shape + b_shape without the node axis), by BLAS."""
    return np.tensordot(a, b, axes=([0], [0]))


def cholesky_inverse(d: np.ndarray) -> tuple[float, np.ndarray]:
    """``(sum_k log|D_k|, T^{-1})`` for a stack ``d`` (n, q, q) of positive definite
    matrices ``D_k = T_k T_k'`` (``T_k`` lower triangular; ``T^{-1}`` (n, q, q)).

    Raises ``np.linalg.LinAlgError`` where a block is not positive definite.
    """
    d = np.ascontiguousarray(d, dtype=float)
    ti = np.zeros(d.shape)
    from .loops import cholesky_inverse_loop

    logdet = cholesky_inverse_loop(d, ti)
    if not np.isfinite(logdet):
        raise np.linalg.LinAlgError("a block of C is not positive definite")
    return float(logdet), ti
