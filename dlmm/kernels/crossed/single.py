"""The dense Schur complement in single precision, for an optimizer's coarse steps.

An evaluation's cubic work is the Cholesky factor of the dense Schur complement ``A``
(``dpotrf``, ``Q2^3 / 3``) and, for the gradient, its inverse (``dpotri``,
``2 Q2^3 / 3``). In float32 (``spotrf``, ``spotri``) both take about half the time
(``Q2`` = 5,000 on the idle 2-core machine: 0.19 + 0.36 s against 0.40 + 0.79 s).

:class:`SingleSchurFactor` stands where the dense path keeps its ``dpotrf`` factor
(stored pairs, intercepts only: :func:`single_supported`). The float32 matrix is
filled from ``A``'s lower nonzeros (the targets of ``B``, ``G22``'s nonzeros, the
diagonal: :func:`lower_pattern`), which are also kept in float64 as a sparse lower
triangle, so that ``A^{-1} b`` is refined to float64's accuracy
(:meth:`~SingleSchurFactor.solve_refined`: ``x += A_32^{-1} (b - A x)``, the residual
in float64 from the sparse ``A``): ``c'c`` and the gradient's ``d (c'c)`` are those of
float64 to its rounding, and only ``log|A|`` (from the float32 factor's diagonal)
and, for the gradient, ``A^{-1}`` at the Schur targets (``d log|C|``) carry single
precision's error. No ``Q2 x Q2`` float64 array is made: the step holds ``4 Q2^2``
bytes, not ``8 Q2^2``.

Measured on the 10^6 ratings (43,925 users x 5,000 items, ML) at the start and at the
optimum: ``log|C|`` within 3e-6 and 1.5e-5 (llf about 1.46e6: ~1e-11 relative), ``S``
within 1e-14 relative after one round of refinement, the llf's gradient within 6e-5
(``d log|C|``; its Hessian is about 5e4, so the optimum's theta within ~1e-9).

The optimizer asks for it in its coarse phase and the polish after it
(:func:`dlmm.optimize.driver.maximize`'s ``coarse``: the Hessian's differences too);
the reported llf is a float64 factorization's at the optimum, beside these derivatives
(:meth:`dlmm.structure.crossed.CrossedStatistics.pieces`).
"""

from __future__ import annotations

import numba
import numpy as np
import scipy.linalg.lapack as lapack
import scipy.sparse as sp

#: Order of the dense part from which the coarse phase of a fit factors it in float32:
#: below, the cubic work is no longer most of an evaluation.
SINGLE_DENSE_MIN = 2000

#: Rounds of refinement at most; each shrinks the error by about ``cond(A)`` times
#: float32's rounding (the 10^6 ratings at the optimum: 3.5e-7 after the first round,
#: 1.6e-13 after the second).
REFINE_ROUNDS = 12

#: Relative error left (the last correction times its rate of contraction, the first
#: one's rate taken as its own relative size) at which the refinement stops: ``c'c`` is
#: then within about 1e-12 of float64's, far below the error of float32's ``log|A|``
#: (the 10^6 ratings: one correction of 3.5e-7, 1.2e-13 left).
REFINED = 1e-12


class SingleRefinementError(np.linalg.LinAlgError):
    """The refinement did not converge: ``A`` is too ill-conditioned for float32."""


def lower_pattern(system) -> tuple:
    """The nonzeros of the Schur complement's lower triangle on the stored-pairs path with
    intercepts only (cached on the system): their flat indices (Fortran order,
    ascending), the positions among them of the targets of ``B``, of ``G22``'s lower
    nonzeros and of the diagonal, and their rows and column pointers (CSC): one
    compiled merge of the three sorted index sets (:func:`_merge_lower`)."""
    if "single_pattern" not in system._cache:
        q2 = system.dense_size
        _, at_lower = system.g22_lower()
        order = np.argsort(at_lower, kind="stable")
        diagonal = np.arange(q2, dtype=np.int64) * (q2 + 1)
        index = np.int32 if system.schur_target.size + at_lower.size + q2 < 2**31 \
            else np.int64
        flat, rows, counts, at_target, at_sorted, at_diagonal = _merge_lower(
            np.ascontiguousarray(system.schur_target, dtype=np.int64),
            np.ascontiguousarray(at_lower[order], dtype=np.int64), diagonal, q2,
            index(0))
        at_g22 = np.empty_like(at_sorted)
        at_g22[order] = at_sorted
        indptr = np.zeros(q2 + 1, dtype=index)
        np.cumsum(counts, out=indptr[1:])
        system._cache["single_pattern"] = (flat, at_target, at_g22, at_diagonal, rows,
                                           indptr)
    return system._cache["single_pattern"]


def load_loops() -> None:
    """Run :func:`_merge_lower` once with the argument types a fit gives (its load
    from numba's cache, where it is not waited for)."""
    one = np.zeros(1, dtype=np.int64)
    _merge_lower(one, one, one, 2, np.int32(0))


