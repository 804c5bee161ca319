"""The crossed engine: keyed sparse sums on the workers, one blocked system on the driver.

For a crossed design (:func:`dlmm.spec.crossed.crossed_layout`: one group, one
variance component per factor, a random intercept per level) the one pass
reduces each chunk of rows, where it is, to the keyed sums of
:func:`dlmm.kernels.crossed.crossed_sums` (per level, per level pair, per level
and column of ``[X y]``; their size is that of the levels and level pairs the
chunk holds, never of its rows). The driver gathers them, adds them by key in
chunk order (:func:`~dlmm.kernels.crossed.combine_sums`, so the sum does not
depend on timing) and builds the blocked system once
(:func:`~dlmm.kernels.crossed.build_system`). From then on every question
(likelihood pieces, random effects) is driver-only: no map-reduce, no rows.

The parameter is the engine interface's ``(chol_re, sd_vc)`` with ``chol_re``
empty: the crossed kernels' theta (``T_k = sqrt(vcomp_k / scale)``, one entry per
factor in the specification's component order) is exactly ``sd_vc``. The
pieces' derivatives are along theta (sqrt directions); there are no Hessian
pieces (:attr:`has_newton_pieces` is False).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..distributed.base import Backend, ordered_sum
from ..exceptions import InputError
from ..kernels.block import BlockEffects
from ..kernels.crossed import (
    CrossedPieces,
    CrossedSums,
    CrossedSystem,
    build_system,
    combine_sums,
    conditional_modes,
    conditional_variances,
    crossed_pieces,
    crossed_sums,
    factorize,
    moment_theta,
    row_entry_count,
    schur_pair_count,
    streams_pairs,
)
from ..kernels.moments import MomentPieces
from ..kernels.pieces import RowTotals
from ..objective.params import MixedLMParams
from ..spec.crossed import CrossedLayout, crossed_design
from ..spec.residual import residual_logdet
from .driver_memory import driver_limit
from .driver_system import DriverSystemStatistics
from .threads import DenseThreads

#: Largest dense part the driver will hold: the random effects of every factor but
#: the largest (``Q2``). One evaluation keeps about six ``Q2 x Q2`` float64 arrays
#: (``6 * 8 * Q2^2`` bytes: 7 GB at this limit) and costs ``~Q2^3`` flops.
MAX_DENSE_EFFECTS = 12_000


def dense_size(layout: CrossedLayout) -> int:
    """``Q2``: random effects of the factors after the largest one."""
    return int(sum(layout.n_levels) - max(layout.n_levels))


def check_size(layout: CrossedLayout) -> None:
    """Refuse, before any work, a design whose dense part the driver cannot hold."""
    q2 = dense_size(layout)
    if q2 > MAX_DENSE_EFFECTS:
        order = sorted(zip(layout.n_levels, layout.factors), reverse=True)
        rest = ", ".join(f"{f!r} ({n} levels)" for n, f in order[1:])
        raise InputError(
            f"the crossed engine keeps the factors after the largest one ({rest}) as a "
            f"dense {q2} x {q2} matrix (the driver would need about "
            f"{6 * 8 * q2**2 / 1e9:.2g} GB); at most {MAX_DENSE_EFFECTS} random effects "
            "there are supported")


#: Largest driver memory the blocked system may need (bytes), checked after the pass
#: and before the system is built: the dense part (:data:`MAX_DENSE_EFFECTS`) and what
#: the Schur update keeps of the pairs of level pairs that share a level of the largest
#: factor (stored: ``PAIR_BYTES`` per pair; streamed: ``ENTRY_BYTES`` per level pair).
MAX_DRIVER_BYTES = 8e9
#: Driver bytes per pair of the stored Schur operator at its peak, measured (build and
#: fit of the 10^6-row ratings benchmark: 16 million pairs).
PAIR_BYTES = 80.0
#: Driver bytes per level pair with the largest factor when the pairs are streamed
#: (the sums, ``G21`` and its transpose, the row entries and their index arrays,
#: the per-entry vectors of a step).
ENTRY_BYTES = 200.0


def driver_bytes(q2: int, pairs: int, entries: int) -> float:
    """Estimated peak driver bytes of the crossed fit: ``48 Q2^2`` plus the stored
    pairs (``PAIR_BYTES`` each) or, streamed, the level pairs (``ENTRY_BYTES`` each)."""
    held = ENTRY_BYTES * entries if streams_pairs(pairs) else PAIR_BYTES * pairs
    return 6 * 8.0 * q2 * q2 + held


def check_pairs(sums: CrossedSums, layout: CrossedLayout) -> None:
    """Refuse, before the blocked system is built, a design whose level pairs the
    driver cannot hold (:data:`MAX_DRIVER_BYTES`)."""
    q2 = dense_size(layout)
    pairs = schur_pair_count(sums)
    entries = row_entry_count(sums)
    need = driver_bytes(q2, pairs, entries)
    limit = driver_limit(MAX_DRIVER_BYTES)  # the user's driver_memory, if set
    if need <= limit:
        return
    first = layout.factors[int(np.argmax(layout.n_levels))]
    if streams_pairs(pairs):
        held = (f"{pairs:,} pairs of level pairs sharing a level of {first!r}, walked each "
                f"step over {entries:,} level pairs ({ENTRY_BYTES * entries / 1e9:.1f} GB)")
    else:
        held = (f"{pairs:,} pairs of level pairs sharing a level of {first!r} "
                f"({PAIR_BYTES * pairs / 1e9:.1f} GB)")
    raise InputError(
        f"the crossed engine would need about {need / 1e9:.1f} GB on the driver, more than "
        f"its limit of {limit / 1e9:.1f} GB: {held} and a dense "
        f"{q2} x {q2} part ({48.0 * q2 * q2 / 1e9:.1f} GB)")


@dataclass(eq=False)
class CrossedChunk:
    """What the one pass keeps of a chunk: its keyed sums and row totals."""

    sums: CrossedSums
    totals: RowTotals


def chunk_sums(frame: pd.DataFrame, spec, layout: CrossedLayout) -> CrossedChunk:
    """Model design of a chunk, centred by the spec's shifts, then its keyed crossed sums."""
    design, codes = crossed_design(spec, layout, frame)
    xy, z = spec.centering.apply(design.xy, design.z)  # see dlmm.spec.centering
    xy, z, _ = design.weighted_arrays(xy, z)  # rows times sqrt(w) (dlmm.spec.residual)
    # with precision weights each factor's indicator is sqrt(w) on its row (one term)
    terms = [None if design.weights is None else np.sqrt(design.weights)] * layout.n_factors
    sums = crossed_sums(codes, terms, xy[:, :-1], xy[:, -1], layout.n_levels)
    totals = RowTotals(
        xy_cross=sums.xy_cross,
        n_rows=float(xy.shape[0]),
        n_dropped=float(design.n_dropped),
        missing_by_column=design.missing_by_column,
        infinite_by_column=design.infinite_by_column,
        z_cross=z.T @ z,
        log_weights=design.log_weights,
        bad_weights=float(design.bad_weights),
    )
    return CrossedChunk(sums, totals)


