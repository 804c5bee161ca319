"""The crossed engine beyond the driver's memory: the dense part by tiles on the workers.

When the dense part of a crossed design (the Schur complement ``A`` of the factors
after the largest, order ``Q2``) would need more than the driver's limit
(:mod:`.driver_memory`), the one pass runs as always (keyed sums gathered and added
on the driver: their size is that of the levels and level pairs) but the system is
kept without its dense part (:class:`~dlmm.kernels.crossed.tiles.TiledSystem`),
and each evaluation builds ``A`` tile by tile on the Dask workers from the row
blocks of ``G21`` scattered there once (:func:`~dlmm.kernels.crossed.tiles.schur_tile`),
factors it, solves and (with the gradient) inverts it by tiles
(:mod:`dlmm.structure.tiled_cholesky`) and contracts the inverse's tiles where
they are (:func:`~dlmm.kernels.crossed.tiles.gradient_tile`). The driver receives
per evaluation the solved vectors (``Q2 x r``), one scalar per diagonal tile and one
short vector per tile; it never holds a ``Q2 x Q2`` array. The values and gradients
are those of the driver's path (the same formulas; rounding apart), so the optimizer
and its steps are the same.

Before any work (before the pass reads a row) :func:`plan_tiles` refuses, in one
line with the sizes, what cannot run this way: no cluster (in-process input), or a
dense part the workers' memory limits cannot hold (:func:`cluster_need`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..exceptions import InputError
from ..kernels.block import BlockEffects
from ..kernels.crossed import CrossedPieces, moment_theta
from ..kernels.crossed import tiles as kt
from ..kernels.dense_tiles import tile_edges
from ..objective.params import MixedLMParams
from . import crossed
from . import tiled_cholesky as tc
from .crossed import CrossedStatistics, group_labels, pass_sums
from .driver_memory import driver_limit
from .threads import DenseThreads

#: Rows of a tile of the dense part (a tile is ``8 * TILE_ROWS^2`` bytes: 34 MB).
TILE_ROWS = 2048
#: Fewest rows of a tile (a small dense part is still cut in about four tile rows).
MIN_TILE_ROWS = 32
#: Copies of the dense part the cluster holds at an evaluation's peak: the lower
#: tiles of ``L`` and ``W = L^{-1}``, then of ``W`` and ``A^{-1}`` (each about half the
#: dense part), partial sums and copies of tiles on a second worker (measured: 1.87 with
#: the gradient, 1.06 for a value, four tile rows on two workers; docs/SCALE_PLAN.md).
TILE_COPIES = 2.0
#: Tiles a worker holds beyond its share: a task's inputs and output, and copies in
#: flight between workers.
TILES_IN_FLIGHT = 6


def _gb(n: float) -> str:
    return f"{n / 1e9:.3g} GB"


def tile_rows(q2: int) -> int:
    """Rows per tile for a dense part of order ``q2``: :data:`TILE_ROWS`, or about a
    quarter of a smaller part (at least :data:`MIN_TILE_ROWS`)."""
    return int(min(TILE_ROWS, max(MIN_TILE_ROWS, math.ceil(q2 / 4))))


@dataclass(frozen=True)
class ClusterNeed:
    """What the tiled dense part needs of a cluster (bytes).

    Attributes
    ----------
    dense : float
        The dense part, ``8 Q2^2``.
    total : float
        At an evaluation's peak over the cluster: :data:`TILE_COPIES` dense parts and
        :data:`TILES_IN_FLIGHT` tiles per worker.
    per_worker : float
        ``total`` over the workers.
    available : float
        The workers' memory limits added (``inf`` when a worker has none).
    n_workers : int
    """

    dense: float
    total: float
    per_worker: float
    available: float
    n_workers: int

    @property
    def fits(self) -> bool:
        return self.n_workers > 0 and self.total <= self.available


def cluster_need(q2: int, memory_limits: list[float]) -> ClusterNeed:
    """:class:`ClusterNeed` of a dense part of order ``q2`` on workers with these memory
    limits (0 or None: no limit)."""
    n_workers = len(memory_limits)
    tile = tile_rows(q2)
    dense = 8.0 * q2 * q2
    total = TILE_COPIES * dense + n_workers * TILES_IN_FLIGHT * 8.0 * tile * tile
    limits = [float(m) if m else math.inf for m in memory_limits]
    return ClusterNeed(dense, total, total / max(n_workers, 1), float(sum(limits)), n_workers)


def worker_memory_limits(client) -> list[float]:
    """The memory limit of each worker of ``client``'s cluster (0: none)."""
    workers = client.scheduler_info(n_workers=-1)["workers"]
    return [float(w.get("memory_limit") or 0) for w in workers.values()]


