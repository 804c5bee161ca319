"""A model of random-effects terms whose factors cross, on the crossed engine.

Every grouping factor of the terms (a column, ``subj``; or an interaction,
``school:class``) is one factor of the crossed system, whatever else it is nested in
or crossed with: ``(1 + x | subj) + (1 | item)``, ``(x || subj) + (1 | item)``,
``(1 | a) + (0 + x | a) + (1 | b) + (1 | c)``, ``(1 | item) + (1 | school/class)``
(factors ``item``, ``school`` and ``school:class``). A factor's random effects per
level are its terms' columns side by side (the layout's order, q_k of them), and its
relative factor is the layout's ``Lambda_k`` (:class:`~dlmm.spec.theta_layout.ThetaLayout`):
block diagonal over its terms, lower triangular, linear in θ. The crossed kernels
(:mod:`dlmm.kernels.crossed`) take the whole lower triangle of each ``T_k`` as their
parameter; :class:`ThetaMap` maps θ into it (the fixed zeros between a factor's
terms, a diagonal term's off-diagonal zeros, a scalar term's repeated sd) and their
gradient back by the transpose of the same map.

The one pass: each chunk codes a row's level of a factor by the codes of the
factor's columns (global for the fit, learned once: ``code = sum c_j * radix``) and
reduces its rows to the keyed sums of :func:`~dlmm.kernels.crossed.crossed_sums` on
the levels it holds (``seen``: the product codes present, sorted). The driver takes
the union of the codes seen (the levels present in the data: lme4 drops the unused
ones), moves each chunk's sums to those global positions and adds them in chunk
order (pairs by key), then builds the blocked system once. From then on every
question (likelihood pieces, conditional modes) is driver-only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from ..distributed.base import Backend, ordered_sum
from ..exceptions import InputError
from ..kernels.crossed import (
    CrossedPieces,
    CrossedSums,
    CrossedSystem,
    PairSums,
    build_system,
    conditional_modes,
    conditional_variances,
    crossed_pieces,
    crossed_sums,
    factorize,
    moment_covariances,
    row_entry_count,
    schur_pair_count,
)
from ..kernels.moments import MomentPieces
from ..kernels.pieces import RowTotals
from ..spec.residual import residual_logdet
from ..spec.terms_spec import product_codes, product_values
from .crossed import MAX_DENSE_EFFECTS, MAX_DRIVER_BYTES, driver_bytes
from .driver_memory import driver_limit
from .driver_system import DriverSystemStatistics
from .threads import DenseThreads


class ThetaMap:
    """θ (lme4's, in a layout's order) to the crossed kernels' packed parameter: per
    factor (layout level) the lower triangle of ``T_k = Lambda_k`` in the row-major
    order of ``np.tril_indices``. Both are linear, ``kernel = M θ``, so the gradient
    along θ is ``M' g`` (exact on the boundary too).

    Parameters
    ----------
    layout : ThetaLayout
        The engine's layout (one level per crossed factor).
    """

    def __init__(self, layout):
        self.q = tuple(int(q) for q in layout.q)
        offsets = np.cumsum([0] + [q * (q + 1) // 2 for q in self.q])
        self.n_kernel = int(offsets[-1])
        self.matrix = np.zeros((self.n_kernel, layout.n_theta))
        for j, (level, d) in enumerate(layout.dlambdas()):
            rows, cols = np.tril_indices(self.q[level])
            self.matrix[offsets[level]:offsets[level + 1], j] = d[rows, cols]

    def kernel_theta(self, theta: np.ndarray) -> np.ndarray:
        """The kernels' packed lower triangles at θ."""
        return self.matrix @ np.asarray(theta, dtype=float)

    def pieces(self, pieces: CrossedPieces) -> CrossedPieces:
        """The kernels' pieces with their derivatives taken along θ."""
        if pieces.dlogdet is None:
            return pieces
        return CrossedPieces(pieces.logdet, pieces.hmh, self.matrix.T @ pieces.dlogdet,
                             np.tensordot(self.matrix.T, pieces.dhmh, axes=1))