@numba.njit(cache=True, nogil=True)
def _merge_lower(a, b, c, q2, index_type):  # pragma: no cover - compiled
    """The union of three ascending arrays of flat indices (each without repeats), the
    position in it of each of their entries, its rows and its count per column."""
    n = a.size + b.size + c.size
    flat = np.empty(n, np.int64)
    rows = np.empty(n, type(index_type))
    counts = np.zeros(q2, np.int64)
    pa = np.empty(a.size, np.int64)
    pb = np.empty(b.size, np.int64)
    pc = np.empty(c.size, np.int64)
    i = j = k = u = 0
    big = np.iinfo(np.int64).max
    while i < a.size or j < b.size or k < c.size:
        va = a[i] if i < a.size else big
        vb = b[j] if j < b.size else big
        vc = c[k] if k < c.size else big
        v = min(va, vb, vc)
        flat[u] = v
        col = v // q2
        rows[u] = v - col * q2
        counts[col] += 1
        if va == v:
            pa[i] = u
            i += 1
        if vb == v:
            pb[j] = u
            j += 1
        if vc == v:
            pc[k] = u
            k += 1
        u += 1
    return flat[:u].copy(), rows[:u].copy(), counts, pa, pb, pc


class SingleSchurFactor:
    """``A = L L'`` with ``L`` in float32 and ``A``'s lower triangle kept sparse in
    float64 (see the module docstring).

    Parameters
    ----------
    system : CrossedSystem
        Stored pairs, intercepts only (:func:`single_supported`).
    data : ndarray
        ``A``'s lower nonzeros in the order of :func:`lower_pattern`.
    """

    def __init__(self, system, data: np.ndarray):
        flat, _, _, at_diagonal, rows, indptr = lower_pattern(system)
        q2 = system.dense_size
        low = np.zeros((q2, q2), dtype=np.float32, order="F")
        low.reshape(-1, order="F")[flat] = data
        low, info = lapack.spotrf(low, lower=1, clean=0, overwrite_a=1)
        if info != 0:
            raise np.linalg.LinAlgError(
                f"Schur complement is not positive definite in float32 (info={info})")
        self.l = low
        self.a: sp.csc_matrix | None = sp.csc_matrix((data, rows, indptr), shape=(q2, q2))
        self.a_diagonal = data[at_diagonal]

    @property
    def shape(self) -> tuple[int, int]:
        return (self.a_diagonal.size, self.a_diagonal.size)

    def log_diagonal_sum(self) -> float:
        """``sum log diag L`` (``log|A| / 2``), to float32's accuracy."""
        return float(np.log(np.diagonal(self.l).astype(np.float64)).sum())

    def _solve32(self, b: np.ndarray) -> np.ndarray:
        x, info = lapack.spotrs(self.l, np.asarray(b, dtype=np.float32), lower=1)
        if info != 0:
            raise np.linalg.LinAlgError(f"spotrs failed (info={info})")
        return x.astype(np.float64)

    def solve(self, b: np.ndarray, trans: bool) -> np.ndarray:
        """``L^{-1} b`` or (``trans``) ``L^{-T} b``, to float32's accuracy (not refined:
        for a quantity the coarse phase may have approximately)."""
        x, info = lapack.strtrs(self.l, np.asarray(b, dtype=np.float32), lower=1,
                                trans=1 if trans else 0)
        if info != 0:
            raise np.linalg.LinAlgError(f"strtrs failed (info={info})")
        return x.astype(np.float64)

    def product(self, x: np.ndarray) -> np.ndarray:
        """``A x`` in float64 from the lower triangle (``x``: 2-d)."""
        return self.a @ x + self.a.T @ x - self.a_diagonal[:, None] * x

    def solve_refined(self, b: np.ndarray) -> np.ndarray:
        """``A^{-1} b`` to float64's accuracy by iterative refinement (``b``: 2-d)."""
        if self.a is None:
            raise ValueError("the float64 Schur complement was given up")
        b = np.asarray(b, dtype=np.float64)
        x = self._solve32(b)
        size = float(np.max(np.abs(x))) if x.size else 0.0
        if size == 0.0:
            return x
        last = size  # the first correction's error: about its own size
        for _ in range(REFINE_ROUNDS):
            dx = self._solve32(b - self.product(x))
            x += dx
            change = float(np.max(np.abs(dx))) if dx.size else 0.0
            # the error left is about the next correction: this one times the rate
            if change * min(1.0, change / last) <= REFINED * size:
                return x
            if change > 0.5 * last:  # not contracting: A too ill-conditioned for float32
                break
            last = change
        raise SingleRefinementError("refinement of a float32 Schur factor did not converge")

    def inverse_lower(self) -> np.ndarray:
        """``A^{-1}`` by its lower triangle (``spotri`` in the factor's own memory,
        float32; the factor and ``A`` are given up)."""
        self.a = None
        inv, info = lapack.spotri(self.l, lower=1, overwrite_c=1)
        if info != 0:
            raise np.linalg.LinAlgError(f"spotri failed (info={info})")
        self.l = None
        return np.asfortranarray(inv)


def single_supported(system) -> bool:
    """Whether an evaluation of ``system`` may factor its Schur complement in float32:
    a dense factor (not :mod:`.sparse`'s) with stored pairs and intercepts only, of order at least
    :data:`SINGLE_DENSE_MIN` (``system`` a :class:`~.system.CrossedSystem`; the tiled
    and other systems never)."""
    from .system import CrossedSystem

    return (isinstance(system, CrossedSystem) and system.sparse is None
            and system.schur is not None and not system.streamed
            and system.dense_g21 is None and system.intercepts_only
            and system.dense_size >= SINGLE_DENSE_MIN)
