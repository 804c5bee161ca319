"""Blocks of groups whose cross-products are kept by residual component.

A residual model with parameters (a variance per stratum, AR(1) within groups;
:mod:`dlmm.objective.residual_structure`) makes every cross-product of a group a
weighted sum of components the one pass keeps apart: with coefficients ``c_k``,

    G_i(c) = Σ_k c_k G_{i,k},   H_i(c) = Σ_k c_k H_{i,k},   K(c) = Σ_k c_k K_k,

``G_{i,k} = Z_i' P_{i,k} Z_i``, ``H_{i,k} = Z_i' P_{i,k} [X y]_i`` and ``K_k`` the same sum
of ``[X y]`` over the data (``P_{i,k}`` a component of the precision: the rows of a
stratum, the first and last rows, pairs of consecutive rows). At given ``c`` a block
is a grouped engine's block (:meth:`ComponentBlock.at`). A step is one sweep over a
block's groups (:func:`sweep`): with ``M_i = Λ C_i⁻¹ Λ'`` and ``N_i = M_i H_i``, since
``hmh = Σ_i H_i' M_i H_i`` and ``dM_i = -M_i dG_i M_i``, the derivatives along a
direction ``v`` over the components (``G_{i,v} = Σ_k v_k G_{i,k}``, ``H_{i,v}`` alike) are

    ∂ Σ_i log|C_i| / ∂v = Σ_i tr(M_i G_{i,v})
    ∂ hmh / ∂v          = Σ_i (H_{i,v}' N_i + N_i' H_{i,v} - N_i' G_{i,v} N_i)

and, with ``S = K - hmh``, ``∂hmh/∂v - Σ_k v_k K_k`` enters the one gradient formula of
every engine (:func:`dlmm.objective.profiled.direction_gradient`); a Newton step adds
the second-derivative sums along the covariance's directions and the residual
parameters' (:func:`numpy_sweep` states them). This module gives the per-block sums;
``K`` and the derivatives of ``log|R|`` are added on the driver. It knows nothing of
where the blocks live, nor what the components mean.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from .block import StatsBlock, block_effects
from .layout import GroupBatch
from .moments import block_moment_pieces
from .pieces import LikelihoodPieces, _Additive

#: Groups from which a block's derivatives along the components run the compiled loop
#: (:mod:`dlmm.kernels.residual_loops`); below, batched NumPy (its load would cost more).
COMPILED_MIN_GROUPS = 1_000

#: Groups of a block whose combined cross-products one BLAS product forms before the
#: compiled sweep reads them (:func:`sweep`): a slice of some 1-2 MB, not arrays the
#: size of the block made (and their pages faulted in) at every step.
SWEEP_GROUPS = 2_048

_LOCK = threading.Lock()


@dataclass(eq=False)
class ResidualPieces(LikelihoodPieces):
    """:class:`LikelihoodPieces` with the derivatives along the residual components'
    coefficients.

    Attributes
    ----------
    p_res : ndarray (d,)
        ``∂ log|V|`` along each direction ``v`` over the components' coefficients (the
        groups' part, ``Σ_i tr(M_i G_{i,v})``, ``G_{i,v} = Σ_k v_k G_{i,k}``).
    t_res : ndarray (d, r, r)
        ``∂ hmh - Σ_k v_k K_k`` along each (the block sums hold ``∂ hmh``; the driver
        subtracts the ``K`` part).
    """

    p_res: np.ndarray = None  # type: ignore[assignment]
    t_res: np.ndarray = None  # type: ignore[assignment]


@dataclass(eq=False)
class ComponentBlock:
    """Whole groups with their cross-products by residual component: what a worker keeps.

    Attributes
    ----------
    labels : ndarray (b,)
        Group labels, sorted.
    n : ndarray (b,)
        Rows of each group.
    g : ndarray (K, b, q, q)
        ``G_{i,k}`` (zero where a group has no part in component k).
    h : ndarray (K, b, q, r)
        ``H_{i,k}``.
    """

    labels: np.ndarray
    n: np.ndarray
    g: np.ndarray
    h: np.ndarray

    @property
    def n_groups(self) -> int:
        return int(self.labels.shape[0])

    @property
    def nbytes(self) -> int:
        return int(self.labels.nbytes + self.n.nbytes + self.g.nbytes + self.h.nbytes)

    def __sizeof__(self) -> int:
        """The block's bytes (``sys.getsizeof``, which Dask's ``sizeof`` falls back to):
        a scheduler that knows them runs each step where its block is, rather than
        moving tens of MB to a worker that looked less busy."""
        return self.nbytes + object.__sizeof__(self)

    def at(self, coefficients: np.ndarray) -> StatsBlock:
        """The block of the combined cross-products ``G_i(c)``, ``H_i(c)`` (one batch,
        no variance components)."""
        b = self.n_groups
        if b == 0:
            return StatsBlock(self.labels, np.zeros(0), [])
        c = np.asarray(coefficients, dtype=float)
        return self.combined(np.tensordot(c, self.g, axes=1), np.tensordot(c, self.h, axes=1))

    def combined(self, g: np.ndarray, h: np.ndarray) -> StatsBlock:
        """The grouped block of given combined cross-products ``g`` (b, q, q), ``h``."""
        batch = GroupBatch(np.arange(self.n_groups), g, h, g.shape[1],
                           np.zeros(0, dtype=np.int64),
                           np.full((self.n_groups, 0), -1, dtype=np.int64))
        return StatsBlock(self.labels, self.n, [batch])

    def select_xy(self, keep: np.ndarray) -> ComponentBlock:
        """The block with only the ``keep`` columns of ``[X y]``."""
        keep = np.asarray(keep, dtype=bool)
        return ComponentBlock(self.labels, self.n, self.g, np.ascontiguousarray(self.h[..., keep]))


def component_block(labels: np.ndarray, pieces: list) -> tuple[ComponentBlock, np.ndarray]:
    """A :class:`ComponentBlock` of the groups ``labels`` (sorted, distinct) from each
    component's list of pieces ``(labels_k, zz_k, zr_k, n_k)`` (each piece's labels sorted,
    distinct, among ``labels``; pieces of one component may share groups: they add), and
    the counts of every component's groups (K, b). A piece whose groups are a run of
    ``labels`` (a chunk of data written group by group) is added as a slice: each
    component's sums are written once, where the block keeps them, not concatenated
    first. The block's ``n`` is left to the caller."""
    b = labels.shape[0]
    first = next(p for comp in pieces for p in comp)
    q, r = first[2].shape[1], first[2].shape[2]
    g = np.zeros((len(pieces), b, q, q))
    h = np.zeros((len(pieces), b, q, r))
    counts = np.zeros((len(pieces), b))
    for k, comp in enumerate(pieces):  # a handful of components, a piece per chunk
        for piece_labels, zz, zr, n in comp:
            m = piece_labels.shape[0]
            if not m:
                continue
            lo = int(np.searchsorted(labels, piece_labels[0]))
            if lo + m <= b and labels[lo + m - 1] == piece_labels[-1]:  # a run of labels
                where = slice(lo, lo + m)
            else:
                where = np.searchsorted(labels, piece_labels)
            g[k, where] += zz
            h[k, where] += zr
            counts[k, where] += n
    return ComponentBlock(labels, np.zeros(b), g, h), counts


