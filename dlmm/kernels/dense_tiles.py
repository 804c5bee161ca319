"""The tile kernels of a tiled Cholesky factorization, its solves and its inverse.

A symmetric positive definite ``n x n`` matrix ``A`` is held by the tiles of its lower
triangle, ``A[I, J]`` for tile rows ``I >= J`` (edges ``e_0 = 0 < e_1 < ... = n``).
Each function here is the arithmetic of one task on one or a few tiles (LAPACK and
BLAS through SciPy); a scheduler (:mod:`dlmm.structure.tiled_cholesky`) runs
them where the tiles are and never forms ``A`` whole:

    L[K, K] = chol(A[K, K] - sum_{P<K} L[K, P] L[K, P]')                  potrf
    L[I, K] = (A[I, K] - sum_{P<K} L[I, P] L[K, P]') L[K, K]^{-T}        trsm  (I > K)
    c[I]    = L[I, I]^{-1} (u[I] - sum_{P<I} L[I, P] c[P])               forward solve
    b[I]    = L[I, I]^{-T} (c[I] - sum_{P>I} L[P, I]' b[P])              backward solve
    W = L^{-1}:   W[K, K] = L[K, K]^{-1};  W[I, K] = -W[I, I] sum_{K<=P<I} L[I, P] W[P, K]
    A^{-1}[I, J] = sum_{P>=I} W[P, I]' W[P, J]                            (I >= J)

The factor costs ``n^3 / 3`` flops; the inverse about ``2 n^3 / 3`` as LAPACK's
``dpotri`` (with ``T`` tile rows, ``(1 + O(1/T))`` times that: the triangular tiles go
through ``dtrmm``, the others through full products).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg.blas as blas
import scipy.linalg.lapack as lapack


def potrf_tile(a: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor of a diagonal tile (its upper triangle zero).

    Raises ``numpy.linalg.LinAlgError`` when the tile is not positive definite.
    """
    low, info = lapack.dpotrf(np.asfortranarray(a), lower=1, clean=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"Schur complement is not positive definite (info={info})")
    return low


def trsm_tile(a: np.ndarray, l_kk: np.ndarray) -> np.ndarray:
    """``a L_kk^{-T}``: a tile below the diagonal of the factor."""
    return blas.dtrsm(1.0, l_kk, np.asfortranarray(a), side=1, lower=1, trans_a=1)


def minus_product(a: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``a - x y'`` (a trailing update of the factor by one tile column)."""
    return blas.dgemm(-1.0, x, y, beta=1.0, c=np.array(a, order="F"), trans_b=1)


def plus_product(acc: np.ndarray | None, x: np.ndarray, y: np.ndarray,
                 trans_x: bool = False) -> np.ndarray:
    """``acc + x y`` (``trans_x``: ``acc + x' y``); ``acc`` None starts from zero."""
    if acc is None:
        return blas.dgemm(1.0, x, y, trans_a=int(trans_x))
    return blas.dgemm(1.0, x, y, beta=1.0, c=np.array(acc, order="F"), trans_a=int(trans_x))


def plus_triangular(acc: np.ndarray | None, x: np.ndarray, tri: np.ndarray,
                    tri_left: bool = False) -> np.ndarray:
    """``acc + x tri`` (``tri_left``: ``acc + tri' x``) for a lower triangular ``tri``
    (BLAS ``dtrmm``: half a full product's flops); ``acc`` None starts from zero."""
    out = blas.dtrmm(1.0, tri, np.array(x, order="F"), side=0 if tri_left else 1, lower=1,
                     trans_a=int(tri_left), overwrite_b=1)
    return out if acc is None else out + acc


def tile_logdet(l_kk: np.ndarray) -> float:
    """``2 sum log diag L_kk``: a diagonal tile's share of ``log|A|``."""
    return 2.0 * float(np.log(np.diagonal(l_kk)).sum())


def tile_times(l_tile: np.ndarray, v: np.ndarray, transpose: bool = False) -> np.ndarray:
    """``l v`` or (``transpose``) ``l' v``: a tile's part of a substitution, computed
    where the tile is (only the vector moves)."""
    return l_tile.T @ v if transpose else l_tile @ v


def forward_tile(u: np.ndarray, l_ii: np.ndarray, *partials: np.ndarray) -> np.ndarray:
    """``c[I] = L_ii^{-1} (u - sum partials)``, ``partials`` the products ``L[I, P] c[P]``."""
    rhs = np.array(u, dtype=float, order="F")
    for part in partials:
        rhs -= part
    return lapack.dtrtrs(l_ii, rhs, lower=1)[0]


def backward_tile(c: np.ndarray, l_ii: np.ndarray, *partials: np.ndarray) -> np.ndarray:
    """``b[I] = L_ii^{-T} (c - sum partials)``, ``partials`` the products ``L[P, I]' b[P]``."""
    rhs = np.array(c, dtype=float, order="F")
    for part in partials:
        rhs -= part
    return lapack.dtrtrs(l_ii, rhs, lower=1, trans=1)[0]


def inverse_diagonal_tile(l_kk: np.ndarray) -> np.ndarray:
    """``W[K, K] = L_kk^{-1}`` (lower triangular)."""
    w, info = lapack.dtrtri(l_kk, lower=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"dtrtri failed (info={info})")
    return np.tril(w)


def inverse_below_tile(w_ii: np.ndarray, acc: np.ndarray) -> np.ndarray:
    """``W[I, K] = -W[I, I] acc`` with ``acc = sum_{K<=P<I} L[I, P] W[P, K]`` (``W[I, I]``
    lower triangular: ``dtrmm``)."""
    return blas.dtrmm(-1.0, w_ii, np.array(acc, order="F"), lower=1, overwrite_b=1)


def tile_ready(tile: np.ndarray) -> bool:
    """True: a task that runs where ``tile`` is, once it is made (a wait on it that
    moves nothing)."""
    return tile is not None


def tile_edges(n: int, tile: int) -> np.ndarray:
    """Edges ``0 = e_0 < ... < e_T = n`` of tiles of at most ``tile`` rows, as equal as
    possible."""
    if n <= 0:
        return np.array([0], dtype=np.int64)
    count = -(-n // max(int(tile), 1))
    return np.linspace(0, n, count + 1).round().astype(np.int64)
