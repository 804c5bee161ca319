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

import contextlib
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
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
    single_supported,
    streams_pairs,
    uses_dense_g21,
)
from ..kernels.crossed.weighted_start import weighted_theta
from ..kernels.moments import MomentPieces
from ..kernels.pieces import RowTotals
from ..objective.params import MixedLMParams
from ..spec.crossed import CrossedLayout, crossed_design
from ..spec.residual import residual_logdet
from .driver_memory import driver_limit
from .driver_system import DriverSystemStatistics
from .threads import DenseThreads

#: Largest dense part the driver will hold: the random effects of every factor but
#: the largest (``Q2``), if its bytes fit :data:`MAX_DRIVER_BYTES` too. A step holds
#: the dense part once (``8 Q2^2`` bytes: 7.2 GB at this limit; ``G22`` is kept by its
#: nonzeros, the Schur complement is factored and inverted in place) and costs about
#: ``Q2^3`` flops (at this limit about 4 minutes a step on two cores).
MAX_DENSE_EFFECTS = 30_000

#: Largest driver memory the crossed fit may need (bytes): the dense part is checked
#: against it before the pass, the whole estimate (:func:`driver_bytes`) after the
#: pass and before the blocked system is built.
MAX_DRIVER_BYTES = 8e9
#: Driver bytes per number of the dense part (``Q2^2`` float64, held once).
DENSE_BYTES = 8.0
#: Driver bytes per pair of the stored Schur operator at its peak, measured (build and
#: fit of the 10^6-row ratings benchmark: 16 million pairs).
PAIR_BYTES = 80.0
#: Driver bytes per level pair with the largest factor when the pairs are streamed
#: (the sums, ``G21`` and its transpose, the row entries and their index arrays,
#: the per-entry vectors of a step). Measured with tracemalloc on the 10^7 ratings
#: (6.8 million level pairs): the build peaks at 178 bytes a level pair (the sums
#: included), the system holds 81, an evaluation with its gradient peaks at
#: ``8 Q2^2`` + 124; ``tests/structure/test_crossed_memory.py`` checks the bound.
ENTRY_BYTES = 200.0
#: Driver bytes per number of a dense ``G21`` (``Q2 l_1 t_1``): the array, its product
#: with ``M1`` in a step and ``N`` made dense for the gradient.
DENSE_G21_BYTES = 24.0


def dense_size(layout: CrossedLayout) -> int:
    """``Q2``: random effects of the factors after the largest one."""
    return int(sum(layout.n_levels) - max(layout.n_levels))


def dense_bytes(q2: int) -> float:
    """Driver bytes of the dense part, held once: ``8 Q2^2``."""
    return DENSE_BYTES * float(q2) * float(q2)


def check_size(layout: CrossedLayout) -> None:
    """Refuse, before any work, a design whose dense part the driver cannot hold: more
    than :data:`MAX_DENSE_EFFECTS` effects, or more than :data:`MAX_DRIVER_BYTES`."""
    q2 = dense_size(layout)
    limit = driver_limit(MAX_DRIVER_BYTES)  # the user's driver_memory, if set
    if q2 > MAX_DENSE_EFFECTS or dense_bytes(q2) > limit:
        order = sorted(zip(layout.n_levels, layout.factors), reverse=True)
        rest = ", ".join(f"{f!r} ({n} levels)" for n, f in order[1:])
        raise InputError(
            f"the crossed engine keeps the factors after the largest one ({rest}) as a "
            f"dense {q2} x {q2} matrix (the driver would need {dense_bytes(q2) / 1e9:.2g} GB "
            f"for it, its limit is {limit / 1e9:.2g} GB); at most "
            f"{min(MAX_DENSE_EFFECTS, max_dense_fitting())} random effects there are "
            "supported")


def max_dense_fitting() -> int:
    """Largest ``Q2`` whose dense part alone fits the driver's limit
    (:data:`MAX_DRIVER_BYTES`, or the user's ``driver_memory``)."""
    return int(math.isqrt(int(driver_limit(MAX_DRIVER_BYTES) / DENSE_BYTES)))


def driver_bytes(q2: int, pairs: int, entries: int, dense_g21: int = 0) -> float:
    """Estimated peak driver bytes of the crossed fit: the dense part once
    (:func:`dense_bytes`) plus, with a dense ``G21`` of ``dense_g21`` numbers,
    ``DENSE_G21_BYTES`` each; else the stored pairs (``PAIR_BYTES`` each) or,
    streamed, the level pairs (``ENTRY_BYTES`` each)."""
    if dense_g21:
        held = DENSE_G21_BYTES * dense_g21
    else:
        held = ENTRY_BYTES * entries if streams_pairs(pairs) else PAIR_BYTES * pairs
    return dense_bytes(q2) + held


