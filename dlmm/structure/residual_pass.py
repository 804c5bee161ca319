"""The grouped engine with a residual model of parameters: rows to blocks kept by component.

A variance per stratum (``residual_by``) and AR(1) errors within groups
(``residual_ar1``) make each cross-product of a group a weighted sum of components
(:mod:`dlmm.objective.residual_structure`). The one pass forms every component of
every group and keeps them apart (:mod:`dlmm.kernels.residual_blocks`), still reading
each row once: each chunk's components (:mod:`.residual_chunk`: by stratum; with
AR(1) the pairs of consecutive rows of a group within the chunk) travel to the
group's block, and with AR(1) the rows at the ends of each group's runs in a chunk
("loose" rows: a handful per group and chunk where the data are written group by
group) with them, where runs from different chunks are joined into pairs and the
first and last rows of each group are found. Times must be consecutive integers
within a group.

The statistics answer the engine interface at given parameters φ
(:meth:`ResidualStatistics.at`); their pieces carry the derivatives along the
components' coefficients, which :class:`~dlmm.objective.residual_map.ResidualMap`
turns into derivatives along φ, so that the fit estimates φ with the covariance.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from ..distributed.base import Backend, ordered_sum
from ..exceptions import InputError
from ..kernels.block import KeyedCrossProducts
from ..kernels.crossprod import _sum_by_key
from ..kernels.hessian import HessianPieces, NewtonPieces, directions
from ..kernels.moments import MomentPieces
from ..kernels.pieces import RowTotals
from ..kernels.residual_blocks import (
    ComponentBlock,
    ResidualPieces,
    component_block,
    component_effects,
    component_moments,
    component_newton_pieces,
    component_pieces,
    component_select,
)
from ..objective.residual_structure import ResidualStructure
from ..spec.residual import residual_logdet
from .grouped import (
    GroupedStatistics,
    label_parts,
    split_by_hash,
    whole_group_blocks,
)
from .residual_chunk import residual_chunk
from .residual_parts import ComponentChunk, LooseRows, _keyed
from .threads import one_blas_thread

#: A component of a chunk: ``(kind, s, t)`` with the chunk's own stratum codes.
Key = tuple


def _by_key(keys: np.ndarray, zz: np.ndarray, zr: np.ndarray):
    """Sums of per-row ``zz`` (m, q, q) and ``zr`` (m, q, r) over equal keys."""
    m, q, r = zr.shape
    uniq, sums = _sum_by_key(keys, np.concatenate([zz.reshape(m, -1), zr.reshape(m, -1),
                                                   np.ones((m, 1))], axis=1))
    return (uniq, sums[:, : q * q].reshape(-1, q, q), sums[:, q * q: q * q + q * r]
            .reshape(-1, q, r), sums[:, -1])


def _summary(chunk: ComponentChunk):
    labels = [p.labels for p in chunk.parts.values() if p.labels.shape[0]]
    span = (0, None, None)
    if labels:
        merged = np.concatenate(labels)
        try:
            span = (int(np.unique(merged).shape[0]), merged.min(), merged.max())
        except TypeError:
            span = (int(merged.shape[0]), None, None)
    return chunk.levels, chunk.k, chunk.rows, chunk.totals, chunk.n_missing, span


def _split(chunk: ComponentChunk, n_out: int) -> list[ComponentChunk]:
    """Each component's keyed sums and the loose rows cut by the grouped engine's hash of
    the group label (:func:`.grouped.label_parts`: a group's loose rows go where its
    sums go); the totals are gathered already."""
    out = [ComponentChunk(chunk.levels, {}, {}, {}, None) for _ in range(n_out)]
    for key, keyed in chunk.parts.items():
        for part, piece in zip(out, split_by_hash(keyed, n_out)):
            part.parts[key] = piece
    if chunk.loose is not None:
        for part, keep in zip(out, label_parts(chunk.loose.labels, n_out)):
            part.loose = chunk.loose.select(keep)
    return out


def _join_loose(loose: list[LooseRows]):
    """The cross-chunk pairs and the first and last rows of every group of a block:
    ``{component: keyed sums}`` and ``{component: K part}``; a group whose runs do not
    join into one of consecutive times is refused."""
    labels = np.concatenate([x.labels for x in loose])
    t = np.concatenate([x.t for x in loose])
    s = np.concatenate([x.s for x in loose])
    head = np.concatenate([x.head for x in loose])
    tail = np.concatenate([x.tail for x in loose])
    z = np.concatenate([x.z for x in loose])
    xy = np.concatenate([x.xy for x in loose])
    g, uniq = pd.factorize(pd.Series(labels), sort=True)
    order = np.lexsort((t, g))
    g, t, s, head, tail, z, xy = (a[order] for a in (g, t, s, head, tail, z, xy))
    match = (g[1:] == g[:-1]) & (t[1:] == t[:-1] + 1) & tail[:-1] & head[1:]
    first = head & ~np.concatenate([[False], match])
    last = tail & ~np.concatenate([match, [False]])
    n_groups = uniq.shape[0]
    if not (np.bincount(g[first], minlength=n_groups) == 1).all() or \
            not (np.bincount(g[last], minlength=n_groups) == 1).all():
        bad = np.flatnonzero(np.bincount(g[first], minlength=n_groups) != 1)
        bad = bad if bad.size else np.flatnonzero(np.bincount(g[last], minlength=n_groups) != 1)
        raise InputError(f"residual_ar1: the times of group {uniq[bad[0]]!r} are not "
                         "consecutive integers, each once (AR(1) needs them; for unequal "
                         "spacing, nlme's corCAR1, a continuous-time AR(1), would be needed; "
                         "dlmm does not fit it)")
    out, k = {}, {}
    for kind, rows in (("ends", first), ("ends", last)):
        for code in np.unique(s[rows]):
            sel = np.flatnonzero(rows & (s == code))
            comp = (kind, int(code), int(code))
            zz = np.einsum("na,nb->nab", z[sel], z[sel])
            zr = np.einsum("na,nb->nab", z[sel], xy[sel])
            out.setdefault(comp, []).append((g[sel], zz, zr))
            k[comp] = k.get(comp, 0) + xy[sel].T @ xy[sel]
    a = np.flatnonzero(match)
    b = a + 1
    for lo_hi in {(int(min(x, y)), int(max(x, y))) for x, y in zip(s[a], s[b])}:
        sel = (np.minimum(s[a], s[b]) == lo_hi[0]) & (np.maximum(s[a], s[b]) == lo_hi[1])
        aa, bb = a[sel], b[sel]
        zz = np.einsum("na,nb->nab", z[aa], z[bb])
        zz = zz + np.swapaxes(zz, 1, 2)
        zr = np.einsum("na,nb->nab", z[aa], xy[bb]) + np.einsum("na,nb->nab", z[bb], xy[aa])
        comp = ("lag1", *lo_hi)
        out.setdefault(comp, []).append((g[aa], zz, zr))
        kk = xy[aa].T @ xy[bb]
        k[comp] = k.get(comp, 0) + kk + kk.T
    summed = {}
    for comp, pieces in out.items():
        gg = np.concatenate([p[0] for p in pieces])
        keys, szz, szr, n = _by_key(gg, np.concatenate([p[1] for p in pieces]),
                                    np.concatenate([p[2] for p in pieces]))
        summed[comp] = _keyed(np.asarray(uniq, dtype=object)[keys]
                              if np.asarray(uniq).dtype.kind in "UO" else np.asarray(uniq)[keys],
                              n, szz, szr)
    return summed, k


def _index(structure: ResidualStructure, key: Key, where: list[int]) -> int:
    kind, s, t = key
    s, t = where[s], where[t]
    if kind == "lag0":
        return s
    if kind == "ends":
        return structure.n_strata + s
    return int(structure.lag1_index(np.array(s), np.array(t)))


def build_components(chunks: list[ComponentChunk], levels: list,
                     structure: ResidualStructure) -> ComponentBlock:
    """The block of whole groups of ``chunks``: each component's parts added by key
    (with AR(1), runs joined across chunks), laid out by the union of the groups."""
    n_comp = len(structure.components)
    where_level = {v: s for s, v in enumerate(levels)}
    parts: list[list[KeyedCrossProducts]] = [[] for _ in range(n_comp)]
    for chunk in chunks:
        where = [where_level[v] for v in chunk.levels]
        for key, keyed in chunk.parts.items():
            if keyed.labels.shape[0]:
                parts[_index(structure, key, where)].append(keyed)
    k_extra = np.zeros(n_comp, dtype=object)
    # the loose rows with the chunks' stratum codes made the global ones
    loose = [replace(c.loose, s=np.asarray([where_level[v] for v in c.levels],
                                           dtype=np.int64)[c.loose.s])
             for c in chunks if c.loose is not None and c.loose.labels.shape[0]]
    if loose:
        joined, k = _join_loose(loose)
        identity = list(range(structure.n_strata))
        for key, keyed in joined.items():
            parts[_index(structure, key, identity)].append(keyed)
        for key, value in k.items():
            k_extra[_index(structure, key, identity)] = value
    pieces = [[(p.labels, p.cp.zz, p.cp.zr, p.cp.n) for p in comp] for comp in parts]
    present = [p[0] for comp in pieces[: structure.n_strata] for p in comp]
    if not present:
        block = ComponentBlock(np.zeros(0), np.zeros(0), np.zeros((n_comp, 0, 0, 0)),
                               np.zeros((n_comp, 0, 0, 0)))
        block.k_extra = k_extra
        return block
    labels = np.concatenate(present)
    if not _increasing(labels):  # groups in several strata or chunks
        labels = np.unique(labels)
    block, counts = component_block(labels, pieces)
    block.n = counts[: structure.n_strata].sum(axis=0)
    if loose:
        lag1 = counts[2 * structure.n_strata:].sum(axis=0)
        bad = np.flatnonzero(lag1 != block.n - 1)
        if bad.size:
            raise InputError(f"residual_ar1: the times of group {labels[bad[0]]!r} are not "
                             "consecutive integers, each once (AR(1) needs them)")
    block.k_extra = k_extra
    return block


def _increasing(labels: np.ndarray) -> bool:
    try:
        return bool(np.all(labels[1:] > labels[:-1]))
    except TypeError:  # labels that do not order
        return False


def _block_summary(block: ComponentBlock):
    extra = getattr(block, "k_extra", None)
    if block.n_groups == 0:
        return (0, np.inf, -np.inf, block.nbytes, extra)
    return (block.n_groups, float(block.n.min()), float(block.n.max()), block.nbytes, extra)


@dataclass(eq=False)
class ResidualStatistics(GroupedStatistics):
    """:class:`~.grouped.GroupedStatistics` of blocks kept by residual component, seen at
    the residual parameters ``phi`` (:mod:`dlmm.objective.residual_structure`; all 0,
    one variance and no correlation, as the pass leaves them).

    Attributes
    ----------
    structure : ResidualStructure
    levels : list
        The strata, sorted; the first is the reference (``δ = 1``); ``[None]`` without.
    strata_column, time_column : str or None
        The stratum and time columns.
    component_k : ndarray (K, r, r)
        ``K_k`` of every component.
    rows_by_stratum : ndarray (S,)
    base_totals : RowTotals
        The row totals of every usable row (counts, ``Z'Z``, ``Σ log w``).
    phi : ndarray
    """

    structure: ResidualStructure = field(default_factory=ResidualStructure)
    levels: list = field(default_factory=list)
    strata_column: str | None = None
    time_column: str | None = None
    component_k: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0)))
    rows_by_stratum: np.ndarray = field(default_factory=lambda: np.zeros(0))
    base_totals: Any = None
    phi: np.ndarray = field(default_factory=lambda: np.zeros(0))
    root: Any = field(default=None, repr=False)

    @property
    def has_newton_pieces(self) -> bool:
        return False

    def residual_logdet(self, phi) -> tuple[float, np.ndarray]:
        """``(log|R|, ∂log|R|/∂φ)``."""
        return self.structure.logdet(phi, self.rows_by_stratum, self.n_groups)

    def totals_at(self, phi) -> RowTotals:
        """The row totals at φ: ``K(c(φ))`` and ``Σ log w - log|R|``."""
        c = self.structure.coefficients(phi)[0]
        base = self.base_totals
        return replace(base, xy_cross=np.tensordot(c, self.component_k, axes=1),
                       log_weights=float(base.log_weights - self.residual_logdet(phi)[0]))

    def at(self, phi) -> ResidualStatistics:
        """The statistics at other residual parameters (the blocks are shared)."""
        phi = np.asarray(phi, dtype=float)
        return replace(self, phi=phi, totals=self.totals_at(phi), _last_newton=None,
                       root=self.root if self.root is not None else self)

    def pieces(self, chol_re: np.ndarray, sd_vc: np.ndarray) -> ResidualPieces:
        """The pieces at :attr:`phi`, with ``p_res = ∂Σlog|C_i|/∂φ`` and
        ``t_res = ∂hmh/∂φ - ∂K/∂φ`` along φ (the components' coefficients ``c(φ)``
        moved along ``∂c/∂φ_a``; the ``log|R|`` part is :meth:`residual_logdet`'s)."""
        root = self.root if self.root is not None else self
        last = root._last_newton
        if last is not None and last[0] == self._phi_key(chol_re, sd_vc):
            n = self.structure.n_params  # the last step's, here (the optimum's, often)
            value = last[1].value
            return replace(value, p_res=value.p_res[:n], t_res=value.t_res[:n])
        root.evaluations += 1
        c, jac = self.structure.coefficients(self.phi)
        return self._pieces(component_pieces, chol_re, sd_vc, c,
                            np.ascontiguousarray(jac.T))[0]

    def _phi_key(self, chol_re: np.ndarray, sd_vc: np.ndarray) -> bytes:
        return self._key(chol_re, sd_vc) + b"|" + np.ascontiguousarray(
            self.phi, dtype=float).tobytes()

    def _pieces(self, func, chol_re, sd_vc, c, dirs, *more) -> tuple:
        """``(value pieces, what func's sum is)``: ``func`` mapped over the blocks and
        summed; of its value pieces (itself, or its ``value``) ``∂K`` along ``dirs``
        subtracted from ``t_res`` and ``log|R|`` with ``Σ log w`` from ``logdet``."""
        with one_blas_thread():  # blocks swept here (the local backend): the BLAS products
            # of a slice of groups are too small for threads woken on a busy machine
            raw = self.backend.map_sum(func, self.blocks, chol_re, sd_vc, c, dirs, *more)
        value = getattr(raw, "value", raw)
        value = replace(value, t_res=value.t_res - np.tensordot(dirs, self.component_k, 1))
        return residual_logdet(value, self.totals.log_weights), raw

    def newton_pieces(self, chol_re: np.ndarray, sd_vc: np.ndarray) -> NewtonPieces:
        raise NotImplementedError("a residual model of parameters has Hessian pieces along "
                                  "φ too: residual_newton_pieces")

    def residual_newton_pieces(self, chol_re: np.ndarray, sd_vc: np.ndarray) -> NewtonPieces:
        """:meth:`pieces` at :attr:`phi`, in the same sweep the Hessian pieces along the
        covariance's directions (each entry of ``Psi``, as the grouped engine's) and then
        φ's (``∂c/∂φ_a``; :func:`~dlmm.kernels.residual_blocks.numpy_sweep`), with
        ``d1 = -∂S`` of each, and the value's ``p_res``, ``t_res`` along φ and then along
        ``∂²c/∂φ_a∂φ_b`` (a <= b, row by row): the curvature of ``c(φ)``."""
        (self.root if self.root is not None else self).evaluations += 1
        c, jac = self.structure.coefficients(self.phi)
        n = self.structure.n_params
        rows, cols = np.triu_indices(n)
        dirs = np.ascontiguousarray(np.vstack([jac.T, self.structure.second(self.phi)[
            :, rows, cols].T]))
        chol_re = np.asarray(chol_re, dtype=float)
        e = directions(chol_re.shape[0], np.zeros(0, dtype=np.int64))
        value, raw = self._pieces(component_newton_pieces, chol_re, sd_vc, c, dirs, e, n)
        d1 = np.concatenate([np.einsum("jab,abrs->jrs", e, value.t_re), value.t_res[:n]])
        out = NewtonPieces(value, HessianPieces(value.hmh, raw.trace2, d1, raw.d2))
        (self.root if self.root is not None else self)._last_newton = (
            self._phi_key(chol_re, sd_vc), out)
        return out

    def moment_pieces(self, coef: np.ndarray) -> MomentPieces:
        c = self.structure.coefficients(self.phi)[0]
        return self.backend.map_sum(component_moments, self.blocks, coef, c)

    def drop_fixed_columns(self, keep_xy: np.ndarray) -> None:
        keep_xy = np.asarray(keep_xy, dtype=bool)
        self._last_newton = None
        self.component_k = np.ascontiguousarray(self.component_k[:, keep_xy][:, :, keep_xy])
        self.base_totals = replace(self.base_totals,
                                   xy_cross=self.base_totals.xy_cross[np.ix_(keep_xy, keep_xy)])
        self.totals = self.totals_at(self.phi)
        self.blocks = self.backend.map(component_select, self.blocks, keep_xy)

    def vc_effect_counts(self) -> np.ndarray:
        return np.zeros(0, dtype=np.int64)

    def effects(self, chol_re: np.ndarray, sd_vc: np.ndarray, coef: np.ndarray,
                scale: float) -> list[Any]:
        c = self.structure.coefficients(self.phi)[0]
        return self.backend.map(component_effects, self.blocks, chol_re, sd_vc, coef, scale, c)


def _sort_key(value):
    return ("1", str(type(value).__name__), value) if not isinstance(value, (int, float)) \
        else ("0", "", value)


def check_residual_model(spec) -> None:
    """Refuse, in one line, what the residual components do not take yet."""
    if spec.k_vc:
        raise InputError("residual_by and residual_ar1 are not supported with variance "
                         "components (vc_formula) yet; state them as random effects of the "
                         "grouping factor")


def residual_pass(spec, backend: Backend, progress=None) -> ResidualStatistics:
    """Read the rows once; build and keep the blocks by residual component."""
    start = time.perf_counter()
    check_residual_model(spec)
    chunks = backend.map_chunks(lambda frame: residual_chunk(frame, spec), progress)
    return statistics_from_components(spec, backend, chunks, start)


def statistics_from_components(spec, backend: Backend, chunks: list[Any],
                               start: float) -> ResidualStatistics:
    """Blocks of whole groups from handles of :class:`ComponentChunk` (the chunks of the
    one pass, or one per input file for the statistics cache), and the row totals;
    ``start`` is when the pass began (``time.perf_counter``)."""
    residual = spec.residual
    summary = backend.gather(backend.map(_summary, chunks))
    if residual.strata is not None:
        levels = sorted({v for s in summary for v in s[0]}, key=_sort_key)
        if not levels:
            raise InputError(f"residual_by column {residual.strata!r} has no value")
    else:
        levels = [None]
    structure = ResidualStructure(len(levels), residual.ar1 is not None)
    n_comp = len(structure.components)
    where_level = {v: s for s, v in enumerate(levels)}
    component_k, rows = None, np.zeros(len(levels))
    totals = []
    for chunk_levels, k, chunk_rows, chunk_totals, _, _ in summary:
        where = [where_level[v] for v in chunk_levels]
        for key, value in k.items():
            if component_k is None:
                component_k = np.zeros((n_comp, *value.shape))
            component_k[_index(structure, key, where)] += value
        for code, n in chunk_rows.items():
            rows[where[code]] += n
        if chunk_totals is not None:
            totals.append(chunk_totals)
    if component_k is None:
        raise InputError("the data have no usable rows")
    if residual.strata is not None and len(levels) > 1 and rows.min() < 2:
        j = int(np.argmin(rows))
        raise InputError(f"residual_by column {residual.strata!r}: level {levels[j]!r} has "
                         f"{int(rows[j])} usable row(s); a residual variance of its own needs "
                         "at least 2 (merge it with another level, or leave its rows out)")
    def build(parts):
        return build_components(parts, levels, structure)

    blocks, shuffled = whole_group_blocks(backend, chunks, [s[5] for s in summary], _split,
                                          build)
    block_info = backend.gather(backend.map(_block_summary, blocks))
    backend.release(chunks)
    for info in block_info:  # joined pairs and ends, found in the blocks
        for j, value in enumerate(info[4] if info[4] is not None else []):
            if not isinstance(value, int):
                component_k[j] += value
    base = ordered_sum(totals)
    n_missing = int(sum(s[4] for s in summary))
    if n_missing:
        missing = base.missing_by_column.copy()
        missing[list(spec.columns).index(residual.strata)] += n_missing
        base = replace(base, missing_by_column=missing, n_dropped=base.n_dropped + n_missing)
    n_groups = int(sum(b[0] for b in block_info))
    stats = ResidualStatistics(
        backend=backend, blocks=blocks, totals=base, n_groups=n_groups,
        group_size_min=float(min(b[1] for b in block_info)) if n_groups else 0.0,
        group_size_max=float(max(b[2] for b in block_info)) if n_groups else 0.0,
        seconds=0.0, shuffled=shuffled, block_bytes=int(sum(b[3] for b in block_info)),
        structure=structure, levels=levels, strata_column=residual.strata,
        time_column=residual.ar1, component_k=component_k, rows_by_stratum=rows,
        base_totals=base, phi=np.zeros(structure.n_params))
    stats.totals = stats.totals_at(stats.phi)
    stats.seconds = time.perf_counter() - start
    return stats
