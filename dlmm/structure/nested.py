"""The nested engine: rows to persisted blocks of whole outer groups' node sums.

For factors that nest in one another (``lea``, ``lea:school``, …) each chunk of rows
becomes its per-leaf sums, keyed by the leaf's level codes
(:func:`chunk_sums`, :func:`dlmm.kernels.nested.sums.leaf_sums`). As in the grouped
engine (:mod:`.grouped`), when no outer group spans two chunks every run of chunks
becomes a block where it is; otherwise the keyed sums, not the rows, are shuffled by a
stable hash of the outer group's code, so that each block holds whole outer groups. A
block adds its parts by key in chunk order and keeps the per-node cross-products
(:class:`~dlmm.kernels.nested.stats.NestedStats`) and their ancestor maps
(:func:`~dlmm.kernels.nested.tree.nested_tree`) on its worker for the whole fit;
every step maps the nested kernel over the blocks and adds the pieces
(:meth:`NestedStatistics.pieces`).

Nesting is read from the data: the blocks count, per level, the nodes and the distinct
codes, and where a factor is written as a column of its own (``school`` in
``(1 | lea) + (1 | school)``) a code seen under two parents (a school in two
authorities) makes the pass refuse the design (:class:`NotNestedError`): its factors
are crossed.

The model enters through two small objects, so that the engine does not depend on how
the model is written:

* a *design* (:class:`NestedDesign`) turns a chunk's rows into level codes, the
  random-effect columns of each level and ``[X y]``;
* two callables turn the model's parameter ``theta`` into ``Lambda_l`` per level
  (``to_lambdas``) and into the derivative directions ``(l, d Lambda_l / d theta_j)``
  (``dlambdas``), as :func:`dlmm.kernels.nested.nested_pieces` reads them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np
import pandas as pd

from ..distributed.base import Backend, ordered_sum
from ..distributed.local import DriverBackend
from ..exceptions import InputError
from ..kernels.crossprod import row_crossproduct
from ..kernels.hessian import NewtonPieces
from ..kernels.moments import MomentPieces
from ..kernels.nested.effects import nested_effects
from ..kernels.nested.pieces import nested_pieces
from ..kernels.nested.stats import NestedStats
from ..kernels.nested.sums import (
    LevelCodes,
    NestedSums,
    build_stats,
    combine,
    leaf_sums,
    level_codes,
    nesting_violations,
)
from ..kernels.nested.tree import NestedTree, nested_tree
from ..kernels.pieces import RowTotals
from ..spec.residual import residual_logdet
from .base import ON_DRIVER_MAX_BYTES, RandomEffectsStatistics
from .grouped import balanced_runs, plan_blocks
from .threads import one_blas_thread


class NestedDesign(Protocol):
    """How a chunk's rows become what the nested one pass sums (all three methods
    return the same rows, in the same order: rows the model drops are dropped by each).

    Attributes
    ----------
    factor_names : sequence of str, optional
        The factors' names, outermost first (for messages); default ``level 0``, ….
    own_codes : sequence of bool, optional
        Per level, whether the level's code alone names a level of its factor (a factor
        written as a column of its own, ``school`` in ``(1 | lea) + (1 | school)``):
        then the data must show that each code lies in one parent, else the factors
        are crossed and the pass refuses them. False for a factor written as an
        interaction with its parent's (``lea:school``, ``lea/school``): its nodes are
        the code tuples by construction, and its codes may repeat under different
        parents. Default: True for every level (checked).

    A design may also have ``dropped(frame) -> (n_dropped, missing_by_column,
    infinite_by_column)``: the row totals' counts of the rows it dropped (zeros
    without it).
    """

    def level_codes(self, frame: pd.DataFrame) -> list[np.ndarray]:
        """Per level, outermost first, the int64 code (>= 0, global for the fit) of each
        row's level of that factor; a node at level ``l`` is the tuple of codes
        ``0 .. l`` of its rows (see :mod:`dlmm.kernels.nested.sums`)."""

    def level_designs(self, frame: pd.DataFrame) -> list[np.ndarray]:
        """Per level, the (n, q_l) random-effect columns of the terms on that factor, in
        the coordinates the fit uses (centred if the model centres)."""

    def xy(self, frame: pd.DataFrame) -> np.ndarray:
        """``[X y]`` (n, r), in the coordinates the fit uses."""


class RowsOnceDesign:
    """A :class:`NestedDesign` that makes a chunk's codes, columns, ``[X y]`` and dropped
    counts in one go (:meth:`rows`) and hands them out to the pass's three calls for the
    same chunk; shipped to the workers without a chunk's arrays."""

    _last: tuple | None = None

    def rows(self, frame: pd.DataFrame) -> tuple:
        """``(level codes, level designs, [X y], (n_dropped, missing, infinite))``."""
        raise NotImplementedError

    def _design(self, frame: pd.DataFrame) -> tuple:
        last = self._last
        if last is not None and last[0] is frame:
            return last[1]
        out = self.rows(frame)
        self._last = (frame, out)
        return out

    def level_codes(self, frame: pd.DataFrame) -> list[np.ndarray]:
        return self._design(frame)[0]

    def level_designs(self, frame: pd.DataFrame) -> list[np.ndarray]:
        return self._design(frame)[1]

    def xy(self, frame: pd.DataFrame) -> np.ndarray:
        return self._design(frame)[2]

    def dropped(self, frame: pd.DataFrame):
        return self._design(frame)[3]

    def __getstate__(self):
        return {**self.__dict__, "_last": None}


