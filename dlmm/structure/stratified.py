"""The grouped engine with a residual variance per stratum: rows to blocks kept by stratum.

The one pass splits each chunk's rows by the stratum column and forms each part's
keyed per-group cross-products as the grouped engine does (:mod:`.grouped`: the
fused loop or the design), so no row is read twice. Blocks of whole groups keep
every group's cross-products per stratum (:class:`~dlmm.kernels.strata.StratifiedBlock`)
on the workers, and the row totals per stratum stay on the driver. The statistics
answer the engine interface at given stratum weights ``w`` (:meth:`StratifiedStatistics.at`;
:mod:`dlmm.kernels.strata` has the math); their pieces carry the derivatives along
the weights, so that the fit estimates them with the covariance parameters.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from ..distributed.base import Backend, ordered_sum
from ..exceptions import InputError
from ..kernels.block import combine_keyed
from ..kernels.hessian import NewtonPieces
from ..kernels.moments import MomentPieces
from ..kernels.pieces import RowTotals
from ..kernels.strata import (
    ResidualPieces,
    StratifiedBlock,
    stratified_block,
    stratified_effects,
    stratified_moments,
    stratified_pieces,
    stratified_select,
)
from ..spec.residual import residual_logdet
from .grouped import (
    ChunkResult,
    GroupedStatistics,
    _disjoint,
    balanced_runs,
    chunk_crossproducts,
    plan_blocks,
)


@dataclass(eq=False)
class StratifiedChunk:
    """What the one pass keeps of a chunk: its strata's levels, each one's
    :class:`~.grouped.ChunkResult`, and the rows whose stratum is missing."""

    levels: list
    results: list[ChunkResult]
    n_missing: int = 0


def stratified_chunk(frame: pd.DataFrame, spec) -> StratifiedChunk:
    """Split a chunk's rows by ``spec.residual.strata``; each part's keyed cross-products."""
    column = spec.residual.strata
    codes, levels = pd.factorize(frame[column], sort=True)
    results = [chunk_crossproducts(frame[codes == k], spec) for k in range(len(levels))]
    return StratifiedChunk([_plain(v) for v in levels], results, int((codes < 0).sum()))


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def _summary(chunk: StratifiedChunk):
    labels = [r.keyed.labels for r in chunk.results if r.keyed.labels.shape[0]]
    span = (0, None, None)
    if labels:
        merged = np.concatenate(labels)
        try:
            span = (int(np.unique(merged).shape[0]), merged.min(), merged.max())
        except TypeError:
            span = (int(merged.shape[0]), None, None)
    return chunk.levels, [r.totals for r in chunk.results], chunk.n_missing, span


def _split(chunk: StratifiedChunk, n_out: int) -> list[StratifiedChunk]:
    """Each stratum's keyed cross-products cut by a stable hash of the group label."""
    parts = [StratifiedChunk(chunk.levels, [], 0) for _ in range(n_out)]
    for result in chunk.results:
        keyed = result.keyed
        bucket = pd.util.hash_array(keyed.labels) % np.uint64(n_out)
        for j in range(n_out):
            parts[j].results.append(ChunkResult(keyed.select(bucket == np.uint64(j)),
                                                result.totals))
    return parts


def build_stratified(chunks: list[StratifiedChunk], levels: list) -> StratifiedBlock:
    """The block of whole groups of ``chunks``: each stratum's parts added by key, laid
    out by the union of the groups' labels."""
    where = {v: s for s, v in enumerate(levels)}
    parts: list[list] = [[] for _ in levels]
    for chunk in chunks:
        for level, result in zip(chunk.levels, chunk.results):
            if result.keyed.labels.shape[0]:
                parts[where[level]].append(result.keyed)
    by_stratum = []
    for stratum in parts:
        if not stratum:
            by_stratum.append(None)
            continue
        keyed = combine_keyed(stratum, 1)
        by_stratum.append((keyed.labels, keyed.cp.n, keyed.cp.zz, keyed.cp.zr))
    present = [p[0] for p in by_stratum if p is not None]
    if not present:
        return StratifiedBlock(np.zeros(0), np.zeros((len(levels), 0)),
                               np.zeros((len(levels), 0, 0, 0)), np.zeros((len(levels), 0, 0, 0)))
    labels = np.unique(np.concatenate(present))
    return stratified_block(labels, by_stratum)