def plan_tiles(q2: int, driver_need: float, limit: float, backend, factors: str = "",
               cap: int | None = None) -> Any:
    """The client to factor a dense part of order ``q2`` on, when the driver would need
    ``driver_need`` bytes, more than its ``limit`` (or, ``cap`` given, when ``q2`` is more
    than the driver's cap on its order); raises :class:`~dlmm.exceptions.InputError`
    with the sizes when no cluster can (before any work). ``factors`` names the dense
    part's factors in the message."""
    sizes = f"{factors} ({q2:,} x {q2:,} random effects: {_gb(8.0 * q2 * q2)})"
    what = (f"the crossed engine would need about {_gb(driver_need)} on the driver for its "
            f"dense part{sizes}, more than its limit of {_gb(limit)} (driver_memory)")
    if cap is not None:
        what = (f"the crossed engine holds at most {cap:,} random effects in the dense part "
                f"on the driver{sizes}")
    if getattr(backend, "name", None) != "dask":
        raise InputError(f"{what}; it can be factored on a Dask cluster's workers instead "
                         "(fit with a client or Dask input; dlmm fit --workers or "
                         "--scheduler), or with a larger driver_memory")
    client = backend.client
    need = cluster_need(q2, worker_memory_limits(client))
    if not need.fits:
        raise InputError(
            f"{what}, and the cluster cannot hold it either: factored by tiles it needs "
            f"about {_gb(need.total)} ({_gb(need.per_worker)} per worker over "
            f"{need.n_workers} workers), more than the {_gb(need.available)} the workers' "
            "memory limits add up to")
    return client


@dataclass(eq=False)
class TiledSchur:
    """The dense part's tiles as the workers keep them for a fit.

    Attributes
    ----------
    runner : ClientRunner or InlineRunner
    edges : ndarray (n + 1,)
        Tile row boundaries.
    blocks : list
        Handles of each tile row's :class:`~dlmm.kernels.crossed.tiles.RowBlock`.
    g22 : dict
        Handles of ``G22``'s off-diagonal nonzeros per tile ``(i, j)``, ``i >= j`` (None
        where a tile has none).
    """

    runner: Any
    edges: np.ndarray
    blocks: list
    g22: dict

    @property
    def n(self) -> int:
        return len(self.edges) - 1

    def split(self, rows: np.ndarray) -> list:
        """A ``Q2 x s`` array of the driver by tile rows."""
        return [np.asfortranarray(rows[self.edges[i]:self.edges[i + 1]]) for i in range(self.n)]

    def factor(self, params_handle) -> dict:
        """Handles of the factor's tiles at the scattered :class:`TileParams`."""
        tiles = {(i, j): self.runner.submit(kt.schur_tile, self.blocks[i], self.blocks[j],
                                            self.g22[i, j], params_handle)
                 for i in range(self.n) for j in range(i + 1)}
        return tc.factor(self.runner, tiles, self.n)


def scatter_tiles(system: kt.TiledSystem, runner, tile: int | None = None) -> TiledSchur:
    """Cut ``system``'s dense rows into tiles and send the workers each tile row's block
    of ``G21`` and each tile's nonzeros of ``G22`` (once per fit)."""
    q2 = system.dense_size
    edges = tile_edges(q2, tile_rows(q2) if tile is None else tile)
    n = len(edges) - 1
    blocks = [runner.scatter(kt.row_block(system, int(edges[i]), int(edges[i + 1])))
              for i in range(n)]
    g22 = {}
    for i in range(n):
        rows = slice(int(edges[i]), int(edges[i + 1]))
        for j in range(i + 1):
            entries = kt.tile_entries(system, rows, slice(int(edges[j]), int(edges[j + 1])))
            g22[i, j] = None if entries is None else runner.scatter(entries)
    return TiledSchur(runner, edges, blocks, g22)


