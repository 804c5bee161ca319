"""The grouped engine: rows to persisted blocks of per-group cross-products.

Each chunk of rows becomes its groups' cross-products, keyed by group label
(:func:`chunk_crossproducts`). When no group spans two chunks (the usual case
for data written group by group) every chunk becomes a block where it is.
Otherwise the keyed cross-products, not the rows, are shuffled by a stable
hash of the group label so that each block holds whole groups. The blocks stay
on the workers; every later step maps over them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from ..distributed.base import Backend, ordered_sum
from ..distributed.local import DriverBackend
from ..kernels.block import (
    KeyedCrossProducts,
    StatsBlock,
    block_effects,
    block_pieces,
    build_block,
    combine_keyed,
    component_effect_counts,
    labels_in_order,
    select_xy_columns,
)
from ..kernels.crossprod import group_crossproducts, row_crossproduct
from ..kernels.hessian import NewtonPieces, block_newton_pieces
from ..kernels.likelihood import COMPILED_MIN_GROUPS
from ..kernels.moments import MomentPieces, block_moment_pieces
from ..kernels.pieces import LikelihoodPieces, RowTotals
from ..kernels.warm import warm_in_background
from ..spec.residual import residual_logdet
from .base import ON_DRIVER_MAX_BYTES, RandomEffectsStatistics
from .fused import fused_chunk


@dataclass(eq=False)
class ChunkResult:
    """What the one pass keeps of a chunk: keyed cross-products and row totals."""

    keyed: KeyedCrossProducts
    totals: RowTotals


@dataclass(eq=False)
class ChunkRun(ChunkResult):
    """Consecutive chunks read in one task (:func:`merge_chunks`): the first one's keyed
    cross-products, then the others' (``rest``), labels increasing throughout; the
    row totals of all."""

    rest: tuple[KeyedCrossProducts, ...] = ()


def _parts(result: ChunkResult | KeyedCrossProducts) -> list[KeyedCrossProducts]:
    """The keyed cross-products a chunk's result holds, in order."""
    if isinstance(result, ChunkRun):
        return [result.keyed, *result.rest]
    return [result.keyed if isinstance(result, ChunkResult) else result]


def chunk_crossproducts(frame: pd.DataFrame, spec) -> ChunkResult:
    """The chunk's per-group cross-products: straight from its columns where the
    model is made of plain columns (:mod:`.fused`), else from its design
    (:func:`design_crossproducts`); the same numbers up to rounding."""
    fused = fused_chunk(frame, spec)
    if fused is not None:
        return ChunkResult(*fused)
    return design_crossproducts(frame, spec)


def design_crossproducts(frame: pd.DataFrame, spec) -> ChunkResult:
    """Model design of a chunk, centred by the spec's shifts, then its per-group
    cross-products."""
    design = spec.design(frame)
    xy, z = spec.centering.apply(design.xy, design.z)  # see dlmm.spec.centering
    xy, z, w = design.weighted_arrays(xy, z)  # rows times sqrt(w) (dlmm.spec.residual)
    codes, labels = pd.factorize(pd.Series(design.groups), sort=True)
    labels = np.asarray(labels)
    if labels.dtype.kind == "U":
        labels = labels.astype(object)
    cp = group_crossproducts(codes, labels.shape[0], z, xy, w)
    totals = RowTotals(
        xy_cross=row_crossproduct(xy),
        n_rows=float(design.xy.shape[0]),
        n_dropped=float(design.n_dropped),
        missing_by_column=design.missing_by_column,
        infinite_by_column=design.infinite_by_column,
        z_cross=z.T @ z,
        log_weights=design.log_weights,
        bad_weights=float(design.bad_weights),
    )
    return ChunkResult(KeyedCrossProducts(labels, cp), totals)


