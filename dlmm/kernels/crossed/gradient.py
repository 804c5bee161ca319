"""Derivatives of ``log|C|`` and ``c'c`` with respect to theta (value + gradient ~3.5 values).

For the entry ``(a, b)`` of ``T_k`` (``dLambda = I (x) E_ab`` on factor ``k``),
with ``P = C^{-1}``, ``B = P Lambda'H`` (``H = Z'[X y]``) and
``R = H - G Lambda B = Z'V^{-1}[X y]``:

    d log|C|  = tr(P dC) = 2 <G Lambda P, dLambda> = 2 sum_l [(G Lambda P)_{kl,kl}]_{ab}
    d (c'c)   = R' dLambda B + B' dLambda' R,    R' dLambda B = sum_l outer(R_kl[a], B_kl[b])

``(G Lambda P)_{kl,kl}`` needs ``P`` only on the pattern of ``G = Z'Z``: the diagonal
blocks of ``P11``, ``P21`` on the pattern of ``G21`` and the dense ``P22``
(:mod:`.inverse`). Summed over levels:

    factor 1:   sum_l D_l T_1 P11_l  -  sum_b W_b' T_k Y_b
    factor k:  -sum_{b in k} W_b T_1 Y_b'  +  sum_{l in k} (G22 Lambda_2 A^{-1})_{kl,kl}

(``W_b``: block ``b`` of ``G21``; ``Y = A^{-1} N = -P21`` there). With intercepts
only and stored pairs the pair sums are inner products of ``A^{-1}`` with
``Theta K(v) Theta`` at the targets of the Schur operator (one more product with
``B``; :func:`_logdet_blocks_intercepts`), so ``Y`` and ``P11`` are not formed; with
streamed pairs and one factor in the dense part the same sums come from ``g_l'A^{-1}g_l``
per level of factor 1 (:func:`_logdet_blocks_streamed`).
No ``T_k^{-1}`` appears, so the gradient is valid on the boundary (singular
``Lambda``). Cost: the
factorization, ``dpotri`` on the Schur factor (``2 Q2^3 / 3``) and ``O(sum_l nnz_l^2 +
Q2^2 r)``: value and gradient together cost about 3 values (InstEval, one thread:
~53 ms against ~18 ms). With a sparse Schur factor (:mod:`.sparse`) ``A^{-1}`` is
Takahashi's selected inverse on the factor's pattern instead of ``dpotri`` and the
``Q2^2`` terms go (STAR, intercepts only, one thread under a load of ~17: a value
~1 ms, value and gradient ~9 ms). It pays off with a quasi-Newton optimizer: from
theta = 1, L-BFGS-B
with this gradient reaches lme4's InstEval optimum in 12 (two factors) and 25 (three
factors) evaluations, where Powell needs 111 / 341 and Nelder-Mead 103 / 214, and
finite-difference L-BFGS-B stops ~5e-7 (two factors) to 5e-6 short in llf.
The derivative-free alternative was measured too (lme4 and MixedModels.jl use
BOBYQA; SciPy has its successor COBYQA), on values alone (a value costs about a
third of value and gradient: 16 against 48 ms on InstEval, 1.2-1.5 against
4.3 s on the 10^6-row ratings): from the same moment start, COBYQA needs 20
(two factors) and 34 (three) values to come within 1e-6 of lme4's llf,
Nelder-Mead 45 / 88, Powell 42 / 74, against 7 / 13 gradient steps of L-BFGS-B;
the Newton polish and the convergence test need gradients either way (2 m + 1),
so COBYQA would cost about the same (7 against 7 gradient-equivalents before the
polish on two factors, 11 against 13 on three) for a weaker stopping rule.
L-BFGS-B on this gradient stays the default.

The driver contracts (``dS = -d(c'c)``, ``cvec = [-beta; 1]``):

    d llf = -1/2 d log|C| + fac/(2 qf) cvec' d(c'c) cvec [+ 1/2 tr(S_XX^{-1} d(c'c)_XX)]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._blocks import block_apply, level_products
from .dense_hessian import dense_pair_hessian
from .factor import CrossedFactor, dense_theta
from .information import information_pieces
from .inverse import SelectedInverse, factor_inverse_lower, lower_at, selected_inverse
from .modes import back_solve
from .slopes import g22_lambda_ainv
from .streamed import dense_level_quadratic, level_quadratic
from .system import CrossedSystem
from .theta import theta_index


@dataclass(eq=False)
class CrossedGradient:
    """Derivatives along each theta entry.

    Attributes
    ----------
    dlogdet : ndarray (n_theta,)
        ``d log|C| / d theta_j``.
    dctc : ndarray (n_theta, r, r)
        ``d (c'c) / d theta_j`` (symmetric); ``dS_j = -dctc[j]``.
    """

    dlogdet: np.ndarray
    dctc: np.ndarray
    information: tuple | None = None
    pair_hessian: tuple | None = None


def _g22_lambda_ainv(system: CrossedSystem, factor: CrossedFactor,
                     ainv_lower: np.ndarray) -> np.ndarray:
    """``sum_{i in k} (G22 Lambda_2 A^{-1})_ii`` per factor of the dense part, intercepts
    only: the sum over G22's nonzeros ``(i, m)`` of ``G22_im theta_m A^{-1}_mi``
    (``A^{-1}`` only where ``G22`` is not zero, from its lower half)."""
    rows, cols, values, flat = system.g22_entries()
    owner = system.dense_owner()
    theta = dense_theta(system, factor.factors)
    terms = values * theta[cols] * lower_at(ainv_lower, flat)
    return np.bincount(owner[rows], weights=terms, minlength=len(system.rest))


def _logdet_blocks_intercepts(system: CrossedSystem, factor: CrossedFactor,
                              ainv_lower: np.ndarray) -> dict:
    """:func:`_logdet_blocks` for intercepts only and stored pairs, from ``A^{-1}`` at
    the targets of ``B`` (no ``N``, ``Y`` or ``P11``).

    With ``K(v) = sum_l v_l g_l g_l'`` (``g_l``: column ``l`` of ``G21``; ``B v`` is its
    lower triangle at the targets), ``K1_l = theta_1 / C11_l`` and
    ``Theta = diag(theta_k(i))`` over the dense rows, the terms of
    :func:`_logdet_blocks` that run over the pairs are

        sum_{e in k} W_e Y_e = sum_{i in k} sum_j (K(K1) Theta)_ij A^{-1}_ij     (R_k)
        sum_l D_l sum_{e in l} N_e Y_e = <Theta K(D K1^2) Theta, A^{-1}>

    so that ``out_1 = theta_1 (sum_l D_l / C11_l + <Theta K(D K1^2) Theta, A^{-1}>)
    - sum_k theta_k R_k`` and ``out_k = (G22 Lambda_2 A^{-1})_k - theta_1 R_k``:
    one more product with ``B`` and sums over its targets.
    """
    theta1 = float(factor.factors[system.first][0, 0])
    d = system.d[:, 0, 0]
    k1 = factor.k1[:, 0, 0]
    c11_inv = 1.0 / (1.0 + theta1 * theta1 * d)
    if factor.schur_m1 is not None and theta1 != 0.0:  # B vec(M1) = theta_1 B K1
        k_pair = factor.schur_m1 / theta1
        k_quad = system.schur @ (d * k1 * k1)
    else:
        k_pair, k_quad = (system.schur @ np.stack([k1, d * k1 * k1], axis=1)).T
    a_t = lower_at(ainv_lower, system.schur_target)
    t_rows, t_cols, off_diag = system.target_rows_cols()
    both = system.target_multiplicity()  # a target off the diagonal stands for two entries
    rest_theta = np.array([factor.factors[k][0, 0] for k in system.rest])
    term = k_pair * a_t
    if len(system.rest) == 1:  # one factor in the dense part: Theta is one number
        quad = float(rest_theta[0] ** 2 * (both @ (k_quad * a_t)))
        r_k = rest_theta * float(both @ term)
    else:
        owner = system.dense_owner()
        theta = dense_theta(system, factor.factors)
        th_r, th_c = theta[t_rows], theta[t_cols]
        quad = float(np.sum(both * th_r * th_c * k_quad * a_t))
        n_rest = len(system.rest)
        r_k = np.bincount(owner[t_rows], weights=term * th_c, minlength=n_rest)
        r_k += np.bincount(owner[t_cols], weights=np.where(off_diag, term * th_r, 0.0),
                           minlength=n_rest)
    out = {system.first: np.array([[theta1 * (float(d @ c11_inv) + quad) - rest_theta @ r_k]])}
    g_k = _g22_lambda_ainv(system, factor, ainv_lower)
    for j, k in enumerate(system.rest):
        out[k] = np.array([[g_k[j] - theta1 * r_k[j]]])
    return out


def _logdet_blocks_streamed(system: CrossedSystem, factor: CrossedFactor,
                            ainv_lower: np.ndarray, dense_q: np.ndarray | None) -> dict:
    """:func:`_logdet_blocks_intercepts` with streamed pairs and one factor in the dense
    part (``Theta = theta I``): with ``q_l = g_l' A^{-1} g_l`` per level of factor 1
    (:func:`.streamed.level_quadratic`, the update's pairs once each; the dense levels'
    from the factor, ``dense_q``), ``<K(v), A^{-1}> = sum_l v_l q_l``, so the pair sums
    need neither ``N``, ``Y`` nor the gather over all ordered pairs."""
    theta1 = float(factor.factors[system.first][0, 0])
    theta = float(factor.factors[system.rest[0]][0, 0])
    d = system.d[:, 0, 0]
    k1 = factor.k1[:, 0, 0]
    c11_inv = 1.0 / (1.0 + theta1 * theta1 * d)
    q = level_quadratic(ainv_lower, system.stream, system.entry_row, system.entry_level,
                        system.entry_w[:, 0], d.size, dense_q)
    quad = theta * theta * float((d * k1 * k1) @ q)
    r = theta * float(k1 @ q)
    g_k = _g22_lambda_ainv(system, factor, ainv_lower)
    k = system.rest[0]
    return {system.first: np.array([[theta1 * (float(d @ c11_inv) + quad) - theta * r]]),
            k: np.array([[g_k[0] - theta1 * r]])}


def _logdet_blocks(system: CrossedSystem, factor: CrossedFactor, inv: SelectedInverse) -> dict:
    """``sum_l (G Lambda P)_{kl,kl}`` per factor (``t_k x t_k``)."""
    t_1 = factor.factors[system.first]
    out = {system.first: np.einsum("lab,bc,lcd->ad", system.d, t_1, inv.p11)}
    if not system.dense_size:
        return out
    intercepts = all(system.n_terms[k] == 1 for k in system.rest)
    if intercepts:
        per_factor = _g22_lambda_ainv(system, factor, inv.ainv_lower)
    else:  # G22's block pairs only, not the Q2 x Q2 G22 Lambda_2 and A^{-1}
        blocks = g22_lambda_ainv(system, factor.factors,
                                 lambda flat: lower_at(inv.ainv_lower, flat))
    if factor.lambda_w is not None:  # sum_b W_b' T_k Y_b = W~' Y over all entries
        out[system.first] = out[system.first] - factor.lambda_w.T @ inv.y_e
    for j, (k, (idx, _lev, w)) in enumerate(zip(system.rest, system.blocks)):
        tk = factor.factors[k]
        yk = inv.y_e[idx]  # (m, t_k, t_1)
        m, t_k, t1 = w.shape
        # sum_b W_b' T_k Y_b and sum_b W_b T_1 Y_b' as matrix products (BLAS), not a
        # three-operand einsum's loops
        if factor.lambda_w is None:
            tky = np.matmul(tk, yk).reshape(m * t_k, t1)
            out[system.first] = out[system.first] - w.reshape(m * t_k, t1).T @ tky
        gk = np.array([[per_factor[j]]]) if intercepts else blocks[j]
        # sum_b W_b T_1 Y_b' = sum_{c,d} T_1[c, d] sum_b W_b[:, c] Y_b[:, d]': one product
        # of (m, t_k t_1) arrays, not m tiny ones
        q = (w.reshape(m, -1).T @ yk.reshape(m, -1)).reshape(t_k, t1, t_k, t1)
        out[k] = gk - np.einsum("acbd,cd->ab", q, t_1)
    return out


def residual_products(system: CrossedSystem, factor: CrossedFactor) -> tuple:
    """``(B, R1, R2)``: the back solve ``B = C^{-1} Lambda'H`` and ``R = H - G Lambda B =
    Z'V^{-1}[X y]`` on factor 1's levels ``(l_1, t_1, r)`` and on the dense part."""
    r = system.n_columns
    # (c2 None: the factor's refined b2, single precision)
    sol = back_solve(system, factor, factor.c2, system.h1)
    r1 = system.h1 - block_apply(system.d, sol.bt1) - sol.g1
    l1, t1 = factor.l11.shape[:2]
    r2 = system.h2 - system.g21 @ sol.bt1.reshape(l1 * t1, r) - system.g22_sparse() @ sol.bt2
    return sol, r1, r2


def gradient_pieces(
    system: CrossedSystem, factor: CrossedFactor, inverse: SelectedInverse | None = None,
    consume: bool = False, information: bool = False, pair_hessian: bool = False,
) -> CrossedGradient:
    """``d log|C| / d theta`` and ``d (c'c) / d theta`` at the factor's theta.

    See the module docstring for the formulas. ``consume``: the caller is done with
    ``factor``, whose dense Schur factor then holds the inverse (one ``Q2 x Q2`` array
    less at the peak; ``factor.l22`` is None after). ``information`` (intercepts only):
    the average-information pieces too (:func:`.information.information_pieces`),
    from the factor before it is inverted. ``pair_hessian`` (intercepts only, a dense
    inverse): the exact second derivatives along the dense part's factors too
    (:func:`.dense_hessian.dense_pair_hessian`).
    """
    sol, r1, r2 = residual_products(system, factor)
    info = information_pieces(system, factor, r1, r2) \
        if information and system.intercepts_only else None
    r = system.n_columns
    quad = {system.first: level_products(r1, sol.b1)}
    for k, off in zip(system.rest, system.rest_offsets):
        t, lv = system.n_terms[k], system.n_levels[k]
        sl = slice(off, off + lv * t)
        quad[k] = level_products(r2[sl].reshape(lv, t, r), sol.b2[sl].reshape(lv, t, r))

    if inverse is None and system.intercepts_only and system.schur is not None \
            and system.dense_size:
        ainv = factor_inverse_lower(factor, consume)
        blocks = _logdet_blocks_intercepts(system, factor, ainv)
    elif inverse is None and system.intercepts_only and system.streamed \
            and len(system.rest) == 1 and system.dense_size:
        dense_q = None
        if system.stream.dense_levels.size:  # from the factor, before it is inverted
            dense_q = dense_level_quadratic(factor.l22, system.stream, system.entry_row,
                                            system.entry_w[:, 0])
        ainv = factor_inverse_lower(factor, consume)
        blocks = _logdet_blocks_streamed(system, factor, ainv, dense_q)
    else:
        inv = selected_inverse(system, factor, consume) if inverse is None else inverse
        blocks = _logdet_blocks(system, factor, inv)
        ainv = inv.ainv_lower
    index = theta_index(system.n_terms)
    dlogdet = np.array([2.0 * blocks[k][a, b] for k, a, b in index])
    dctc = np.array([quad[k][a, b] + quad[k][a, b].T for k, a, b in index]).reshape(-1, r, r)
    pairs = None
    if pair_hessian and system.intercepts_only and system.dense_size \
            and isinstance(ainv, np.ndarray):
        pairs = dense_pair_hessian(system, factor, ainv, sol.b1, sol.b2, r2)
    return CrossedGradient(dlogdet, dctc, info, pairs)