def tiled_pieces(system: kt.TiledSystem, schur: TiledSchur, theta: np.ndarray,
                 gradient: bool) -> CrossedPieces:
    """``log|C|``, ``c'c`` (and their derivatives along theta) with the dense part on
    the tiles: what :func:`dlmm.kernels.crossed.crossed_pieces` gives on the driver."""
    theta = np.asarray(theta, dtype=float).ravel()
    runner = schur.runner
    first = kt.first_factor(system, theta)
    params = runner.scatter(first.params(system, theta))
    low = schur.factor(params)
    c = tc.forward(runner, low, schur.n, schur.split(first.u2))
    parts = tc.logdet_parts(runner, low, schur.n)
    if not gradient:
        c2 = np.concatenate(runner.gather(c))
        ctc = first.ctc + c2.T @ c2
        logdet = first.logdet + float(np.sum(runner.gather(parts)))
        return CrossedPieces(logdet, 0.5 * (ctc + ctc.T))
    b = tc.backward(runner, low, schur.n, c)
    inv = tc.inverse(runner, low, schur.n)  # waits for W = L^{-1}; the factor is released
    del low
    traces = [runner.submit(kt.gradient_tile, inv[i, j], schur.blocks[i], schur.blocks[j],
                            schur.g22[i, j], params) for (i, j) in inv]
    del inv
    logdet = first.logdet + float(np.sum(runner.gather(parts)))
    c2 = np.concatenate(runner.gather(c))
    b2 = np.concatenate(runner.gather(b))
    traces = np.sum(runner.gather(traces), axis=0)  # in tile order: the same sum each time
    ctc = first.ctc + c2.T @ c2
    return CrossedPieces(logdet, 0.5 * (ctc + ctc.T),
                         kt.logdet_gradient(system, theta, first, traces),
                         kt.gradient_ctc(system, theta, first, b2))


def tiled_effects(system: kt.TiledSystem, schur: TiledSchur, theta: np.ndarray,
                  beta: np.ndarray, scale: float) -> tuple[list, list]:
    """Conditional modes and variances per factor (caller's order), as
    :func:`~dlmm.kernels.crossed.conditional_modes` and
    :func:`~dlmm.kernels.crossed.conditional_variances` give them (intercepts: one
    number per level)."""
    theta = np.asarray(theta, dtype=float).ravel()
    runner = schur.runner
    first = kt.first_factor(system, theta)
    params = runner.scatter(first.params(system, theta))
    low = schur.factor(params)
    cvec = np.concatenate([-np.asarray(beta, dtype=float).ravel(), [1.0]])
    c = tc.forward(runner, low, schur.n, schur.split((first.u2 @ cvec)[:, None]))
    b = tc.backward(runner, low, schur.n, c)
    inv = tc.inverse(runner, low, schur.n)
    del low
    rest_theta = system.rest_theta(theta)
    k1 = runner.scatter(first.k1)
    quads = [runner.submit(kt.variance_tile, inv[i, j], schur.blocks[i], schur.blocks[j], k1,
                           rest_theta) for (i, j) in inv]
    diagonal = [runner.submit(np.diagonal, inv[i, i]) for i in range(schur.n)]
    del inv
    b2 = np.concatenate(runner.gather(b))
    sol = kt.back_solve_tiled(system, theta, first, b2, (system.h1[:, 0, :] @ cvec)[:, None])
    p11 = 1.0 / first.c11 + np.sum(runner.gather(quads), axis=0)
    ainv_diag = np.concatenate(runner.gather(diagonal))
    modes = {system.first: sol.bt1[:, 0]}
    variances = {system.first: scale * theta[system.first] ** 2 * p11}
    for j, k in enumerate(system.rest):
        rows = system.owner == j
        modes[k] = sol.bt2[rows, 0]
        variances[k] = scale * rest_theta[j] ** 2 * ainv_diag[rows]
    order = range(len(system.n_levels))
    return [modes[k] for k in order], [variances[k] for k in order]