class NotNestedError(InputError):
    """A factor of a design read as nested has a level under two parents: the factors
    are crossed (the caller may choose another engine)."""


@dataclass(eq=False)
class NestedChunk:
    """What the one pass keeps of a chunk: its per-leaf sums and row totals."""

    sums: NestedSums
    totals: RowTotals


def _dropped(design, frame: pd.DataFrame) -> tuple:
    """``(n_dropped, missing, infinite, log_weights, bad_weights)``; a design's
    ``dropped`` may leave out the last two (rows without precision weights)."""
    dropped = getattr(design, "dropped", None)
    if dropped is None:
        return 0.0, np.zeros(0), np.zeros(0), 0.0, 0.0
    n_dropped, missing, infinite, *weights = dropped(frame)
    log_w, bad_w = weights if weights else (0.0, 0.0)
    return (float(n_dropped), np.asarray(missing, dtype=float),
            np.asarray(infinite, dtype=float), float(log_w), float(bad_w))


def chunk_sums(frame: pd.DataFrame, design: NestedDesign) -> NestedChunk:
    """A chunk's per-leaf sums and row totals (``K = [X y]'[X y]``, rows, ``Z'Z`` of all
    levels' columns side by side). A design may also have
    ``dropped(frame) -> (n_dropped, missing_by_column, infinite_by_column)`` for the
    totals' counts of rows it dropped (zeros when it has none)."""
    codes = design.level_codes(frame)
    z = [np.asarray(zl, dtype=float) for zl in design.level_designs(frame)]
    xy = np.asarray(design.xy(frame), dtype=float)
    sums = leaf_sums(codes, z, xy)
    z_all = np.hstack(z) if z else np.zeros((xy.shape[0], 0))
    n_dropped, missing, infinite, log_w, bad_w = _dropped(design, frame)
    totals = RowTotals(
        xy_cross=row_crossproduct(xy),
        n_rows=float(xy.shape[0]),
        n_dropped=n_dropped,
        missing_by_column=missing,
        infinite_by_column=infinite,
        z_cross=z_all.T @ z_all,
        log_weights=log_w,
        bad_weights=bad_w,
    )
    return NestedChunk(sums, totals)


def _chunk_summary(chunk: NestedChunk):
    """The chunk's row totals, its shape and (leaves, first and last outer code)."""
    s = chunk.sums
    info = (0, None, None) if not s.n_leaves else \
        (s.n_leaves, int(s.leaves[0, 0]), int(s.leaves[-1, 0]))
    return chunk.totals, (s.q, s.r), info


def split_by_outer(chunk: NestedChunk | NestedSums, n_out: int) -> list[NestedSums]:
    """Cut per-leaf sums into ``n_out`` parts by a stable hash of the outer group's
    code: the leaves of one outer group always land in the same part."""
    sums = chunk.sums if isinstance(chunk, NestedChunk) else chunk
    bucket = pd.util.hash_array(sums.leaves[:, 0].copy()) % np.uint64(n_out)
    return [sums.select(bucket == np.uint64(j)) for j in range(n_out)]


