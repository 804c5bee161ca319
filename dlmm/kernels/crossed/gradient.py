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

(``W_b``: block ``b`` of ``G21``; ``Y = A^{-1} N = -P21`` there). No ``T_k^{-1}``
appears, so the gradient is valid on the boundary (singular ``Lambda``). Cost: the
factorization, ``dpotri`` on the Schur factor (``2 Q2^3 / 3``) and ``O(sum_l nnz_l^2 +
Q2^2 r)``: value and gradient together cost about 3.5 values (InstEval: ~65 ms
against ~18 ms). It pays off with a quasi-Newton optimizer: from theta = 1, L-BFGS-B
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

from .factor import CrossedFactor, lambda2
from .inverse import SelectedInverse, selected_inverse
from .modes import back_solve
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


def _logdet_blocks(system: CrossedSystem, factor: CrossedFactor, inv: SelectedInverse) -> dict:
    """``sum_l (G Lambda P)_{kl,kl}`` per factor (``t_k x t_k``)."""
    t_1 = factor.factors[system.first]
    out = {system.first: np.einsum("lab,bc,lcd->ad", system.d, t_1, inv.p11)}
    if not system.dense_size:
        return out
    intercepts = all(system.n_terms[k] == 1 for k in system.rest)
    if intercepts:
        # sum_{i in k} (G22 Lambda_2 A^{-1})_ii = sum over G22's nonzeros (i, m) of
        # G22_im theta_m A^{-1}_mi: A^{-1} only where G22 is not zero, from its lower half.
        rows, cols, values, flat = system.g22_entries()
        owner = np.repeat(np.arange(len(system.rest)), system.rest_levels())
        theta = np.array([factor.factors[k][0, 0] for k in system.rest])[owner]
        terms = values * theta[cols] * inv.ainv_lower.reshape(-1, order="F")[flat]
        per_factor = np.bincount(owner[rows], weights=terms, minlength=len(system.rest))
    else:
        glam = np.array(system.g22, order="F", copy=True)
        lambda2(system, factor.factors, glam.T, transpose=True)  # glam <- G22 Lambda_2
    for j, (k, off, (idx, _lev, w)) in enumerate(zip(system.rest, system.rest_offsets,
                                                     system.blocks)):
        tk = factor.factors[k]
        yk = inv.y_e[idx]  # (m, t_k, t_1)
        out[system.first] = out[system.first] - np.einsum("bac,ae,bed->cd", w, tk, yk)
        t, lv = system.n_terms[k], system.n_levels[k]
        sl = slice(off, off + lv * t)
        if intercepts:
            gk = np.array([[per_factor[j]]])
        else:
            gk = np.einsum(
                "lam,lbm->ab",
                glam[sl].reshape(lv, t, -1),
                inv.ainv[sl].reshape(lv, t, -1),
            )
        out[k] = gk - np.einsum("bac,cd,bed->ae", w, t_1, yk)
    return out


def gradient_pieces(
    system: CrossedSystem, factor: CrossedFactor, inverse: SelectedInverse | None = None
) -> CrossedGradient:
    """``d log|C| / d theta`` and ``d (c'c) / d theta`` at the factor's theta.

    See the module docstring for the formulas.
    """
    inv = selected_inverse(system, factor) if inverse is None else inverse
    blocks = _logdet_blocks(system, factor, inv)

    r = system.n_columns
    sol = back_solve(system, factor, factor.c2, system.h1)
    r1 = system.h1 - np.einsum("lab,lbs->las", system.d, sol.bt1) - sol.g1
    l1, t1 = factor.l11.shape[:2]
    r2 = system.h2 - system.g21 @ sol.bt1.reshape(l1 * t1, r) - system.g22_sparse() @ sol.bt2
    quad = {system.first: np.einsum("lar,lbs->abrs", r1, sol.b1)}
    for k, off in zip(system.rest, system.rest_offsets):
        t, lv = system.n_terms[k], system.n_levels[k]
        sl = slice(off, off + lv * t)
        quad[k] = np.einsum("lar,lbs->abrs", r2[sl].reshape(lv, t, r), sol.b2[sl].reshape(lv, t, r))

    index = theta_index(system.n_terms)
    dlogdet = np.array([2.0 * blocks[k][a, b] for k, a, b in index])
    dctc = np.array([quad[k][a, b] + quad[k][a, b].T for k, a, b in index]).reshape(-1, r, r)
    return CrossedGradient(dlogdet, dctc)