class CrossedTermsDesign:
    """A chunk's rows as the crossed pass reads them, from a learned
    :class:`~dlmm.spec.terms_spec.TermsSpec` and its (crossed) layout: per factor the
    product code of each row's level and the columns of its terms; ``[X y]``."""

    def __init__(self, spec, layout):
        self.spec = spec
        self.factors = tuple(tuple(f) for f in layout.levels)
        self.factor_names = tuple(":".join(f) for f in self.factors)
        self.q = tuple(int(q) for q in layout.q)
        self._radix = [[(c, len(spec.levels[c])) for c in f] for f in self.factors]
        self._order = [sorted((k for k, lv in enumerate(layout.term_level) if lv == level),
                              key=lambda k: layout.term_columns[k].start)
                       for level in range(len(self.factors))]

    def rows(self, frame: pd.DataFrame) -> tuple:
        """``(codes, designs, [X y], (n_dropped, missing, infinite, log_weights,
        bad_weights))`` of a chunk; rows times √w under precision weights."""
        design = self.spec.design(frame)
        xy, _ = self.spec.centering.apply(design.xy, design.z)
        dropped = (design.n_dropped, design.missing_by_column, design.infinite_by_column,
                   design.log_weights, design.bad_weights)
        n = xy.shape[0]
        if not n:  # an empty chunk (or every row dropped): nothing to code
            return ([np.zeros(0, dtype=np.int64) for _ in self._radix],
                    [np.zeros((0, q)) for q in self.q], xy, dropped)
        codes, columns = self.spec.term_rows(frame, design.kept)
        level_codes = [product_codes(codes, radix, n) for radix in self._radix]
        designs = [np.hstack([columns[k] for k in order]) for order in self._order]
        if design.weights is not None:  # rows times sqrt(w) (dlmm.spec.residual)
            sw = np.sqrt(design.weights)[:, None]
            xy, designs = xy * sw, [d * sw for d in designs]
        return level_codes, designs, xy, dropped

    def labels(self, level: int, keys: np.ndarray, order) -> list[str]:
        """lme4's labels of factor ``level``'s levels from their product codes ``keys``
        (``(n,)`` or ``(n, 1)``): the values of the columns ``order``, joined by ``:``."""
        values = product_values(np.asarray(keys).reshape(-1), self._radix[level],
                                self.spec.levels)
        return [":".join(str(v) for v in row) for row in zip(*(values[c] for c in order))]


@dataclass(eq=False)
class CrossedTermsChunk:
    """What the one pass keeps of a chunk: the levels it holds (sorted product codes,
    per factor), its keyed sums on those levels, and its row totals."""

    seen: list
    sums: CrossedSums
    totals: RowTotals


def chunk_sums(frame: pd.DataFrame, design: CrossedTermsDesign) -> CrossedTermsChunk:
    """A chunk's keyed crossed sums on the levels it holds, and its row totals."""
    codes, z, xy, (n_dropped, missing, infinite, log_w, bad_w) = design.rows(frame)
    seen, local = [], []
    for code in codes:  # loop over the few factors
        uniq, inverse = np.unique(code, return_inverse=True)
        seen.append(uniq)
        local.append(np.ravel(inverse).astype(np.int64))
    sums = crossed_sums(local, z, xy[:, :-1], xy[:, -1], [u.size for u in seen])
    z_all = np.hstack(z) if z else np.zeros((xy.shape[0], 0))
    totals = RowTotals(xy_cross=sums.xy_cross, n_rows=float(xy.shape[0]),
                       n_dropped=float(n_dropped),
                       missing_by_column=np.asarray(missing, dtype=float),
                       infinite_by_column=np.asarray(infinite, dtype=float),
                       z_cross=z_all.T @ z_all, log_weights=float(log_w),
                       bad_weights=float(bad_w))
    return CrossedTermsChunk(seen, sums, totals)


