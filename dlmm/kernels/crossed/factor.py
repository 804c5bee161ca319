"""The blocked Cholesky factorization of ``C = Lambda' Z'Z Lambda + I`` for one theta.

With the layout of :mod:`.system` (factor 1 first, the rest dense):

    L = [[L11, 0  ],     L11 = blockdiag_l chol(I + T_1' D_l T_1)       (batched t_1 x t_1)
         [L21, L22]]     L21 = Lambda_2' G21 Lambda_1 L11^{-T}          (pattern of G21)
                         L22 = chol(I + Lambda_2'(G22 - G21 M1 G21')Lambda_2)   (dense LAPACK,
                               or sparse on a fill-reducing order: P A P' = L L', :mod:`.sparse`)

with ``M1 = blockdiag_l(T_1 C11_l^{-1} T_1')``, since ``L21 L21' = C21 C11^{-1} C12``.
``L21`` has no fill-in; it is never needed explicitly on the hot path (it is applied
as the sparse product above; :func:`explicit_l21` builds it for checks). Then

    log|V| = log|C| = 2 sum log diag L11 + 2 sum log diag L22
    c = L^{-1} Lambda' Z'[X y]:   c1 = L11^{-1} T_1' H1,
                                  c2 = L22^{-1} Lambda_2' (H2 - G21 M1 H1)
    c'c = c1'c1 + c2'c2 = [X y]'[X y] - [X y]'V^{-1}[X y]

so the driver forms ``S = xy_cross - c'c``. The cost of one evaluation is
``O(l_1 t_1^3 + schur_pairs + Q2^3 / 3)`` (see :meth:`.CrossedSystem.cost`; sparse:
the flops of the factor's pattern in place of ``Q2^3 / 3``), independent of the number
of rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg.blas as blas
import scipy.linalg.lapack as lapack
import scipy.sparse as sp

from ._blocks import (
    apply_lambda_rows,
    batched_cholesky,
    batched_solve,
    block_apply,
    sym_block_product,
)
from .level_pairs import schur_update2
from .single import SingleSchurFactor, lower_pattern
from .slopes import lambda_entries, lambda_g22_lower
from .sparse import SparseSchurFactor, factorize_sparse
from .system import CrossedSystem
from .theta import unpack_theta


@dataclass(eq=False)
class CrossedFactor:
    """The blocked factor of ``C`` at one theta and the solved ``c = L^{-1} Lambda'Z'[X y]``.

    Attributes
    ----------
    theta : ndarray
    factors : list of ndarray
        ``T_k`` per factor, in the caller's order.
    l11 : ndarray (l_1, t_1, t_1)
        Cholesky factors of the diagonal blocks ``C11_l = I + T_1' D_l T_1``.
    k1 : ndarray (l_1, t_1, t_1)
        ``C11_l^{-1} T_1'``.
    m1 : ndarray (l_1, t_1, t_1)
        ``T_1 C11_l^{-1} T_1'`` (the blocks of ``Lambda_1 C11^{-1} Lambda_1'``).
    l22 : ndarray (Q2, Q2), Fortran order, or SparseSchurFactor
        Lower triangle: Cholesky factor of the Schur complement (upper triangle
        unused); when the system factors it sparse (:mod:`.sparse`), the sparse
        factor of its permuted form (read it through :func:`tri_solve`).
    c1 : ndarray (l_1, t_1, r)
    c2 : ndarray (Q2, r)
    logdet : float
        ``log|C| = log|V|``.
    ctc : ndarray (r, r)
        ``c'c = [X y]'Z Lambda C^{-1} Lambda'Z'[X y]`` (the grouped engine's ``hmh``).
    schur_m1 : ndarray or None
        ``B vec(M1)`` at the targets of the stored Schur operator ``B`` (intercepts
        only), before the scaling by ``Lambda_2``: the gradient reuses it (``M1 =
        theta_1 K1``), one sparse product fewer; None on the other paths.
    b2 : ndarray (Q2, r) or None
        ``A^{-1} u2 = L22^{-T} c2``, refined to float64, where the Schur factor is in
        single precision (:class:`~.single.SingleSchurFactor`; ``c2`` is then None: its
        ``c2'c2 = u2'b2``); None on the float64 paths.
    lambda_w : ndarray (n_e, t_1) or None
        ``Lambda_2'G21`` at the row entries (:func:`.slopes.lambda_entries`) where the
        Schur complement was made from it (streamed pairs, slopes in the dense part);
        the gradient's ``N`` reuses it. None on the other paths.
    """

    theta: np.ndarray
    factors: list
    l11: np.ndarray
    k1: np.ndarray
    m1: np.ndarray
    l22: np.ndarray
    c1: np.ndarray
    c2: np.ndarray
    logdet: float
    ctc: np.ndarray
    schur_m1: np.ndarray | None = None
    b2: np.ndarray | None = None
    lambda_w: np.ndarray | None = None


def rest_factors(system: CrossedSystem, factors: list) -> list:
    """``T_k`` of the factors of the dense part, in the system's order."""
    return [factors[k] for k in system.rest]


def dense_theta(system: CrossedSystem, factors: list) -> np.ndarray:
    """``theta_k`` of each row of the dense part (intercepts only: ``Lambda_2`` is this
    diagonal)."""
    return np.array([factors[k][0, 0] for k in system.rest])[system.dense_owner()]


def lambda2(system: CrossedSystem, factors: list, dense: np.ndarray, transpose: bool) -> None:
    """In place ``dense <- Lambda_2' dense`` (``transpose``) or ``Lambda_2 dense`` (rows)."""
    apply_lambda_rows(
        dense, rest_factors(system, factors), system.rest_offsets, system.rest_levels(), transpose
    )


def tri_solve(l22: np.ndarray | SparseSchurFactor | SingleSchurFactor, b: np.ndarray,
              trans: bool) -> np.ndarray:
    """``L22^{-1} b`` or (``trans``) ``L22^{-T} b``: LAPACK ``dtrtrs`` on a dense factor,
    the compiled sparse solves on a :class:`~.sparse.SparseSchurFactor` (``strtrs``
    on a :class:`~.single.SingleSchurFactor`: float32's accuracy)."""
    if isinstance(l22, (SparseSchurFactor, SingleSchurFactor)):
        return l22.solve(b, trans)
    if l22.shape[0] == 0:
        return np.array(b, dtype=float)
    x, info = lapack.dtrtrs(l22, b, lower=1, trans=1 if trans else 0)
    if info != 0:
        raise np.linalg.LinAlgError(f"dtrtrs failed (info={info})")
    return x


def schur_complement(system: CrossedSystem, factors: list, m1: np.ndarray,
                     keep: dict | None = None) -> np.ndarray:
    """``I + Lambda_2' (G22 - G21 M1 G21') Lambda_2`` (dense, symmetric, Fortran order).

    With intercepts only in the dense part (``Lambda_2 = diag(s)``, one ``s`` per
    factor) only the lower triangle is formed, and read: entry ``(i, j)`` is
    ``s_i s_j (G22 - G21 M1 G21')_ij``. Stored pairs: ``G21 M1 G21'`` is one sparse
    mat-vec ``B @ vec(M1)`` scattered into its targets, into a zero matrix (what is
    not a target or a nonzero of ``G22`` is zero). Dense ``G21``: dense products
    (:func:`dense_schur_update`), the whole matrix. Streamed pairs (:mod:`.streamed`):
    the compiled update of ``G22``'s lower triangle; with several terms on a factor of
    the dense part, of ``Lambda_2'G22 Lambda_2``'s lower triangle by ``Lambda_2'G21``'s
    entries (:mod:`.slopes`: ``Lambda_2`` applied to the blocks, not the matrix). On the
    other paths, when a factor of the dense part has several terms (``Lambda_2`` then
    mixes rows and columns) the matrix is made whole (both triangles) before
    ``Lambda_2`` is applied.
    """
    q2 = system.dense_size
    rest = rest_factors(system, factors)
    intercepts = all(t.shape[0] == 1 for t in rest)
    scale = dense_theta(system, factors) if intercepts else None
    if system.dense_g21 is not None:
        x = dense_g22(system, None)
        dense_schur_update(system, m1, x)
        if intercepts:
            x *= scale[:, None]
            x *= scale[None, :]
    elif system.streamed and not intercepts:
        # Lambda_2 folded into G22's blocks and G21's entries (:mod:`.slopes`): the
        # update writes the final lower triangle, no pass over the whole matrix
        from .streamed import schur_update

        x = np.zeros((q2, q2), order="F")
        lambda_g22_lower(system, factors, x.reshape(-1, order="F"))
        w = lambda_entries(system, factors)
        if keep is not None:
            keep["lambda_w"] = w
        v = np.einsum("eab,eb->ea", m1[system.entry_level], w)
        if w.shape[1] == 2:
            schur_update2(x, system.stream, system.entry_row, system.entry_level, w, v)
        else:
            schur_update(x, system.stream, system.entry_row, system.entry_level, w, v)
        x[np.arange(q2), np.arange(q2)] += 1.0
        return x
    elif system.streamed:
        from .streamed import mirror_lower, schur_update

        x = dense_g22(system, scale, lower=True)
        w = system.entry_w
        if m1.shape[1] == 1:
            v = m1[system.entry_level, 0, 0][:, None] * w
        else:
            v = np.einsum("eab,eb->ea", m1[system.entry_level], w)
        if intercepts:  # Lambda_2 folded into the entries: x is scaled as it is made
            s_e = scale[system.entry_row][:, None]
            w, v = s_e * w, s_e * v
        level_m = m1[:, 0, 0] if m1.shape[1] == 1 else None
        schur_update(x, system.stream, system.entry_row, system.entry_level, w, v, level_m)
        if not intercepts:
            mirror_lower(x)
    else:
        x = np.zeros((q2, q2), order="F")
        flat = x.reshape(-1, order="F")
        rows, cols, values, at = system.g22_entries()
        core = system.schur @ m1.reshape(-1)
        if intercepts:
            if keep is not None:  # B vec(M1) for the gradient, before it is scaled
                keep["schur_m1"] = core.copy()
            if len(rest) == 1:  # one factor: s_i s_j is one number
                core *= -rest[0][0, 0] ** 2
            else:
                core *= -system.target_scale(scale)
            flat[system.schur_target] = core  # x was zero there: set, not subtract
            lower = rows >= cols
            flat[at[lower]] += values[lower] * scale[rows[lower]] * scale[cols[lower]]
        else:
            flat[rows + cols * q2] = values
            flat[system.schur_target] -= core
            offdiag, mirror = system.schur_mirror()
            flat[mirror] -= core[offdiag]
    if not intercepts:
        lambda2(system, factors, x, transpose=True)
        lambda2(system, factors, x.T, transpose=True)  # x <- x Lambda_2
    x[np.arange(q2), np.arange(q2)] += 1.0
    return x


def dense_g22(system: CrossedSystem, scale: np.ndarray | None, lower: bool = False
              ) -> np.ndarray:
    """``G22`` as a new ``Q2 x Q2`` Fortran array from its nonzeros (the step's working
    matrix: the only dense copy), times ``s_i s_j`` when ``scale`` is given, whole or
    (``lower``) its lower triangle only."""
    q2 = system.dense_size
    x = np.zeros((q2, q2), order="F")
    flat = x.reshape(-1, order="F")
    rows, cols, values, _ = system.g22_entries()
    if lower:
        keep = rows >= cols
        rows, cols, values = rows[keep], cols[keep], values[keep]
    if scale is not None:
        values = values * scale[rows] * scale[cols]
    flat[rows + cols * q2] = values
    return x


def dense_schur_update(system: CrossedSystem, m1: np.ndarray, x: np.ndarray) -> None:
    """In place ``x -= G21 M1 G21'`` (``Q2 x Q2``, Fortran order) from a dense ``G21``
    (:attr:`.CrossedSystem.dense_g21`): ``G21`` times the blocks of ``M1`` (batched over
    the levels of factor 1), then one BLAS ``dgemm`` into ``x`` (no second ``Q2 x Q2``
    array); symmetric up to rounding."""
    g = system.dense_g21
    q2 = g.shape[0]
    gm = g * m1[:, 0, 0][None, :, None] if m1.shape[1] == 1 else np.einsum(
        "ila,lab->ilb", g, m1, optimize=True)
    # C-ordered (Q2, k) arrays are Fortran (k, Q2) ones: op(a) = gm, op(b) = g'
    out = blas.dgemm(-1.0, gm.reshape(q2, -1).T, g.reshape(q2, -1).T, beta=1.0, c=x,
                     trans_a=1, overwrite_c=1)
    if not np.shares_memory(out, x):  # not expected: x is Fortran-ordered float64
        x[...] = out


def sparse_schur_values(system: CrossedSystem, factors: list, m1: np.ndarray) -> np.ndarray:
    """The entries of :func:`schur_complement` on the sparse factor's pattern of ``A``
    (:attr:`.sparse.SchurPattern.ai` order), intercepts only: the targets of ``B``,
    the lower nonzeros of ``G22`` and the diagonal, without the ``Q2 x Q2`` array."""
    pattern = system.sparse
    rest = rest_factors(system, factors)
    scale = dense_theta(system, factors)
    rows, cols, values, _ = system.g22_entries()
    lower, at_lower = system.g22_lower()
    core = system.schur @ m1.reshape(-1)
    if len(rest) == 1:
        core *= -rest[0][0, 0] ** 2
    else:
        core *= -system.target_scale(scale)
    ax = np.zeros(pattern.ai.size)
    ax[pattern.a_positions(system.schur_target)] = core
    ax[pattern.a_positions(at_lower)] += (values[lower] * scale[rows[lower]]
                                           * scale[cols[lower]])
    ax[pattern.a_diagonal()] += 1.0
    return ax


def single_schur_values(system: CrossedSystem, factors: list, m1: np.ndarray,
                        keep: dict) -> np.ndarray:
    """The entries of :func:`schur_complement` on its lower nonzeros
    (:func:`.single.lower_pattern` order; stored pairs, intercepts only), without the
    ``Q2 x Q2`` float64 array: for :class:`~.single.SingleSchurFactor`."""
    flat, at_target, at_g22, at_diagonal, _, _ = lower_pattern(system)
    rest = rest_factors(system, factors)
    scale = dense_theta(system, factors)
    rows, cols, values, _ = system.g22_entries()
    lower, _ = system.g22_lower()
    core = system.schur @ m1.reshape(-1)
    keep["schur_m1"] = core.copy()  # B vec(M1) for the gradient, before it is scaled
    if len(rest) == 1:
        core *= -rest[0][0, 0] ** 2
    else:
        core *= -system.target_scale(scale)
    data = np.zeros(flat.size)
    data[at_target] = core
    data[at_g22] += values[lower] * scale[rows[lower]] * scale[cols[lower]]
    data[at_diagonal] += 1.0
    return data


def _block_groups(system: CrossedSystem) -> list:
    """Per pair of factors of the dense part, the pattern's block pairs between them as
    positions in ``A``'s sparse storage (``(m, t_a, t_b)``, entry ``(i, j)`` read from
    ``(max, min)``) and which of them lie in the lower triangle (cached)."""
    if "sparse_block_groups" not in system._cache:
        pattern = system.sparse
        q2 = pattern.n
        starts = pattern.block_start
        owner = system.dense_owner()[starts]
        terms = [system.n_terms[k] for k in system.rest]
        bi, bj = pattern.block_pairs
        groups = []
        for fa in range(len(terms)):
            for fb in range(len(terms)):
                sel = (owner[bi] == fa) & (owner[bj] == fb)
                if not sel.any():
                    continue
                ta, tb = terms[fa], terms[fb]
                rows = starts[bi[sel]][:, None, None] + np.arange(ta)[None, :, None]
                cols = starts[bj[sel]][:, None, None] + np.arange(tb)[None, None, :]
                rows, cols = np.broadcast_arrays(rows, cols)
                flat = np.maximum(rows, cols) + np.minimum(rows, cols) * q2
                src = pattern.a_positions(flat.ravel()).reshape(rows.shape)
                groups.append((fa, fb, src, rows >= cols))
        system._cache["sparse_block_groups"] = groups
    return system._cache["sparse_block_groups"]


def sparse_schur_values_blocks(system: CrossedSystem, factors: list,
                               m1: np.ndarray) -> np.ndarray:
    """:func:`sparse_schur_values` when a factor of the dense part has several terms:
    ``X = G22 - G21 M1 G21'`` on the pattern, then ``T_a' X_IJ T_b`` per block pair
    (``Lambda_2`` mixes only within a level's block), without the ``Q2 x Q2`` array."""
    pattern = system.sparse
    rows, cols, values, _ = system.g22_entries()
    lower, at_lower = system.g22_lower()
    xa = np.zeros(pattern.ai.size)
    xa[pattern.a_positions(system.schur_target)] = -(system.schur @ m1.reshape(-1))
    xa[pattern.a_positions(at_lower)] += values[lower]
    rest = rest_factors(system, factors)
    ax = np.zeros(pattern.ai.size)
    for fa, fb, src, low in _block_groups(system):
        block = np.einsum("ai,mab,bj->mij", rest[fa], xa[src], rest[fb], optimize=True)
        ax[src[low]] = block[low]
    ax[pattern.a_diagonal()] += 1.0
    return ax


def factorize(system: CrossedSystem, theta: np.ndarray, single: bool = False) -> CrossedFactor:
    """Blocked Cholesky factor of ``C``, ``log|C|`` and ``c'c`` at ``theta``.

    Parameters
    ----------
    system : CrossedSystem
    theta : ndarray
        Packed lower triangles of the ``T_k`` in the caller's factor order
        (:func:`~.theta.unpack_theta`).
    single : bool
        Factor a dense Schur complement in float32 (:mod:`.single`: ``log|C|`` to
        float32's accuracy, ``c'c`` refined to float64's; ``c2`` is None and ``b2``
        given); a sparse one is factored in float64 either way.

    Returns
    -------
    CrossedFactor
        ``logdet = log|C|``, ``ctc = c'c`` with ``c = L^{-1} Lambda'Z'[X y]``; the
        driver's ``S = [X y]'V^{-1}[X y]`` is ``system.xy_cross - ctc``.
    """
    theta = np.asarray(theta, dtype=float).ravel()
    factors = unpack_theta(theta, system.n_terms)
    t_1 = factors[system.first]
    t1 = t_1.shape[0]
    r = system.n_columns

    c11 = sym_block_product(t_1, system.d)
    c11[:, np.arange(t1), np.arange(t1)] += 1.0
    l11 = batched_cholesky(c11)
    k1 = batched_solve(c11, np.broadcast_to(t_1.T, c11.shape))
    m1 = np.einsum("ab,lbc->lac", t_1, k1)
    m1 = 0.5 * (m1 + np.swapaxes(m1, 1, 2))
    u1 = system.h1 * t_1[0, 0] if t1 == 1 else np.einsum("ba,lbr->lar", t_1, system.h1)
    c1 = batched_solve(l11, u1)
    logdet = 2.0 * float(np.log(np.diagonal(l11, axis1=1, axis2=2)).sum())
    c1_flat = c1.reshape(-1, r)
    ctc = c1_flat.T @ c1_flat

    q2 = system.dense_size
    keep: dict = {}
    if q2:
        if system.sparse is not None:
            if all(t.shape[0] == 1 for t in rest_factors(system, factors)):
                ax = sparse_schur_values(system, factors, m1)
            else:
                ax = sparse_schur_values_blocks(system, factors, m1)
            l22 = factorize_sparse(system.sparse, ax)
            logdet += 2.0 * l22.log_diagonal_sum()
        elif single:
            l22 = SingleSchurFactor(system, single_schur_values(system, factors, m1, keep))
            logdet += 2.0 * l22.log_diagonal_sum()
        else:
            x = schur_complement(system, factors, m1, keep)
            l22, info = lapack.dpotrf(x, lower=1, clean=0, overwrite_a=1)
            if info != 0:
                raise np.linalg.LinAlgError(
                    f"Schur complement is not positive definite (info={info})")
            logdet += 2.0 * float(np.log(np.diagonal(l22)).sum())
        m1h1 = block_apply(m1, system.h1).reshape(-1, r)
        u2 = system.h2 - system.g21 @ m1h1
        lambda2(system, factors, u2, transpose=True)
        if isinstance(l22, SingleSchurFactor):  # c2'c2 = u2' A^{-1} u2, refined
            keep["b2"] = l22.solve_refined(u2)
            c2 = None
            ctc = ctc + u2.T @ keep["b2"]
        else:
            c2 = tri_solve(l22, u2, trans=False)
            ctc = ctc + c2.T @ c2
    else:
        l22 = np.zeros((0, 0), order="F")
        c2 = np.zeros((0, r))
    ctc = 0.5 * (ctc + ctc.T)
    return CrossedFactor(theta, factors, l11, k1, m1, l22, c1, c2, logdet, ctc,
                         keep.get("schur_m1"), keep.get("b2"), keep.get("lambda_w"))


def explicit_l21(system: CrossedSystem, factor: CrossedFactor) -> sp.csr_matrix:
    """``L21 = Lambda_2' G21 Lambda_1 L11^{-T}`` as a sparse matrix (for checks, not the fit).

    Its pattern is that of ``G21 = Z_2'Z_1``: the product introduces no fill-in.
    Built densely (``Q2 x l_1 t_1``), so only for small systems.
    """
    t_1 = factor.factors[system.first]
    l1, t1 = factor.l11.shape[:2]
    # right_l = T_1 L11_l^{-T} = (L11_l^{-1} T_1')'
    right = np.swapaxes(batched_solve(factor.l11, np.broadcast_to(t_1.T, factor.l11.shape)), 1, 2)
    out = system.g21.toarray().reshape(-1, l1, t1)
    out = np.einsum("mlc,lcd->mld", out, right).reshape(-1, l1 * t1)
    lambda2(system, factor.factors, out, transpose=True)
    return sp.csr_matrix(out)