@dataclass(eq=False)
class ResidualNewtonPieces(_Additive):
    """A block's :class:`ResidualPieces` and the second-derivative sums of a step.

    Attributes
    ----------
    value : ResidualPieces
    trace2 : ndarray (m, m)
        ``-∂² Σ log|C_i|`` along the directions (the covariance's ``E_j``, then the
        residual parameters' ``G_a = Σ_k dirs[a, k] G_k``; :func:`numpy_sweep`).
    d2 : ndarray (m, m, r, r)
        ``d2[j, l] + d2[l, j] = ∂² S`` along directions j and l (``S = K - hmh``, the
        ``K`` part linear, so none of it here), ``d2[l, j] = d2[j, l]'``.
    """

    value: ResidualPieces
    trace2: np.ndarray
    d2: np.ndarray


def _out(n_dir: int, q: int, r: int, m: int) -> tuple:
    return (np.zeros(1), np.zeros((r, r)), np.zeros((q, q)), np.zeros((q, q, r, r)),
            np.zeros(n_dir), np.zeros((n_dir, r, r)), np.zeros((m, m)),
            np.zeros((m, m, r, r)))


def sweep(block: ComponentBlock, lam: np.ndarray, coef: np.ndarray, e: np.ndarray,
          n_hess: int = 0) -> tuple:
    """``(logdet, hmh, Σ P, Σ outer(R[a], R[b]), p_dir, t_dir, trace2, d2)`` of a block
    (:func:`numpy_sweep` states them) at the coefficients ``coef[0]`` along the
    directions ``coef[1:]`` (each a vector over the components), the Hessian sums along
    ``e`` and the first ``n_hess`` directions where ``n_hess``: the combined
    cross-products of each slice of :data:`SWEEP_GROUPS` groups by one BLAS product,
    then the compiled sweep over them
    (:func:`dlmm.kernels.residual_loops.residual_sweep_loop`) from
    :data:`COMPILED_MIN_GROUPS` groups, else batched NumPy."""
    n_comp, b, q, _ = block.g.shape
    if b < COMPILED_MIN_GROUPS:
        return numpy_sweep(block, lam, coef, e, n_hess)
    from .residual_loops import residual_sweep_loop, sizes

    r = block.h.shape[3]
    coef = np.asarray(coef, dtype=float)
    n_coef = coef.shape[0]
    out = _out(n_coef - 1, q, r, e.shape[0] + n_hess if n_hess else 0)
    lam = np.ascontiguousarray(lam, dtype=float)
    e = np.ascontiguousarray(e, dtype=float)
    step = min(b, SWEEP_GROUPS)
    gd = np.empty((n_coef, step * q * q))
    hd = np.empty((n_coef, step * q * r))
    for lo in range(0, b, step):  # slices of groups: their combinations stay in cache
        m = min(step, b - lo)
        if m < step:  # the last slice: arrays of its own size (C order, as the others)
            gd, hd = np.empty((n_coef, m * q * q)), np.empty((n_coef, m * q * r))
        np.matmul(coef, block.g[:, lo: lo + m].reshape(n_comp, -1), out=gd)
        np.matmul(coef, block.h[:, lo: lo + m].reshape(n_comp, -1), out=hd)
        residual_sweep_loop(gd.reshape(n_coef, m, q, q), hd.reshape(n_coef, m, q, r), lam, e,
                            int(n_hess), bool(n_hess), *out, *sizes(q, r, q * r, q * q))
    return (float(out[0][0]), *out[1:])