@dataclass(eq=False)
class NestedBlock:
    """Whole outer groups, as a worker keeps them.

    Attributes
    ----------
    stats : NestedStats
        The per-node cross-products (``keys[l]``: each node's codes, ``(n_l, l + 1)``).
    tree : NestedTree
        The block's ancestor maps (:func:`~dlmm.kernels.nested.tree.nested_tree`), made
        once: they do not depend on the parameters.
    """

    stats: NestedStats
    tree: NestedTree

    @property
    def nbytes(self) -> int:
        s = self.stats
        arrays = [*s.parent, *s.zz, *s.zxy, *s.n_rows, *(a for row in s.za for a in row),
                  *(k for k in s.keys if isinstance(k, np.ndarray)),
                  *self.tree.ancestors.values()]
        return int(sum(a.nbytes for a in arrays))


def build_nested_block(parts: Sequence[NestedChunk | NestedSums]) -> NestedBlock:
    """The block of the outer groups in ``parts`` (added by key in list order)."""
    sums = [p.sums if isinstance(p, NestedChunk) else p for p in parts]
    stats = build_stats(combine(sums))
    return NestedBlock(stats, nested_tree(stats))


def _block_summary(block: NestedBlock):
    """(outer groups, rows of the smallest and largest, nodes and codes per level, bytes)."""
    s = block.stats
    n0 = s.n_nodes[0] if s.n_levels else 0
    rows = s.n_rows[0]
    leaves = s.keys[-1] if s.keys else np.zeros((0, s.n_levels), dtype=np.int64)
    return (n0, float(rows.min()) if n0 else np.inf, float(rows.max()) if n0 else -np.inf,
            level_codes(leaves), block.nbytes)


def block_pieces(block: NestedBlock, lambdas: list, dlambdas: list | None):
    """The nested kernel's pieces of one block (``0``, the identity of ``+``, for a
    block without outer groups)."""
    if not block.stats.n_nodes[0]:
        return 0
    with one_blas_thread():  # per-node blocks: a busy machine's BLAS pools only spin
        return nested_pieces(block.stats, lambdas, dlambdas, block.tree)


@dataclass(eq=False)
class NestedEffects:
    """Conditional modes and covariances of the nodes of a block (data scale).

    Attributes
    ----------
    keys : list of ndarray
        Per level, each node's codes ``(n_l, l + 1)``.
    modes : list of ndarray
        Per level, ``E[b | y]`` (n_l, q_l).
    cov : list of ndarray
        Per level, the conditional covariance of each node's effects ``(n_l, q_l, q_l)``
        (within the node; not between levels).
    """

    keys: list
    modes: list
    cov: list


def block_effects(block: NestedBlock, lambdas: list, coef: np.ndarray,
                  scale: float) -> NestedEffects:
    """Conditional modes and covariances of every node of a block (``coef = [-beta; 1]``)."""
    s = block.stats
    if not s.n_nodes[0]:
        return NestedEffects(list(s.keys), [np.zeros((0, ql)) for ql in s.q],
                             [np.zeros((0, ql, ql)) for ql in s.q])
    with one_blas_thread():
        out = nested_effects(s, lambdas, np.asarray(coef, dtype=float), block.tree)
    return NestedEffects(list(s.keys), [m for m, _ in out], [c * scale for _, c in out])


def select_block_xy(block: NestedBlock, keep: np.ndarray) -> NestedBlock:
    """The block with only the ``keep`` columns of ``[X y]`` in its ``zxy``."""
    s = block.stats
    keep = np.asarray(keep, dtype=bool)
    stats = replace(s, zxy=[np.ascontiguousarray(a[:, :, keep]) for a in s.zxy])
    return NestedBlock(stats, block.tree)  # the same nodes