def _add_pairs(parts: list[PairSums], n_levels_k: int, shape: tuple) -> PairSums:
    """Pair blocks added by key (``rows``, ``cols``), values of a key in list order."""
    if not parts:
        return PairSums(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0,) + shape))
    rows = np.concatenate([p.rows for p in parts])
    cols = np.concatenate([p.cols for p in parts])
    values = np.concatenate([p.values for p in parts])
    uniq, inverse = np.unique(rows * n_levels_k + cols, return_inverse=True)
    flat = values.reshape(values.shape[0], -1)
    out = np.empty((uniq.size, flat.shape[1]))
    for e in range(flat.shape[1]):  # loop over the t_j t_k entries of a block
        out[:, e] = np.bincount(np.ravel(inverse), weights=flat[:, e], minlength=uniq.size)
    return PairSums(uniq // n_levels_k, uniq % n_levels_k, out.reshape((uniq.size,) + shape))


def combine_chunks(parts: list[CrossedTermsChunk]) -> tuple[list, CrossedSums]:
    """The levels present in any chunk (per factor, sorted product codes) and the sums
    of all chunks on them, added in chunk order."""
    n_factors = len(parts[0].seen)
    seen = [np.unique(np.concatenate([p.seen[k] for p in parts])) for k in range(n_factors)]
    terms = parts[0].sums.n_terms
    r = parts[0].sums.n_columns
    zz = [np.zeros((s.size, t, t)) for s, t in zip(seen, terms)]
    zxy = [np.zeros((s.size, t, r)) for s, t in zip(seen, terms)]
    pair_parts: list[list[PairSums]] = [[] for _ in combinations(range(n_factors), 2)]
    for p in parts:  # loop over chunks (levels are vectorized)
        at = [np.searchsorted(seen[k], p.seen[k]) for k in range(n_factors)]
        for k in range(n_factors):
            zz[k][at[k]] += p.sums.zz[k]
            zxy[k][at[k]] += p.sums.zxy[k]
        for i, (j, k) in enumerate(combinations(range(n_factors), 2)):
            ps = p.sums.pairs[i]
            pair_parts[i].append(PairSums(at[j][ps.rows], at[k][ps.cols], ps.values))
    pairs = tuple(_add_pairs(pair_parts[i], seen[k].size, (terms[j], terms[k]))
                  for i, (j, k) in enumerate(combinations(range(n_factors), 2)))
    xy_cross = parts[0].sums.xy_cross.copy()
    for p in parts[1:]:
        xy_cross = xy_cross + p.sums.xy_cross
    sums = CrossedSums(tuple(zz), tuple(zxy), pairs, xy_cross,
                       float(sum(p.sums.n_rows for p in parts)))
    return seen, sums


def check_dense(names, n_levels, q) -> None:
    """Refuse a design whose dense part (the factors after the largest one) the driver
    cannot hold (:data:`~dlmm.structure.crossed.MAX_DENSE_EFFECTS`)."""
    sizes = [int(n) * int(t) for n, t in zip(n_levels, q)]
    dense = sum(sizes) - max(sizes)
    if dense > MAX_DENSE_EFFECTS:
        first = int(np.argmax(sizes))
        rest = ", ".join(f"{names[k]!r} ({n_levels[k]} levels x {q[k]} effects)"
                         for k in range(len(sizes)) if k != first)
        raise InputError(f"the crossed engine keeps the factors after the largest one "
                         f"({rest}) as a dense {dense} x {dense} matrix; at most "
                         f"{MAX_DENSE_EFFECTS} random effects there are supported")


@dataclass(eq=False)
class CrossedTermsEffects:
    """Conditional modes and covariances of every level of every factor (the nested
    engine's :class:`~dlmm.structure.nested.NestedEffects` shape: ``keys[l]`` the
    levels' product codes ``(n_l, 1)``, ``modes[l]`` ``(n_l, q_l)``, ``cov[l]``
    ``(n_l, q_l, q_l)``)."""

    keys: list
    modes: list
    cov: list


@dataclass(eq=False)
class CrossedTermsStatistics(DriverSystemStatistics):
    """The blocked system of a crossed model of terms and the row totals, on the driver.

    The parameter of :meth:`pieces` and :meth:`effects` is the engine layout's θ
    (:class:`ThetaMap` turns it into the kernels'); the pieces' derivatives are along θ.

    Attributes
    ----------
    backend : Backend
        Where the rows are (for fitted values, simulations).
    system : CrossedSystem
    totals : RowTotals
    q : tuple of int
        Random effects per level of each factor.
    n_nodes : tuple of int
        Levels of each factor present in the data.
    seen : list of ndarray
        Per factor, its levels' product codes (sorted; the system's level order).
    theta_map : ThetaMap
    seconds : float
    """

    backend: Backend
    system: CrossedSystem
    totals: RowTotals
    q: tuple
    n_nodes: tuple
    seen: list
    theta_map: ThetaMap
    seconds: float
    shuffled: bool = False
    evaluations: int = 0
    _last: list = field(default_factory=list, repr=False)
    _threads: DenseThreads | None = field(default=None, repr=False)

    engine_name = "crossed"

    def vc_effect_counts(self) -> np.ndarray:
        return np.asarray(self.n_nodes, dtype=np.int64)

    def on_driver(self, max_bytes: int = 0) -> CrossedTermsStatistics:
        """Already on the driver."""
        return self

    def pieces(self, theta: np.ndarray) -> CrossedPieces:
        """``log|V|``, ``hmh`` and their derivatives along θ (one blocked factorization
        on the driver; the last few are kept)."""
        theta = np.ascontiguousarray(theta, dtype=float).ravel()
        return self.recent_pieces(theta.tobytes(), lambda: residual_logdet(
            self.theta_map.pieces(crossed_pieces(
                self.system, self.theta_map.kernel_theta(theta), gradient=True)),
            self.totals.log_weights))

    def start_theta(self, layout) -> np.ndarray | None:
        """θ (``layout``'s order: the engine's) from moments of the OLS residuals
        (:func:`~dlmm.kernels.crossed.theta.moment_covariances`), each term reading its
        block of its factor's covariance; None where they are not available."""
        covariances = moment_covariances(self.system)
        if covariances is None:
            return None
        blocks = [covariances[level][cols, cols]
                  for level, cols in zip(layout.term_level, layout.term_columns)]
        theta = layout.theta_from_covariances(blocks, 1.0)
        return theta if np.all(np.isfinite(theta)) else None

    def moment_pieces(self, coef: np.ndarray) -> MomentPieces:
        raise NotImplementedError("the crossed engine has no moment start values "
                                  "(the term model gives lme4's start)")

    def effects(self, theta: np.ndarray, coef: np.ndarray, scale: float) -> list[Any]:
        """One :class:`CrossedTermsEffects`: the conditional mode and covariance of every
        level of every factor (``coef = [-beta; 1]``, in the units the pass summed)."""
        kernel = self.theta_map.kernel_theta(np.asarray(theta, dtype=float).ravel())
        beta = -np.asarray(coef, dtype=float)[:-1]
        with self.threads.chosen():
            factor = factorize(self.system, kernel)
            modes = conditional_modes(self.system, factor, beta)
            cov = conditional_variances(self.system, factor, float(scale))
        keys = [s.reshape(-1, 1) for s in self.seen]
        return [CrossedTermsEffects(keys, [np.asarray(m) for m in modes],
                                    [np.asarray(c) for c in cov])]


def crossed_terms_pass(spec, layout, backend: Backend, progress=None) -> CrossedTermsStatistics:
    """Read the rows once (keyed sums per chunk on the workers, added on the driver in
    chunk order), then build the blocked system of a learned terms model whose factors
    are ``layout.levels``; θ in the layout's order."""
    start = time.perf_counter()
    design = CrossedTermsDesign(spec, layout)
    chunks = backend.map_chunks(lambda frame: chunk_sums(frame, design), progress)
    parts = backend.gather(chunks)  # per level and level pair: small next to the rows
    backend.release(chunks)
    totals = ordered_sum([p.totals for p in parts])
    seen, sums = combine_chunks(parts)
    n_levels = [s.size for s in seen]
    check_dense(design.factor_names, n_levels, sums.n_terms)
    if min(n_levels) and sums.n_rows:
        sizes = [n * t for n, t in zip(n_levels, sums.n_terms)]
        need = driver_bytes(sum(sizes) - max(sizes), schur_pair_count(sums),
                            row_entry_count(sums))
        limit = driver_limit(MAX_DRIVER_BYTES)  # the user's driver_memory, if set
        if need > limit:
            raise InputError(f"the crossed engine would need about {need / 1e9:.1f} GB on "
                             f"the driver, more than its limit of {limit / 1e9:.1f} GB (a "
                             "model of lme4's terms is not factored on the workers)")
    system = build_system(sums) if min(n_levels, default=0) else None
    return CrossedTermsStatistics(
        backend=backend, system=system, totals=totals, q=tuple(layout.q),
        n_nodes=tuple(int(n) for n in n_levels), seen=seen, theta_map=ThetaMap(layout),
        seconds=time.perf_counter() - start)