def numpy_sweep(block: ComponentBlock, lam: np.ndarray, coef: np.ndarray, e: np.ndarray,
                n_hess: int = 0) -> tuple:
    """:func:`sweep` batched in NumPy (blocks of few groups, and the reference of the
    compiled loop). With ``G = Σ_k coef[0, k] G_k``, ``H`` alike, ``M = Λ C⁻¹ Λ'``,
    ``N = M H``, ``P = G - G M G``, ``R = H - G N`` and ``F = I - M G`` of each group, the
    sums over the groups of ``log|C|``, ``H'N``, ``P``, ``outer(R[a], R[b])`` and along
    each direction ``G_d = Σ_k coef[1 + d, k] G_k`` (``H_d`` alike, ``U_d = H_d - G_d N``)
    ``tr(M G_d)`` and ``H_d'N + N'H_d - N'G_d N`` (the derivatives of ``log|C|`` and of
    ``hmh``); with ``n_hess``, along the directions ``E_j`` (``e``) and the first
    ``n_hess`` ``G_a``: ``trace2`` = ``tr(E_j P E_l P)``, ``-tr(E_j F'G_a F)`` and
    ``tr(M G_a M G_b)`` (``-∂²`` of ``log|C|``) and ``d2`` = ``R'E_j P E_l R``,
    ``-R'E_j F'U_a`` and ``-U_a'M U_b`` (halves of ``∂²S``: ``hmh`` is quadratic in
    ``H``, so ``∂²hmh/∂a∂b = U_a'M U_b + U_b'M U_a``)."""
    n_comp, b, q, _ = block.g.shape
    r = block.h.shape[3]
    coef = np.asarray(coef, dtype=float)
    m_cov, n_dir = e.shape[0], coef.shape[0] - 1
    mm = m_cov + n_hess if n_hess else 0
    if b == 0:
        return (0.0, *_out(n_dir, q, r, mm)[1:])
    gd = np.tensordot(coef, block.g, axes=1)
    hd = np.tensordot(coef, block.h, axes=1)
    g, h = gd[0], hd[0]
    cm = lam.T @ g @ lam
    cm[:, np.arange(q), np.arange(q)] += 1.0
    t = np.linalg.cholesky(cm)
    x = np.linalg.solve(t, np.broadcast_to(lam.T, (b, q, q)))  # T⁻¹ Λ'
    xt = np.swapaxes(x, 1, 2)
    u, qm = x @ h, x @ g
    m, nm = xt @ x, xt @ u
    p = g - np.swapaxes(qm, 1, 2) @ qm
    rr = h - np.swapaxes(qm, 1, 2) @ u
    logdet = 2.0 * float(np.log(np.diagonal(t, axis1=1, axis2=2)).sum())
    hmh = np.einsum("bze,bzf->ef", u, u)
    t_sum = np.einsum("bae,bcf->acef", rr, rr)
    p_dir = np.einsum("bxy,kbyx->k", m, gd[1:])
    hn = np.einsum("kbxe,bxf->kef", hd[1:], nm)
    t_dir = hn + np.swapaxes(hn, 1, 2) - np.einsum("bxe,kbxy,byf->kef", nm, gd[1:], nm)
    trace2, d2 = np.zeros((mm, mm)), np.zeros((mm, mm, r, r))
    if n_hess:
        ga = gd[1: 1 + n_hess]  # (n_hess, b, q, q)
        ua = hd[1: 1 + n_hess] - ga @ nm
        ft = np.eye(q) - g @ m  # F'
        qa = ft @ ga @ np.swapaxes(ft, 1, 2)
        va = ft @ ua
        mga, mua = m @ ga, m @ ua
        er = np.einsum("jxy,byf->bjxf", e, rr)  # E_j R
        ep = np.einsum("jxy,byz->bjxz", e, p)  # E_j P
        cov, res = slice(0, m_cov), slice(m_cov, mm)
        trace2[cov, cov] = np.einsum("bjxy,bkyx->jk", ep, ep)
        d2[cov, cov] = np.einsum("bjxe,bxy,bkyf->jkef", er, p, er)
        cross = -np.einsum("jxy,abyx->ja", e, qa)
        trace2[cov, res], trace2[res, cov] = cross, cross.T
        d2[cov, res] = -np.einsum("bjxe,abxf->jaef", er, va)
        d2[res, cov] = np.swapaxes(np.swapaxes(d2[cov, res], 0, 1), 2, 3)
        trace2[res, res] = np.einsum("abxy,cbyx->ac", mga, mga)
        d2[res, res] = -np.einsum("abxe,cbxf->acef", ua, mua)
    return logdet, hmh, p.sum(axis=0), t_sum, p_dir, t_dir, trace2, d2