@dataclass(eq=False)
class TiledCrossedStatistics(CrossedStatistics):
    """:class:`~dlmm.structure.crossed.CrossedStatistics` whose dense part lives by
    tiles on the workers (:class:`TiledSchur`); ``system`` is a
    :class:`~dlmm.kernels.crossed.tiles.TiledSystem`."""

    schur: TiledSchur | None = field(default=None, repr=False)
    single_capable = False  # its dense part is factored by tiles on the workers

    @property
    def threads(self) -> DenseThreads:
        """The driver's share is vectors and sparse products: one BLAS thread."""
        if self._threads is None:
            self._threads = DenseThreads(0)
        return self._threads

    def _evaluate(self, theta: np.ndarray, gradient: bool) -> CrossedPieces:
        """One evaluation by tiles on the workers (:func:`tiled_pieces`)."""
        return tiled_pieces(self.system, self.schur, theta, gradient=gradient)

    def start_params(self) -> MixedLMParams:
        theta = moment_theta(self.system)
        return MixedLMParams.from_components(cov_re=np.zeros((0, 0)), vcomp=theta**2)

    def drop_fixed_columns(self, keep_xy: np.ndarray) -> None:
        keep_xy = np.asarray(keep_xy, dtype=bool)
        self.totals.xy_cross = self.totals.xy_cross[np.ix_(keep_xy, keep_xy)]
        self.system = kt.select_tiled_columns(self.system, keep_xy)
        self._last = []

    def effects(self, chol_re: np.ndarray, sd_vc: np.ndarray, coef: np.ndarray,
                scale: float) -> list[Any]:
        theta = self._theta(chol_re, sd_vc)
        beta = -np.asarray(coef, dtype=float)[:-1]
        modes, variances = tiled_effects(self.system, self.schur, theta, beta, scale)
        vc_modes = np.concatenate(modes)
        n_slots = vc_modes.shape[0]
        return [BlockEffects(
            labels=self.labels, re_modes=np.zeros((1, 0)), re_cov=np.zeros((1, 0, 0)),
            vc_group=np.zeros(n_slots, dtype=np.int64),
            vc_slot=np.arange(n_slots, dtype=np.int64), vc_modes=vc_modes,
            vc_var=np.concatenate(variances), batches=[],
        )]


def tiled_client(layout, backend) -> Any:
    """None when the driver can hold the dense part of ``layout`` within its limit
    (:mod:`.driver_memory`); else the client of the cluster that will hold it by tiles
    (:func:`plan_tiles`, which refuses, before any work, what no cluster can)."""
    q2 = crossed.dense_size(layout)
    need = crossed.driver_bytes(q2, 0, 0)  # the dense part's share of the driver's estimate
    limit = driver_limit(crossed.MAX_DRIVER_BYTES)
    # beyond the driver's cap on Q2 (crossed.check_size) a cluster takes it too
    capped = q2 > crossed.MAX_DENSE_EFFECTS and getattr(backend, "name", None) == "dask"
    if need <= limit and not capped:
        return None
    order = sorted(zip(layout.n_levels, layout.factors), key=lambda p: -p[0])
    factors = (f", the factors after {order[0][1]!r} ("
               + ", ".join(f"{f!r}: {n:,} levels" for n, f in order[1:]) + ")")
    return plan_tiles(q2, need, limit, backend, factors,
                      None if need > limit else crossed.MAX_DENSE_EFFECTS)


def tiled_pass(spec, layout, backend, client, label: Any = 0,
               progress=None) -> TiledCrossedStatistics:
    """The one pass (:func:`~.crossed.pass_sums`), then the statistics whose dense part
    goes to ``client``'s workers (:func:`tiled_client`)."""
    start = time.perf_counter()
    sums, totals = pass_sums(spec, layout, backend, progress)
    return tiled_statistics(sums, totals, layout, backend, client, group_labels(label), start)


def tiled_statistics(sums, totals, layout, backend, client, labels: np.ndarray,
                     start: float) -> TiledCrossedStatistics:
    """The statistics of a pass whose dense part goes to ``client``'s workers."""
    try:
        system = kt.tiled_system(sums)
    except kt.NotTileable as exc:
        raise InputError(f"the crossed engine factors a dense part beyond the driver's "
                         f"limit on the workers for random intercepts only, not {exc}") from None
    runner = tc.ClientRunner(client, backend.gather)
    schur = scatter_tiles(system, runner)
    return TiledCrossedStatistics(
        backend=backend, system=system, totals=totals, layout=layout, labels=labels,
        seconds=time.perf_counter() - start, schur=schur)
