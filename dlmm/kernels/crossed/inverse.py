"""Selected entries of ``P = C^{-1}`` from the blocked factor (never a dense inverse of C).

With ``A = L22 L22'`` (the Schur complement) and ``N = L21 L11^{-1} = C21 C11^{-1}``
(pattern of ``G21``; at the row entries ``N_b = T_k' W_b K1_l'``):

    P22 = A^{-1}                                    dense inverse of the Schur part (dpotri);
                                                    sparse factor: on its pattern only
    P21 = -A^{-1} N                                 needed only on the pattern of G21
    P11 = L11^{-T} L11^{-1} + L11^{-T} L21' L22^{-T} L22^{-1} L21 L11^{-1}
        = C11^{-1} + N' A^{-1} N                    needed only on its diagonal blocks

(the Takahashi-style identity); ``A^{-1}`` is kept by its lower triangle, as
``dpotri`` leaves it. ``Y = A^{-1} N`` on the pattern of ``N`` is one
sparse product whose entries are gathered from ``A^{-1}`` at the pairs of
nonzeros of ``G21`` sharing a level of factor 1 (the pairs of the Schur update);
``diag_l(N' A^{-1} N) = sum_{e at level l} outer(N_e, Y_e)``. With streamed pairs
(:mod:`.streamed`) the gather is a compiled loop over the same pairs instead, reading
``A^{-1}`` made symmetric in place; with a dense ``G21`` it is one dense product of
``A^{-1}`` with ``N`` made dense. Cost: one ``dpotri`` (``2 Q2^3 / 3``) plus
``O(sum_l nnz_l^2)``; with a sparse factor (:mod:`.sparse`) ``A^{-1}`` is computed
only on the pattern of ``L`` (Takahashi's recurrence, about the factor's own work),
which holds every entry read here.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.linalg.lapack as lapack
import scipy.sparse as sp

from ._blocks import batched_inverse
from .factor import CrossedFactor, dense_theta
from .level_pairs import gather_runs2
from .single import SingleSchurFactor
from .sparse import PatternInverse, SparseSchurFactor
from .system import CrossedSystem


@dataclass(eq=False)
class SelectedInverse:
    """The entries of ``C^{-1}`` that modes' variances and the gradient need.

    Attributes
    ----------
    ainv_lower : ndarray (Q2, Q2), Fortran order, or PatternInverse
        ``P22 = A^{-1}`` by its lower triangle (the upper triangle is not defined):
        what ``dpotri`` gives; entry ``(i, j)`` is at ``max(i, j), min(i, j)``. From
        a sparse factor, its entries on the factor's pattern (read with
        :func:`lower_at`).
    n_e : ndarray (n_e, t_1)
        ``N = C21 C11^{-1}`` at the row entries of the system.
    y_e : ndarray (n_e, t_1)
        ``Y = A^{-1} N`` at the row entries (``P21 = -Y`` there).
    p11 : ndarray (l_1, t_1, t_1)
        Diagonal blocks of ``P11``.
    """

    ainv_lower: np.ndarray | PatternInverse
    n_e: np.ndarray
    y_e: np.ndarray
    p11: np.ndarray

    @cached_property
    def ainv(self) -> np.ndarray:
        """``A^{-1}``, full symmetric (made on first use: three passes over ``Q2^2``;
        from a sparse factor, zero off its pattern)."""
        lower = self.ainv_lower
        if isinstance(lower, PatternInverse):
            lower = lower.dense_lower()
        return symmetric_from_lower(lower)

    def ainv_at(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Entries ``A^{-1}[rows, cols]`` read from the lower triangle."""
        hi, lo = np.maximum(rows, cols), np.minimum(rows, cols)
        return lower_at(self.ainv_lower, hi + lo * self.ainv_lower.shape[0])


def lower_at(lower, flat: np.ndarray) -> np.ndarray:
    """Entries of a lower triangle at flat (Fortran-order) indices: of ``dpotri``'s
    dense array or of a sparse factor's :class:`~.sparse.PatternInverse`."""
    if isinstance(lower, PatternInverse):
        return lower.at_flat(flat)
    return lower.reshape(-1, order="F")[flat]


def symmetric_from_lower(lower: np.ndarray) -> np.ndarray:
    """The symmetric matrix whose lower triangle ``lower`` holds."""
    full = np.tril(lower)
    full += full.T
    full[np.diag_indices_from(full)] *= 0.5
    return full


def schur_inverse_lower(l22, overwrite: bool = False) -> np.ndarray | PatternInverse:
    """``A^{-1} = (L22 L22')^{-1}`` from the Cholesky factor (LAPACK ``dpotri``), by its
    lower triangle (Fortran order; the upper triangle is not defined). From a
    :class:`~.sparse.SparseSchurFactor`: only the entries on the pattern of its factor
    (all any caller reads), the rest zero; from a :class:`~.single.SingleSchurFactor`,
    ``spotri``'s float32 in the factor's own memory. ``overwrite``: in the dense
    factor's own memory (one ``Q2 x Q2`` array less; the factor is gone)."""
    if isinstance(l22, (SparseSchurFactor, SingleSchurFactor)):
        return l22.inverse_lower()  # float32 from a single-precision factor
    if l22.shape[0] == 0:
        return np.zeros((0, 0), order="F")
    inv, info = lapack.dpotri(l22, lower=1, overwrite_c=int(bool(overwrite)))
    if info != 0:
        raise np.linalg.LinAlgError(f"dpotri failed (info={info})")
    return np.asfortranarray(inv)