def _block_summary(block: StratifiedBlock):
    if block.n_groups == 0:
        return (0, np.inf, -np.inf, block.nbytes)
    n = block.n.sum(axis=0)
    return (block.n_groups, float(n.min()), float(n.max()), block.nbytes)


@dataclass(eq=False)
class StratifiedStatistics(GroupedStatistics):
    """:class:`~.grouped.GroupedStatistics` of blocks kept by stratum, seen at the
    stratum weights ``weights`` (``w_s = 1 / δ_s²``; all 1 as the pass leaves them).

    Attributes
    ----------
    levels : list
        The strata, sorted; the first is the reference (``δ = 1``).
    residual_column : str
        The stratum column.
    totals_by_stratum : list of RowTotals
        The row totals of each stratum's rows (unweighted by ``w``).
    weights : ndarray (S,)
    n_missing : int
        Rows whose stratum is missing (counted as missing values of its column).
    strata_column : int
        Position of the stratum column among the model's columns.
    """

    levels: list = field(default_factory=list)
    residual_column: str = ""
    totals_by_stratum: list = field(default_factory=list)
    weights: np.ndarray = field(default_factory=lambda: np.ones(0))
    n_missing: int = 0
    strata_column: int = -1
    root: Any = field(default=None, repr=False)

    @property
    def has_newton_pieces(self) -> bool:
        return False

    @property
    def full_effect_covariances(self) -> bool:
        return True

    def rows_by_stratum(self) -> np.ndarray:
        """Rows used in each stratum (S,)."""
        return np.array([t.n_rows for t in self.totals_by_stratum])

    def totals_at(self, weights: np.ndarray) -> RowTotals:
        """The row totals at the weights: ``K(w)`` and ``Σ log w`` of every row."""
        w = np.asarray(weights, dtype=float)
        parts = self.totals_by_stratum
        total = ordered_sum(parts)
        n_s = self.rows_by_stratum()
        missing = total.missing_by_column.copy()
        if self.n_missing and self.strata_column >= 0:
            missing[self.strata_column] += self.n_missing
        return replace(
            total,
            xy_cross=sum(ws * t.xy_cross for ws, t in zip(w, parts)),
            z_cross=sum(ws * t.z_cross for ws, t in zip(w, parts)),
            n_dropped=total.n_dropped + self.n_missing,
            missing_by_column=missing,
            log_weights=float(total.log_weights + n_s @ np.log(w)),
        )

    def at(self, weights) -> StratifiedStatistics:
        """The statistics at other stratum weights (the blocks are shared)."""
        w = np.asarray(weights, dtype=float)
        return replace(self, weights=w, totals=self.totals_at(w), _last_newton=None,
                       root=self.root if self.root is not None else self)

    def _count(self) -> None:
        (self.root if self.root is not None else self).evaluations += 1

    def pieces(self, chol_re: np.ndarray, sd_vc: np.ndarray) -> ResidualPieces:
        """The pieces at :attr:`weights`, with ``p_res = ∂log|V|/∂w`` and
        ``t_res = ∂hmh/∂w - K_s`` (:mod:`dlmm.kernels.strata`)."""
        self._count()
        w = self.weights
        raw = self.backend.map_sum(stratified_pieces, self.blocks, chol_re, sd_vc, w)
        k_s = np.stack([t.xy_cross for t in self.totals_by_stratum])
        raw = replace(raw, p_res=raw.p_res - self.rows_by_stratum() / w, t_res=raw.t_res - k_s)
        return residual_logdet(raw, self.totals.log_weights)

    def newton_pieces(self, chol_re: np.ndarray, sd_vc: np.ndarray) -> NewtonPieces:
        raise NotImplementedError("a residual variance per stratum has no Hessian pieces")

    def moment_pieces(self, coef: np.ndarray) -> MomentPieces:
        return self.backend.map_sum(stratified_moments, self.blocks, coef, self.weights)

    def drop_fixed_columns(self, keep_xy: np.ndarray) -> None:
        keep_xy = np.asarray(keep_xy, dtype=bool)
        for t in self.totals_by_stratum:
            t.xy_cross = t.xy_cross[np.ix_(keep_xy, keep_xy)]
        self.totals = self.totals_at(self.weights)
        self.blocks = self.backend.map(stratified_select, self.blocks, keep_xy)

    def vc_effect_counts(self) -> np.ndarray:
        return np.zeros(0, dtype=np.int64)

    def effects(self, chol_re: np.ndarray, sd_vc: np.ndarray, coef: np.ndarray,
                scale: float) -> list[Any]:
        return self.backend.map(stratified_effects, self.blocks, chol_re, sd_vc, coef, scale,
                                self.weights)