def _chunk_summary(result: ChunkResult):
    """The chunk's row totals, (groups in it, first label, last label) and (fewest and
    most rows of a group, bytes of a block of its groups without variance components:
    :func:`_derived_block_summaries`)."""
    parts = [p for p in _parts(result) if p.labels.shape[0]]
    if not parts:
        return result.totals, (0, None, None), (np.inf, -np.inf, 0)
    n_min = min(float(p.cp.n.min()) for p in parts)
    n_max = max(float(p.cp.n.max()) for p in parts)
    # StatsBlock.nbytes of these groups: labels, sizes, g, h and the batch's index
    nbytes = sum(p.labels.nbytes + p.cp.n.nbytes + 8 * p.cp.zz.size + 8 * p.cp.zr.size
                 + 8 * p.labels.shape[0] for p in parts)
    return (result.totals, (sum(p.labels.shape[0] for p in parts), parts[0].labels[0],
                            parts[-1].labels[-1]), (n_min, n_max, int(nbytes)))


def _derived_block_summaries(shapes: list[tuple], spans: list[tuple],
                             runs: list[list[int]]) -> list[tuple]:
    """:func:`_block_summary` of blocks without variance components built from whole
    chunks (``runs[b]``: block ``b``'s chunks), from the chunks' summaries: no task
    and no round trip for them."""
    return [(sum(spans[j][0] for j in run), min(shapes[j][0] for j in run),
             max(shapes[j][1] for j in run), np.zeros(0, dtype=np.int64),
             sum(shapes[j][2] for j in run)) for run in runs]


GROUPS_PER_BLOCK = 250_000