def factor_inverse_lower(factor: CrossedFactor, consume: bool = False
                         ) -> np.ndarray | PatternInverse:
    """:func:`schur_inverse_lower` of ``factor``'s Schur factor; ``consume``: in the
    factor's own memory, which the factor then gives up (``factor.l22`` is None)."""
    ainv = schur_inverse_lower(factor.l22, overwrite=consume)
    if consume:
        factor.l22 = None
    return ainv


def schur_inverse(l22: np.ndarray) -> np.ndarray:
    """``A^{-1} = (L22 L22')^{-1}`` from the Cholesky factor (LAPACK ``dpotri``), symmetric."""
    return symmetric_from_lower(schur_inverse_lower(l22))


def entries_n(system: CrossedSystem, factor: CrossedFactor) -> np.ndarray:
    """``N = Lambda_2' G21 Lambda_1 C11^{-1}`` at the row entries: ``N_b = T_k' W_b K1_l'``."""
    if factor.lambda_w is not None:  # Lambda_2'G21 at the entries, from the factor
        return np.einsum("ed,ecd->ec", factor.lambda_w, factor.k1[system.entry_level])
    if system.intercepts_only:
        # intercepts: N_e = theta_k(e) w_e K1_l(e), one product per entry
        theta = dense_theta(system, factor.factors)
        return (theta[system.entry_row] * factor.k1[system.entry_level, 0, 0]
                * system.entry_w[:, 0])[:, None]
    n_e = np.zeros_like(system.entry_w)
    for k, (idx, lev, w) in zip(system.rest, system.blocks):
        tk = factor.factors[k]
        n_e[idx] = np.einsum("ai,bac,bdc->bid", tk, w, factor.k1[lev], optimize=True)
    return n_e


def _add_p11(p11: np.ndarray, entry_level: np.ndarray, n_e: np.ndarray,
             y_e: np.ndarray) -> None:
    """In place ``P11_l += sum_{e at level l} outer(N_e, Y_e)``."""
    l1, t1 = p11.shape[:2]
    for c in range(t1):
        for d in range(t1):
            p11[:, c, d] += np.bincount(entry_level, weights=n_e[:, c] * y_e[:, d],
                                        minlength=l1)


def selected_inverse(system: CrossedSystem, factor: CrossedFactor,
                     consume: bool = False) -> SelectedInverse:
    """``A^{-1}``, ``N`` and ``Y = A^{-1} N`` on the pattern of ``G21``, diagonal blocks of P11.

    ``P11_l = C11_l^{-1} + sum_{e at level l} outer(N_e, Y_e)``. ``consume``: ``A^{-1}``
    takes the dense factor's memory (``factor.l22`` is None after: no solve needs it).
    """
    ainv = factor_inverse_lower(factor, consume)
    n_e = entries_n(system, factor)
    l_inv = batched_inverse(factor.l11)
    p11 = np.einsum("lba,lbc->lac", l_inv, l_inv)
    if not system.dense_size:
        y_e = np.zeros_like(n_e)
    elif system.dense_g21 is not None:
        # N as a dense (Q2, l_1 t_1) array, one product, read back on the pattern
        q2, l1, t1 = system.dense_g21.shape
        if consume:  # ainv is this evaluation's own: made symmetric in place
            from .streamed import mirror_lower

            mirror_lower(ainv)
            full = ainv
        else:
            full = symmetric_from_lower(ainv)
        dense_n = np.zeros((q2, l1, t1))
        dense_n[system.entry_row, system.entry_level] = n_e
        y_e = (full @ dense_n.reshape(q2, -1)).reshape(q2, l1, t1)[
            system.entry_row, system.entry_level]
    elif system.streamed:
        from .streamed import gather_products, mirror_lower

        mirror_lower(ainv)  # now full symmetric: the gather reads whole columns
        if n_e.shape[1] == 2 and not system.stream.dense_levels.size:
            y_e = gather_runs2(ainv, system.stream, system.entry_row, system.entry_level, n_e)
        else:
            y_e = gather_products(ainv, system.stream, system.entry_row, system.entry_level,
                                  n_e)
    else:
        pattern, diagonal = system.lower_pairs()
        # the distinct targets in address order, then spread to the pairs (~10 per
        # target on InstEval): fewer scattered reads of the Q2 x Q2 matrix
        data = lower_at(ainv, system.schur_target)[system.pair_target]
        low = sp.csr_matrix((data, pattern.indices, pattern.indptr), shape=pattern.shape)
        y_e = low @ n_e + low.T @ n_e - data[diagonal][:, None] * n_e
    _add_p11(p11, system.entry_level, n_e, y_e)
    p11 = 0.5 * (p11 + np.swapaxes(p11, 1, 2))
    inv = SelectedInverse(ainv, n_e, y_e, p11)
    if system.streamed:
        inv.__dict__["ainv"] = ainv  # already full: no second Q2 x Q2 copy
    elif system.dense_g21 is not None and system.dense_size:
        inv.__dict__["ainv"] = full
    return inv