def stratified_pass(spec, backend: Backend, progress=None) -> StratifiedStatistics:
    """Read the rows once, split by stratum; build and keep the stratified blocks."""
    start = time.perf_counter()
    if spec.k_vc:
        raise InputError("residual_by is not supported with variance components (vc_formula) "
                         "yet; fit them as random-effect terms of one grouping factor")
    chunks = backend.map_chunks(lambda frame: stratified_chunk(frame, spec), progress)
    summary = backend.gather(backend.map(_summary, chunks))
    levels = sorted({v for s in summary for v in s[0]}, key=_sort_key)
    if not levels:
        raise InputError(f"residual_by column {spec.residual.strata!r} has no value")
    where = {v: s for s, v in enumerate(levels)}
    by_stratum: list[list] = [[] for _ in levels]
    for chunk_levels, totals, _, _ in summary:
        for level, t in zip(chunk_levels, totals):
            by_stratum[where[level]].append(t)
    totals_by_stratum = [ordered_sum(t) for t in by_stratum]
    spans = [s[3] for s in summary]
    n_blocks = plan_blocks(sum(s[0] for s in spans), backend.parallelism)

    def build(parts):
        return build_stratified(parts, levels)

    shuffled = not _disjoint([(s[1], s[2]) for s in spans])
    if not shuffled:
        order = sorted((j for j, s in enumerate(spans) if s[0]), key=lambda j: spans[j][1])
        runs = balanced_runs([spans[j][0] for j in order], n_blocks)
        blocks = backend.combine([[chunks[order[k]] for k in run] for run in runs], build)
    else:
        blocks = backend.regroup(chunks, n_blocks, _split, build)
    block_info = backend.gather(backend.map(_block_summary, blocks))
    backend.release(chunks)
    n_groups = int(sum(b[0] for b in block_info))
    stats = StratifiedStatistics(
        backend=backend, blocks=blocks, totals=totals_by_stratum[0], n_groups=n_groups,
        group_size_min=float(min(b[1] for b in block_info)) if n_groups else 0.0,
        group_size_max=float(max(b[2] for b in block_info)) if n_groups else 0.0,
        seconds=0.0, shuffled=shuffled, block_bytes=int(sum(b[3] for b in block_info)),
        levels=levels, residual_column=spec.residual.strata,
        totals_by_stratum=totals_by_stratum, weights=np.ones(len(levels)),
        n_missing=int(sum(s[2] for s in summary)),
        strata_column=list(spec.columns).index(spec.residual.strata)
        if spec.residual.strata in list(spec.columns) else -1,
    )
    stats.totals = stats.totals_at(stats.weights)
    stats.seconds = time.perf_counter() - start
    return stats


def _sort_key(value):
    return (str(type(value).__name__), value) if not isinstance(value, (int, float)) \
        else ("0", value)