def warm_sweep(q: int, r: int) -> None:
    """Run the compiled loops a residual fit's steps and effects take once on one group
    of ``q`` random-effect and ``r`` ``[X y]`` columns: the sweep
    (:func:`dlmm.kernels.residual_loops.residual_sweep_loop`, with its Hessian sums) and
    the grouped engine's conditional modes and their transform (the effects of a block
    at the fitted coefficients), the specializations every block takes, loaded from
    numba's cache before they are needed (the numbers are thrown away; the grouped
    engine's own step loop is not loaded: these blocks step by the sweep)."""
    from .effects_loop import transform_loop
    from .likelihood import compiled_conditional_modes
    from .residual_loops import residual_sweep_loop, sizes

    gd = np.broadcast_to(np.eye(q), (2, 1, q, q)).copy()
    hd = np.ones((2, 1, q, r))
    e = np.broadcast_to(np.eye(q), (1, q, q)).copy()
    residual_sweep_loop(gd, hd, np.eye(q), e, 1, True, *_out(1, q, r, 2),
                        *sizes(q, r, q * r, q * q))
    block = ComponentBlock(np.arange(1), np.ones(1), gd[:1], hd[:1]).at(np.ones(1))
    coef = np.zeros(r)
    coef[-1] = 1.0
    _, cov = compiled_conditional_modes(block.batches[0], np.eye(q), np.zeros(0), coef)
    transform_loop(np.ascontiguousarray(cov), q, np.eye(q), 1.0, np.empty_like(cov))