def group_labels(label: Any) -> np.ndarray:
    """The one group's label as the grouped engine labels groups (0 for ``groups=None``)."""
    labels = np.asarray([label])
    if labels.dtype.kind == "U":
        labels = labels.astype(object)
    return labels


@dataclass(eq=False)
class CrossedStatistics(DriverSystemStatistics):
    """The blocked system of a crossed design and the row totals, on the driver.

    Attributes
    ----------
    backend : Backend
        Where the rows are (for fitted values; the statistics are here).
    system : CrossedSystem
    totals : RowTotals
    layout : CrossedLayout
    labels : ndarray (1,)
        The one group's label.
    seconds : float
        Wall time of the pass (the system built included).
    """

    backend: Backend
    system: CrossedSystem
    totals: RowTotals
    layout: CrossedLayout
    labels: np.ndarray
    seconds: float
    evaluations: int = 0
    shuffled: bool = False
    _last: list = field(default_factory=list, repr=False)
    _threads: DenseThreads | None = field(default=None, repr=False)

    engine_name = "crossed"

    def vc_effect_counts(self) -> np.ndarray:
        return np.asarray(self.layout.n_levels, dtype=np.int64)

    @staticmethod
    def _theta(chol_re: np.ndarray, sd_vc: np.ndarray) -> np.ndarray:
        if np.asarray(chol_re).size:
            raise InputError("the crossed engine has no standard random effects")
        return np.asarray(sd_vc, dtype=float).ravel()

    def pieces(self, chol_re: np.ndarray, sd_vc: np.ndarray) -> CrossedPieces:
        """``log|V|``, ``hmh`` and their derivatives along theta (one blocked
        factorization on the driver; the last few are kept)."""
        theta = self._theta(chol_re, sd_vc)
        return self.recent_pieces(theta.tobytes(), lambda: residual_logdet(
            crossed_pieces(self.system, theta, gradient=True), self.totals.log_weights))

    def value_pieces(self, chol_re: np.ndarray, sd_vc: np.ndarray) -> CrossedPieces:
        """``log|V|`` and ``hmh`` alone (no derivatives: the factorization without the
        Schur part's inverse, about a third of :meth:`pieces` on a large dense part);
        the pieces with derivatives where the point was evaluated with them."""
        theta = self._theta(chol_re, sd_vc)
        key = theta.tobytes()
        for seen, out in self._last:
            if seen == key:
                return out
        return self.recent_pieces(key + b"value", lambda: residual_logdet(
            crossed_pieces(self.system, theta, gradient=False), self.totals.log_weights))

    def start_params(self) -> MixedLMParams:
        """One-way moment estimates per factor (:func:`~dlmm.kernels.crossed.moment_theta`)."""
        theta = moment_theta(self.system)
        return MixedLMParams.from_components(cov_re=np.zeros((0, 0)), vcomp=theta**2)

    def moment_pieces(self, coef: np.ndarray) -> MomentPieces:
        raise NotImplementedError("the crossed engine has no moment start values")

    def effects(self, chol_re: np.ndarray, sd_vc: np.ndarray, coef: np.ndarray,
                scale: float) -> list[Any]:
        """The one group's :class:`~dlmm.kernels.block.BlockEffects`: conditional mode
        and variance of every level of every factor, in global slot order (component,
        then level), without full covariances."""
        theta = self._theta(chol_re, sd_vc)
        with self.threads.chosen():
            factor = factorize(self.system, theta)
            beta = -np.asarray(coef, dtype=float)[:-1]
            modes = conditional_modes(self.system, factor, beta)
            variances = conditional_variances(self.system, factor, scale)
        vc_modes = np.concatenate([m[:, 0] for m in modes])
        vc_var = np.concatenate([v[:, 0, 0] for v in variances])
        n_slots = vc_modes.shape[0]
        return [BlockEffects(
            labels=self.labels, re_modes=np.zeros((1, 0)), re_cov=np.zeros((1, 0, 0)),
            vc_group=np.zeros(n_slots, dtype=np.int64),
            vc_slot=np.arange(n_slots, dtype=np.int64), vc_modes=vc_modes, vc_var=vc_var,
            batches=[],
        )]


def pass_sums(spec, layout: CrossedLayout, backend: Backend,
              progress=None) -> tuple[CrossedSums, RowTotals]:
    """Read the rows once: keyed sums per chunk on the workers, added on the driver in
    chunk order; ``progress(done, total)`` is called as chunks of rows are done."""
    chunks = backend.map_chunks(lambda frame: chunk_sums(frame, spec, layout), progress)
    parts = backend.gather(chunks)  # per level and level pair: small next to the rows
    backend.release(chunks)
    return combine_sums([p.sums for p in parts]), ordered_sum([p.totals for p in parts])


def crossed_pass(spec, layout: CrossedLayout, backend: Backend, label: Any = 0,
                 progress=None) -> CrossedStatistics:
    """The one pass (:func:`pass_sums`), then the blocked system on the driver (a dense
    part beyond the driver's limit goes to the workers instead: :mod:`.crossed_tiled`).
    """
    check_size(layout)
    start = time.perf_counter()
    sums, totals = pass_sums(spec, layout, backend, progress)
    check_pairs(sums, layout)
    system = build_system(sums)
    return CrossedStatistics(
        backend=backend, system=system, totals=totals, layout=layout,
        labels=group_labels(label), seconds=time.perf_counter() - start,
    )
