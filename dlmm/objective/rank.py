"""Rank and collinearity checks of the designs, from their cross-products.

Both work on the correlation form of a cross-product ``X'X`` (each column
scaled to unit norm), so that the tolerances do not depend on the units of
the columns.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg

from ..exceptions import InputError


def _unit_norms(xtx: np.ndarray) -> np.ndarray:
    return np.sqrt(np.clip(np.diag(xtx), 0, None))


def check_full_rank(xtx: np.ndarray, names: list[str], random: bool = False) -> None:
    """Raise if the design with cross-product ``xtx`` is rank deficient.

    A column that is all zero is named alone; otherwise the null space of the
    correlation matrix ``D^{-1} X'X D^{-1}`` (``D = diag(|x_j|)``), by
    :func:`scipy.linalg.null_space` with relative tolerance ``p * eps * 1e3``,
    names every column with a weight above 1e-6 in a null vector.

    Parameters
    ----------
    xtx : ndarray (p, p)
    names : list of str
        Column names.
    random : bool
        The random-effects design (else the fixed effects), for the message.
    """
    what = "random effects" if random else "fixed effects"
    adjective = "random-effects" if random else "fixed-effects"
    p = xtx.shape[0]
    if p == 0:
        return
    norms = _unit_norms(xtx)
    zero = [names[j] for j in range(p) if norms[j] == 0]
    if zero:
        raise InputError(
            f"{adjective} column {zero[0]!r} is all zero in the rows used; drop it from "
            "the formula"
        )
    corr = xtx / np.outer(norms, norms)
    null = linalg.null_space(corr, rcond=p * np.finfo(float).eps * 1e3)
    if null.shape[1]:
        involved = [names[j] for j in range(p) if np.any(np.abs(null[j]) > 1e-6)]
        rank = p - null.shape[1]
        columns = "random-effects columns" if random else "columns"
        raise InputError(
            f"{what} are collinear (rank {rank} of {p}): {columns} "
            f"{', '.join(repr(c) for c in involved)} are linearly dependent; drop one"
        )


def independent_columns(xtx: np.ndarray, tol: float = 1e-9) -> np.ndarray:
    """Columns kept, in order, as lme4 keeps them: a column is dropped when it is
    (numerically) a linear combination of the columns kept before it.

    An incremental Cholesky factorization of the correlation matrix: column j
    is kept when ``1 - |L^{-1} c_j|^2 > tol``, with ``c_j`` its correlations
    with the kept columns and ``L`` their factor so far.

    Returns
    -------
    ndarray of bool (p,)
    """
    p = xtx.shape[0]
    norms = _unit_norms(xtx)
    keep = np.zeros(p, dtype=bool)
    chol = np.zeros((0, 0))
    for j in range(p):  # loop over columns
        if norms[j] == 0:
            continue
        idx = np.flatnonzero(keep)
        cross = xtx[idx, j] / (norms[idx] * norms[j])
        low = linalg.solve_triangular(chol, cross, lower=True) if idx.size else np.zeros(0)
        rest = 1.0 - low @ low
        if rest <= tol:
            continue
        k = idx.size
        grown = np.zeros((k + 1, k + 1))
        grown[:k, :k] = chol
        grown[k, :k] = low
        grown[k, k] = np.sqrt(rest)
        chol = grown
        keep[j] = True
    return keep