_WARMED: set = set()


def warm_steps(q: int, r: int) -> None:
    """:func:`warm_sweep` in a thread, once per process and shape."""
    with _LOCK:
        if (q, r) in _WARMED:
            return
        _WARMED.add((q, r))
    threading.Thread(target=_quietly, args=(q, r), name="dlmm-warm-sweep", daemon=True).start()


def _quietly(q: int, r: int) -> None:
    try:
        warm_sweep(q, r)
    except Exception:  # noqa: BLE001 - a warm-up only: the step itself will say
        pass


def _value(block: ComponentBlock, sums: tuple) -> ResidualPieces:
    logdet, hmh, p_sum, t_sum, p_dir, t_dir = sums[:6]
    r = hmh.shape[0]
    return ResidualPieces(logdet, hmh, p_sum, np.zeros(0), t_sum, np.zeros((0, r, r)),
                          float(block.n_groups), p_dir, t_dir)


def component_pieces(block: ComponentBlock, chol_re: np.ndarray, sd_vc: np.ndarray,
                     coefficients: np.ndarray, dirs: np.ndarray) -> ResidualPieces | int:
    """The block's likelihood pieces at the coefficients (those of
    :func:`~dlmm.kernels.block.block_pieces` of the combined block, no variance
    components) with the derivatives along the directions ``dirs`` (d, K) over the
    components (the module docstring's sums), by one sweep (:func:`sweep`); 0 for a
    block without groups."""
    if block.n_groups == 0:
        return 0
    q = block.g.shape[2]
    coef = np.vstack([np.asarray(coefficients, dtype=float)[None], dirs])
    return _value(block, sweep(block, np.asarray(chol_re, dtype=float), coef,
                               np.zeros((0, q, q))))


def component_newton_pieces(block: ComponentBlock, chol_re: np.ndarray, sd_vc: np.ndarray,
                            coefficients: np.ndarray, dirs: np.ndarray, e: np.ndarray,
                            n_hess: int) -> ResidualNewtonPieces | int:
    """:func:`component_pieces` and the second-derivative sums along the covariance's
    directions ``e`` (``E_j``, (m, q, q)) and the first ``n_hess`` of ``dirs``, in the
    same sweep; 0 for a block without groups."""
    if block.n_groups == 0:
        return 0
    coef = np.vstack([np.asarray(coefficients, dtype=float)[None], dirs])
    sums = sweep(block, np.asarray(chol_re, dtype=float), coef, e, n_hess)
    return ResidualNewtonPieces(_value(block, sums), sums[6], sums[7])


def component_effects(block: ComponentBlock, chol_re: np.ndarray, sd_vc: np.ndarray,
                      coef: np.ndarray, scale: float, coefficients: np.ndarray):
    """:func:`~dlmm.kernels.block.block_effects` of the block at the coefficients."""
    return block_effects(block.at(coefficients), chol_re, sd_vc, coef, scale)


def component_moments(block: ComponentBlock, coef: np.ndarray, coefficients: np.ndarray):
    """:func:`~dlmm.kernels.moments.block_moment_pieces` of the block at the coefficients."""
    return block_moment_pieces(block.at(coefficients), coef)


def component_select(block: ComponentBlock, keep: np.ndarray) -> ComponentBlock:
    """:meth:`ComponentBlock.select_xy` as a function (to map over blocks)."""
    return block.select_xy(keep)