def check_pairs(sums: CrossedSums, layout: CrossedLayout) -> None:
    """Refuse, before the blocked system is built, a design whose dense part and level
    pairs the driver cannot hold together (:data:`MAX_DRIVER_BYTES`)."""
    q2 = dense_size(layout)
    pairs = schur_pair_count(sums)
    entries = row_entry_count(sums)
    l1 = max(layout.n_levels)
    g21 = q2 * l1 if uses_dense_g21(q2, l1, 1, pairs) else 0
    need = driver_bytes(q2, pairs, entries, g21)
    limit = driver_limit(MAX_DRIVER_BYTES)  # the user's driver_memory, if set
    if need <= limit:
        return
    first = layout.factors[int(np.argmax(layout.n_levels))]
    if g21:
        held = (f"{pairs:,} pairs of level pairs sharing a level of {first!r}, made by "
                f"products of a dense {q2} x {l1} G21 ({DENSE_G21_BYTES * g21 / 1e9:.1f} GB)")
    elif streams_pairs(pairs):
        held = (f"{pairs:,} pairs of level pairs sharing a level of {first!r}, walked each "
                f"step over {entries:,} level pairs ({ENTRY_BYTES * entries / 1e9:.1f} GB)")
    else:
        held = (f"{pairs:,} pairs of level pairs sharing a level of {first!r} "
                f"({PAIR_BYTES * pairs / 1e9:.1f} GB)")
    raise InputError(
        f"the crossed engine would need about {need / 1e9:.1f} GB on the driver, more than "
        f"its limit of {limit / 1e9:.1f} GB: {held} and a dense "
        f"{q2} x {q2} part ({dense_bytes(q2) / 1e9:.1f} GB)")


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
    single_evaluations: int = 0
    _last: list = field(default_factory=list, repr=False)
    _threads: DenseThreads | None = field(default=None, repr=False)
    _single: bool = field(default=False, repr=False)
    #: Evaluations with the gradient give the average-information pieces too
    #: (:meth:`dlmm.objective.objective.ProfiledObjective.information`).
    information: bool = field(default=False, repr=False)

    engine_name = "crossed"
    #: Whether :meth:`single_precision` may factor in float32 (not the tiled subclass,
    #: whose dense part is on the workers).
    single_capable = True

    def vc_effect_counts(self) -> np.ndarray:
        return np.asarray(self.layout.n_levels, dtype=np.int64)

    @staticmethod
    def _theta(chol_re: np.ndarray, sd_vc: np.ndarray) -> np.ndarray:
        if np.asarray(chol_re).size:
            raise InputError("the crossed engine has no standard random effects")
        return np.asarray(sd_vc, dtype=float).ravel()

    def _key(self, theta: np.ndarray) -> bytes:
        """The cache key of ``theta``: single-precision pieces apart from float64 ones."""
        return theta.tobytes() + (b"single" if self._single else b"")

    def pieces(self, chol_re: np.ndarray, sd_vc: np.ndarray) -> CrossedPieces:
        """``log|V|``, ``hmh`` and their derivatives along theta (one blocked
        factorization on the driver; the last few are kept).

        At a point the coarse phase evaluated with its derivatives (float32 Schur part:
        the optimizer's last point, :func:`dlmm.optimize.driver.maximize`), outside it:
        ``log|V|`` and ``hmh`` of a float64 factorization without the inverse (a value,
        about a third of an evaluation with derivatives), beside the float32 one's
        derivatives (``hmh``'s refined to float64's accuracy, ``log|V|``'s to float32's:
        6e-5 in an llf gradient of scale 5e4 on the 10^6 ratings, theta within 1e-9)."""
        theta = self._theta(chol_re, sd_vc)
        key = self._key(theta)
        coarse = None if self._single else self.kept_pieces(theta.tobytes() + b"single")
        if coarse is not None and coarse.dlogdet is not None:
            return self.recent_pieces(key, lambda: replace(coarse, **self._value64(theta)))
        return self.recent_pieces(key, lambda: residual_logdet(
            self._evaluate(theta, True), self.totals.log_weights))

    def _value64(self, theta: np.ndarray) -> dict:
        """``logdet`` and ``hmh`` of a float64 factorization at ``theta`` (no inverse)."""
        value = residual_logdet(crossed_pieces(self.system, theta, gradient=False),
                                self.totals.log_weights)
        return {"logdet": value.logdet, "hmh": value.hmh}

    def _evaluate(self, theta: np.ndarray, gradient: bool) -> CrossedPieces:
        """One blocked factorization at ``theta`` (with the derivatives if ``gradient``),
        its Schur complement in float32 inside :meth:`single_precision` (in float64
        where float32 fails: not positive definite, or its refinement does not
        converge)."""
        if self._single:
            try:
                out = crossed_pieces(self.system, theta, gradient=gradient, single=True,
                                     information=self.information, pair_hessian=True)
            except np.linalg.LinAlgError:
                pass
            else:
                self.single_evaluations += 1
                return out
        return crossed_pieces(self.system, theta, gradient=gradient,
                              information=self.information)

    @property
    def coarse_precision(self):
        """:meth:`single_precision` where it changes anything (a large dense Schur part:
        :func:`~dlmm.kernels.crossed.single_supported`), else None: an optimizer's
        ``coarse`` (:func:`dlmm.optimize.driver.maximize`)."""
        if self.single_capable and single_supported(self.system):
            return self.single_precision
        return None

    @contextlib.contextmanager
    def single_precision(self) -> Iterator[None]:
        """Within the block, evaluations factor and invert a large dense Schur
        complement in float32 (:mod:`dlmm.kernels.crossed.single`: ``log|V|`` and its
        gradient to float32's accuracy, the rest to float64's): an optimizer's coarse
        phase, never a reported number. Elsewhere (small or sparse Schur part) a no-op.
        The float32 path's index arrays (:func:`~dlmm.kernels.crossed.single.lower_pattern`,
        ~75 MB on the 10^6 ratings) are let go at the end."""
        self._single = self.single_capable and single_supported(self.system)
        try:
            yield
        finally:
            self._single = False
            getattr(self.system, "_cache", {}).pop("single_pattern", None)

    def value_pieces(self, chol_re: np.ndarray, sd_vc: np.ndarray) -> CrossedPieces:
        """``log|V|`` and ``hmh`` alone (no derivatives: the factorization without the
        Schur part's inverse, about a third of :meth:`pieces` on a large dense part);
        the pieces with derivatives where the point was evaluated with them."""
        theta = self._theta(chol_re, sd_vc)
        key = self._key(theta)
        out = self.kept_pieces(key)
        if out is not None:
            return out
        return self.recent_pieces(key + b"value", lambda: residual_logdet(
            self._evaluate(theta, False), self.totals.log_weights))

    def start_params(self) -> MixedLMParams:
        """One-way moment estimates per factor (:func:`~dlmm.kernels.crossed.moment_theta`);
        where the evaluations are large enough to factor in float32 (each a second or
        more), two intercepts weighed by their levels' precision
        (:func:`~dlmm.kernels.crossed.weighted_start.weighted_theta`: a gradient fewer)."""
        theta = moment_theta(self.system)
        if self.coarse_precision is not None:
            theta = weighted_theta(self.system, theta)
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
            variances = conditional_variances(self.system, factor, scale, consume=True)
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
    totals = ordered_sum([p.totals for p in parts])
    sums = combine_sums([p.sums for p in parts])
    del parts  # the chunks' sums, added: not held beside the system
    return sums, totals