def plan_blocks(n_groups: int, parallelism: int) -> int:
    """How many blocks: a multiple of the parallelism (each worker thread gets the
    same number), with at most about ``GROUPS_PER_BLOCK`` groups in each."""
    per_round = max(1, parallelism)
    rounds = max(1, -(-n_groups // (GROUPS_PER_BLOCK * per_round)))
    return per_round * rounds


def balanced_runs(sizes: list[int], n_runs: int) -> list[list[int]]:
    """Split positions ``0 .. len(sizes)-1`` into at most ``n_runs`` contiguous runs
    of about equal total size (no run empty)."""
    total = sum(sizes)
    n_runs = max(1, min(n_runs, len(sizes)))
    runs: list[list[int]] = [[] for _ in range(n_runs)]
    acc = 0
    for i, size in enumerate(sizes):
        slot = min(n_runs - 1, int(n_runs * (acc + size / 2) / max(total, 1)))
        runs[slot].append(i)
        acc += size
    return [r for r in runs if r]


def label_parts(labels: np.ndarray, n_out: int) -> list[np.ndarray]:
    """For each of ``n_out`` parts, which of ``labels`` it gets, by a stable hash of the
    label: equal labels always land in the same part, whatever they come with."""
    bucket = pd.util.hash_array(labels) % np.uint64(n_out)
    return [bucket == np.uint64(j) for j in range(n_out)]


def split_by_hash(result: ChunkResult | KeyedCrossProducts,
                  n_out: int) -> list[KeyedCrossProducts]:
    """Cut keyed cross-products into ``n_out`` parts by a stable hash of the group
    label (:func:`label_parts`)."""
    parts = _parts(result)
    # (a run's parts are in label order: one by concatenation)
    keyed = parts[0] if len(parts) == 1 else combine_keyed(parts, 1) if any(
        p.labels.shape[0] for p in parts) else parts[0]
    return [keyed.select(keep) for keep in label_parts(keyed.labels, n_out)]


def _disjoint(ranges: list) -> bool:
    spans = sorted((r for r in ranges if r[0] is not None), key=lambda r: r[0])
    try:
        return all(a[1] < b[0] for a, b in zip(spans, spans[1:]))
    except TypeError:  # labels that do not order: shuffle to be safe
        return False


def _block_summary(block: StatsBlock, slot_component: np.ndarray):
    counts = component_effect_counts(block, slot_component)
    if block.n_groups == 0:
        return (0, np.inf, -np.inf, counts, block.nbytes)
    return (block.n_groups, float(block.n.min()), float(block.n.max()), counts, block.nbytes)


@dataclass(eq=False)
class GroupedStatistics(RandomEffectsStatistics):
    """Persisted blocks of whole groups, plus the row totals, for one model.

    Attributes
    ----------
    backend : Backend
    blocks : list
        Backend handles of :class:`~dlmm.kernels.block.StatsBlock` objects.
    totals : RowTotals
    n_groups : int
    group_size_min, group_size_max : float
    seconds : float
        Wall time of the pass.
    shuffled : bool
        Whether groups spanned chunks, so that keyed cross-products moved.
    vc_effects : ndarray (k_vc,)
        Random effects of each variance component in the data ((group, column)
        pairs with rows).
    block_bytes : int
        Bytes of the blocks where they are kept.
    """

    backend: Backend
    blocks: list[Any]
    totals: RowTotals
    n_groups: int
    group_size_min: float
    group_size_max: float
    seconds: float
    shuffled: bool
    vc_effects: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    block_bytes: int = 0
    evaluations: int = field(default=0)
    _last_newton: tuple | None = field(default=None, repr=False)

    @property
    def backend_name(self) -> str:
        return self.backend.name

    def vc_effect_counts(self) -> np.ndarray:
        return self.vc_effects

    def on_driver(self, max_bytes: int = ON_DRIVER_MAX_BYTES) -> GroupedStatistics:
        if self.backend.name in ("local", "driver") or self.block_bytes > max_bytes:
            return self
        return replace(self, backend=DriverBackend(self.backend),
                       blocks=self.backend.gather(self.blocks), evaluations=0,
                       _last_newton=None)

    def pieces(self, chol_re: np.ndarray, sd_vc: np.ndarray) -> LikelihoodPieces:
        """One map-reduce: the likelihood pieces summed over every block."""
        cached = self._cached(chol_re, sd_vc)
        if cached is not None:
            return cached.value
        self.evaluations += 1
        return residual_logdet(self.backend.map_sum(block_pieces, self.blocks, chol_re, sd_vc),
                               self.totals.log_weights)

    @staticmethod
    def _key(chol_re: np.ndarray, sd_vc: np.ndarray) -> bytes:
        return np.ascontiguousarray(chol_re, dtype=float).tobytes() + b"|" + \
            np.ascontiguousarray(sd_vc, dtype=float).tobytes()

    def _cached(self, chol_re: np.ndarray, sd_vc: np.ndarray) -> NewtonPieces | None:
        last = self._last_newton
        if last is not None and last[0] == self._key(chol_re, sd_vc):
            return last[1]
        return None

    def newton_pieces(self, chol_re: np.ndarray, sd_vc: np.ndarray) -> NewtonPieces:
        """One map-reduce: value, gradient and Hessian pieces over every block (the
        last one is kept, so the optimum's pieces serve the results too)."""
        cached = self._cached(chol_re, sd_vc)
        if cached is not None:
            return cached
        self.evaluations += 1
        out = residual_logdet(self.backend.map_sum(block_newton_pieces, self.blocks, chol_re,
                                                   sd_vc), self.totals.log_weights)
        self._last_newton = (self._key(chol_re, sd_vc), out)
        return out

    def moment_pieces(self, coef: np.ndarray) -> MomentPieces:
        """One map-reduce: the moment sums of every block."""
        return self.backend.map_sum(block_moment_pieces, self.blocks, coef)

    def drop_fixed_columns(self, keep_xy: np.ndarray) -> None:
        """Keep only the ``keep_xy`` columns of ``[X y]`` in ``K`` and every ``H_i``."""
        keep_xy = np.asarray(keep_xy, dtype=bool)
        self.totals.xy_cross = self.totals.xy_cross[np.ix_(keep_xy, keep_xy)]
        self.blocks = self.backend.map(select_xy_columns, self.blocks, keep_xy)
        self._last_newton = None

    def effects(self, chol_re: np.ndarray, sd_vc: np.ndarray, coef: np.ndarray,
                scale: float) -> list[Any]:
        """Each block's :class:`~dlmm.kernels.block.BlockEffects`, kept on its worker."""
        return self.backend.map(block_effects, self.blocks, chol_re, sd_vc, coef, scale)

    def map_effects(self, func, handles: list[Any], *args) -> list[Any]:
        return self.backend.map(func, handles, *args)

    def gather(self, handles: list[Any]) -> list[Any]:
        return self.backend.gather(handles)

    def to_frame(self, handles: list[Any], meta: pd.DataFrame) -> Any:
        return self.backend.to_frame(handles, meta)

    def map_rows(self, func, meta: Any, *shared: Any) -> Any:
        return self.backend.map_frame(func, meta, *shared)


def one_pass(spec, backend: Backend, progress=None) -> GroupedStatistics:
    """Read the rows once; build and keep the blocks; add the row totals.

    ``progress(done, total)`` is called as chunks of rows are done.
    """
    start = time.perf_counter()
    n_slots = max(spec.slot_component.shape[0], 1)
    chunks, summaries = backend.map_chunks_then(
        lambda frame: pass_chunk(frame, spec), _chunk_summary, progress,
        lambda results: merge_chunks(results, n_slots))
    return statistics_from_chunks(spec, backend, chunks, start, summaries)


def merge_chunks(results: list[ChunkResult], n_slots: int) -> ChunkResult:
    """Consecutive chunks' results as one chunk's (a :class:`ChunkRun`): their row
    totals, in order, and their groups' cross-products as they are where the labels
    increase from one to the next (data written group by group: nothing copied), else
    added by label (:func:`~dlmm.kernels.block.combine_keyed`)."""
    totals = ordered_sum([r.totals for r in results])
    parts = [r.keyed for r in results]
    used = [p for p in parts if p.labels.shape[0]]
    if len(used) <= 1:
        return ChunkResult(used[0] if used else parts[0], totals)
    if labels_in_order(used):
        return ChunkRun(used[0], totals, tuple(used[1:]))
    return ChunkResult(combine_keyed(used, n_slots), totals)


#: Groups in a part of a block from which its worker loads the steps' compiled loops
#: (:mod:`dlmm.kernels.warm`): a block of such a part steps by compiled loops
#: (:data:`dlmm.kernels.likelihood.COMPILED_MIN_GROUPS`); below, the load would be
#: wasted on NumPy steps (the 10,000-group benchmark's pass paid it).
WARM_MIN_GROUPS = COMPILED_MIN_GROUPS


def pass_chunk(frame: pd.DataFrame, spec) -> ChunkResult:
    """:func:`chunk_crossproducts` of a chunk of the one pass."""
    return chunk_crossproducts(frame, spec)


def build_and_warm(parts: list[KeyedCrossProducts], slot_component: np.ndarray) -> StatsBlock:
    """:func:`~dlmm.kernels.block.build_block`; the first block of a process with a large
    part also starts loading the compiled loops of the steps and effects, in a thread,
    so that the first step does not wait for them. Not while the chunks are read: on
    the busy 2-core machine the load (0.11-0.14 s of CPU a worker) was taken from the
    reads, where the builds at the pass's end leave the cores waiting on round trips."""
    block = build_block(parts, slot_component)
    large = [p for p in parts if p.labels.shape[0] >= WARM_MIN_GROUPS]
    if large:
        warm_in_background(large[0], slot_component)
    return block


def disjoint_runs(spans: list[tuple], parallelism: int) -> list[list[int]] | None:
    """Where no group spans two chunks (``spans[j] = (groups, first label, last
    label)`` of chunk ``j``), the chunks of each block: in label order, runs of about
    equal group counts (:func:`plan_blocks`); else None."""
    if not _disjoint([(s[1], s[2]) for s in spans]):
        return None
    n_blocks = plan_blocks(sum(s[0] for s in spans), parallelism)
    order = sorted((j for j, s in enumerate(spans) if s[0]), key=lambda j: spans[j][1])
    return [[order[k] for k in run]
            for run in balanced_runs([spans[j][0] for j in order], n_blocks)]


def whole_group_blocks(backend: Backend, chunks: list[Any], spans: list[tuple], split,
                       build) -> tuple[list[Any], bool]:
    """Blocks of whole groups from chunk handles, and whether keyed sums had to move.

    ``spans[j] = (groups, first label, last label)`` of chunk ``j``. Where no group
    spans two chunks (data written group by group) the chunks, in label order, are
    cut into runs of about equal group counts (:func:`disjoint_runs`) and each run is
    ``build``-t where it is; otherwise every chunk is ``split(handle, n)`` by a hash of
    the label and block ``j`` is ``build`` of every part ``j``
    (:meth:`~dlmm.distributed.base.Backend.regroup`)."""
    runs = disjoint_runs(spans, backend.parallelism)
    if runs is not None:
        return backend.combine([[chunks[j] for j in run] for run in runs], build), False
    n_blocks = plan_blocks(sum(s[0] for s in spans), backend.parallelism)
    return backend.regroup(chunks, n_blocks, split, build), True


def statistics_from_chunks(spec, backend: Backend, chunks: list[Any], start: float,
                           summaries: list[Any] | None = None) -> GroupedStatistics:
    """Blocks of whole groups from handles of :class:`ChunkResult` (in a fixed order:
    the chunks of the one pass, or one per input file for the statistics cache), and
    the row totals; ``start`` is when the pass began (``time.perf_counter``);
    ``summaries``: handles of lists of the chunks' :func:`_chunk_summary`, if already asked
    (:meth:`~dlmm.distributed.base.Backend.map_chunks_then`)."""
    if summaries is None:
        summary = backend.gather(backend.map(_chunk_summary, chunks))  # one round trip
    else:  # lists of summaries of runs of chunks (Backend.map_chunks_then)
        summary = [s for run in backend.gather(summaries) for s in run]
    totals = ordered_sum([s[0] for s in summary])
    slot_component = spec.slot_component

    def build(results):
        return build_and_warm([p for r in results for p in _parts(r)], slot_component)

    spans = [s[1] for s in summary]
    blocks, shuffled = whole_group_blocks(backend, chunks, spans, split_by_hash, build)
    known = None
    if not shuffled and slot_component.size == 0:  # blocks of whole chunks, as they are
        known = _derived_block_summaries([s[2] for s in summary], spans,
                                         disjoint_runs(spans, backend.parallelism))
    out = blocks_statistics(spec, backend, blocks, totals, shuffled, start, known)
    backend.release(chunks)
    return out


def blocks_statistics(spec, backend: Backend, blocks: list[Any], totals: RowTotals,
                      shuffled: bool, start: float,
                      summaries: list[tuple] | None = None) -> GroupedStatistics:
    """The :class:`GroupedStatistics` of built blocks of whole groups (handles of
    :class:`~dlmm.kernels.block.StatsBlock`) and the row totals of their rows;
    ``summaries``: each block's :func:`_block_summary` where known without it (the
    blocks are then waited for, not asked)."""
    if summaries is None:
        summaries = backend.gather(backend.map(_block_summary, blocks, spec.slot_component))
    else:
        backend.wait(blocks)
    n_groups = int(sum(s[0] for s in summaries))
    return GroupedStatistics(
        backend=backend,
        blocks=blocks,
        totals=totals,
        n_groups=n_groups,
        group_size_min=float(min(s[1] for s in summaries)) if n_groups else 0.0,
        group_size_max=float(max(s[2] for s in summaries)) if n_groups else 0.0,
        seconds=time.perf_counter() - start,
        shuffled=shuffled,
        vc_effects=np.sum([s[3] for s in summaries], axis=0, dtype=np.int64)
        if summaries else np.zeros(len(spec.vc_names), dtype=np.int64),
        block_bytes=int(sum(s[4] for s in summaries)),
    )