@dataclass(eq=False)
class NestedStatistics(RandomEffectsStatistics):
    """Persisted blocks of whole outer groups, plus the row totals, for one model.

    The parameter of :meth:`pieces` and :meth:`effects` is the model's ``theta``
    (lme4's: per term the lower-triangular factor's entries), turned into the kernels'
    ``Lambda_l`` by ``to_lambdas`` and into derivative directions by ``dlambdas``; the
    pieces' derivatives are along ``theta`` (sqrt directions).

    Attributes
    ----------
    backend : Backend
    blocks : list
        Backend handles of :class:`NestedBlock` objects.
    totals : RowTotals
    q : tuple of int
        Random-effect columns per level.
    n_nodes : tuple of int
        Nodes per level (``n_nodes[0]`` is ``n_groups``, the outer groups).
    to_lambdas : callable
        ``to_lambdas(theta) -> [Lambda_l (q_l, q_l)]``.
    dlambdas : callable
        ``dlambdas(theta) -> [(l, d Lambda_l / d theta_j)]``, one per ``theta_j``.
    n_groups : int
        Outer groups.
    group_size_min, group_size_max : float
        Rows of the smallest and largest outer group.
    seconds : float
    shuffled : bool
        Whether outer groups spanned chunks, so that keyed sums moved.
    block_bytes : int
    """

    backend: Backend
    blocks: list[Any]
    totals: RowTotals
    q: tuple[int, ...]
    n_nodes: tuple[int, ...]
    to_lambdas: Callable[[np.ndarray], list]
    dlambdas: Callable[[np.ndarray], list]
    n_groups: int
    group_size_min: float
    group_size_max: float
    seconds: float
    shuffled: bool
    block_bytes: int = 0
    evaluations: int = 0
    _last: tuple | None = field(default=None, repr=False)

    engine_name = "nested"

    @property
    def backend_name(self) -> str:
        return self.backend.name

    @property
    def has_newton_pieces(self) -> bool:
        return False

    @property
    def full_effect_covariances(self) -> bool:
        """Each node's covariance only (not between a node and its ancestors)."""
        return False

    def vc_effect_counts(self) -> np.ndarray:
        """Random-effect nodes per level (the levels of each factor in the data)."""
        return np.asarray(self.n_nodes, dtype=np.int64)

    def on_driver(self, max_bytes: int = ON_DRIVER_MAX_BYTES) -> NestedStatistics:
        if self.backend.name in ("local", "driver") or self.block_bytes > max_bytes:
            return self
        return replace(self, backend=DriverBackend(self.backend),
                       blocks=self.backend.gather(self.blocks), evaluations=0, _last=None)

    # -- likelihood -------------------------------------------------------------

    def pieces(self, theta: np.ndarray):
        """One map-reduce: the nested kernel's pieces (``logdet``, ``hmh`` and their
        derivatives along each ``theta_j``) summed over every block, in block order
        (the last one is kept)."""
        theta = np.ascontiguousarray(theta, dtype=float).ravel()
        key = theta.tobytes()
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        lambdas = [np.asarray(a, dtype=float) for a in self.to_lambdas(theta)]
        dlambdas = [(int(l), np.asarray(d, dtype=float)) for l, d in self.dlambdas(theta)]
        self.evaluations += 1
        out = residual_logdet(self.backend.map_sum(block_pieces, self.blocks, lambdas,
                                                   dlambdas), self.totals.log_weights)
        self._last = (key, out)
        return out

    def newton_pieces(self, chol_re: np.ndarray, sd_vc: np.ndarray) -> NewtonPieces:
        raise NotImplementedError("the nested engine has no Hessian pieces "
                                  "(has_newton_pieces is False)")

    def moment_pieces(self, coef: np.ndarray) -> MomentPieces:
        raise NotImplementedError("the nested engine has no moment start values "
                                  "(the term model gives lme4's start)")

    def drop_fixed_columns(self, keep_xy: np.ndarray) -> None:
        """Keep only the ``keep_xy`` columns of ``[X y]`` in ``K`` and every node's ``zxy``."""
        keep_xy = np.asarray(keep_xy, dtype=bool)
        self.totals.xy_cross = self.totals.xy_cross[np.ix_(keep_xy, keep_xy)]
        self.blocks = self.backend.map(select_block_xy, self.blocks, keep_xy)
        self._last = None

    # -- random effects ---------------------------------------------------------

    def effects(self, theta: np.ndarray, coef: np.ndarray, scale: float) -> list[Any]:
        """Each block's :class:`NestedEffects`, kept on its worker."""
        lambdas = [np.asarray(a, dtype=float) for a in self.to_lambdas(
            np.asarray(theta, dtype=float).ravel())]
        return self.backend.map(block_effects, self.blocks, lambdas,
                                np.asarray(coef, dtype=float), float(scale))

    def map_effects(self, func, handles: list[Any], *args) -> list[Any]:
        return self.backend.map(func, handles, *args)

    def gather(self, handles: list[Any]) -> list[Any]:
        return self.backend.gather(handles)

    def to_frame(self, handles: list[Any], meta: pd.DataFrame) -> Any:
        return self.backend.to_frame(handles, meta)

    def map_rows(self, func, meta: Any, *shared: Any) -> Any:
        return self.backend.map_frame(func, meta, *shared)