#: From this order of the dense part on, the driver loads the compiled loops that build
#: its system while the rows are read (:func:`load_build_loops`); smaller fits build in
#: a few milliseconds and need no thread.
LOAD_LOOPS_MIN = 2000
_LOADING: list = []
_LOADING_LOCK = threading.Lock()


def load_build_loops(layout: CrossedLayout) -> threading.Thread | None:
    """Load the compiled loops that build a large system (the Schur operator's pairs,
    :func:`~dlmm.kernels.crossed.level_pairs.load_loops`, and the float32 path's
    pattern) in a daemon thread, once per process: numba's start and its loads
    (0.15-0.3 s of CPU) overlap the pass, when the driver waits for the workers,
    instead of following it. The thread, or None (small dense part, or already
    started)."""
    if dense_size(layout) < LOAD_LOOPS_MIN:
        return None
    with _LOADING_LOCK:
        if _LOADING:
            return None
        thread = threading.Thread(target=_load_quietly, name="dlmm-crossed-loops",
                                  daemon=True)
        _LOADING.append(thread)
    thread.start()
    return thread


def _load_quietly() -> None:
    from ..kernels.crossed import level_pairs, single

    try:
        level_pairs.load_loops()
        single.load_loops()
    except Exception:  # noqa: BLE001 - a load only: the build itself will say
        pass


def crossed_pass(spec, layout: CrossedLayout, backend: Backend, label: Any = 0,
                 progress=None) -> CrossedStatistics:
    """The one pass (:func:`pass_sums`), then the blocked system on the driver (a dense
    part beyond the driver's limit goes to the workers instead: :mod:`.crossed_tiled`).
    """
    check_size(layout)
    start = time.perf_counter()
    loading = load_build_loops(layout)
    sums, totals = pass_sums(spec, layout, backend, progress)
    check_pairs(sums, layout)
    if loading is not None:  # its parallel loops never run beside the build's own
        loading.join()
    system = build_system(sums)
    return CrossedStatistics(
        backend=backend, system=system, totals=totals, layout=layout,
        labels=group_labels(label), seconds=time.perf_counter() - start,
    )