def _disjoint(spans: list[tuple[int, int]]) -> bool:
    spans = sorted(spans)
    return all(a[1] < b[0] for a, b in zip(spans, spans[1:]))


def _factor_names(design, n_levels: int) -> list[str]:
    names = getattr(design, "factor_names", None)
    return list(names) if names is not None else [f"level {l}" for l in range(n_levels)]


def check_nesting(counts: LevelCodes, design, n_levels: int) -> None:
    """Refuse (:class:`NotNestedError`) a design where a level whose codes name its
    factor's levels (``design.own_codes``) has a code under two parents."""
    own = getattr(design, "own_codes", None)
    own = [True] * n_levels if own is None else [bool(x) for x in own]
    extra = nesting_violations(counts)
    names = _factor_names(design, n_levels)
    for l in range(1, n_levels):  # loops over levels only
        if own[l] and extra[l] > 0:
            above = ", ".join(repr(n) for n in names[:l])
            raise NotNestedError(
                f"factor {names[l]!r} does not nest in {names[l - 1]!r}: its "
                f"{int(counts.n_codes[l])} levels appear in {int(counts.n_nodes[l])} distinct "
                f"combinations with {above}, so some lie in more than one level of "
                f"{names[l - 1]!r} (the factors are crossed)")


def nested_pass(design: NestedDesign, backend: Backend,
                to_lambdas: Callable[[np.ndarray], list],
                dlambdas: Callable[[np.ndarray], list], progress=None) -> NestedStatistics:
    """Read the rows once; build and keep the blocks of whole outer groups; add the
    row totals; check the nesting in the data.

    ``progress(done, total)`` is called as chunks of rows are done.
    """
    start = time.perf_counter()
    chunks = backend.map_chunks(lambda frame: chunk_sums(frame, design), progress)
    return statistics_from_chunks(design, backend, chunks, start, to_lambdas, dlambdas)


def statistics_from_chunks(design: NestedDesign, backend: Backend, chunks: list[Any],
                           start: float, to_lambdas: Callable[[np.ndarray], list],
                           dlambdas: Callable[[np.ndarray], list]) -> NestedStatistics:
    """Blocks of whole outer groups from handles of :class:`NestedChunk` (in a fixed
    order), and the row totals; ``start`` is when the pass began."""
    summary = backend.gather(backend.map(_chunk_summary, chunks))  # one round trip
    totals = ordered_sum([t for t, _, _ in summary])
    q, r = summary[0][1]
    infos = [i for _, _, i in summary]
    n_blocks = plan_blocks(sum(i[0] for i in infos), backend.parallelism)
    present = [j for j, i in enumerate(infos) if i[0]]
    shuffled = not _disjoint([(infos[j][1], infos[j][2]) for j in present])
    if not shuffled:
        # Whole outer groups per chunk: chunks in code order, cut into runs of about
        # equal leaf counts, one block per run (one empty block for no rows at all).
        order = sorted(present, key=lambda j: infos[j][1])
        runs = balanced_runs([infos[j][0] for j in order], n_blocks) if order else []
        groups = [[chunks[order[k]] for k in run] for run in runs] or [chunks[:1]]
        blocks = backend.combine(groups, build_nested_block)
    else:
        blocks = backend.regroup(chunks, n_blocks, split_by_outer, build_nested_block)
    backend.release(chunks)
    summaries = backend.gather(backend.map(_block_summary, blocks))
    counts = ordered_sum([s[3] for s in summaries])
    n_levels = len(q)
    try:
        check_nesting(counts, design, n_levels)
    except NotNestedError:
        backend.release(blocks)
        raise
    n_groups = int(sum(s[0] for s in summaries))
    return NestedStatistics(
        backend=backend,
        blocks=blocks,
        totals=totals,
        q=tuple(q),
        n_nodes=tuple(int(x) for x in counts.n_nodes),
        to_lambdas=to_lambdas,
        dlambdas=dlambdas,
        n_groups=n_groups,
        group_size_min=float(min(s[1] for s in summaries)) if n_groups else 0.0,
        group_size_max=float(max(s[2] for s in summaries)) if n_groups else 0.0,
        seconds=time.perf_counter() - start,
        shuffled=shuffled,
        block_bytes=int(sum(s[4] for s in summaries)),
    )
