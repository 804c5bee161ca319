"""The grouped engine with a residual model of parameters: rows to blocks kept by component.

A variance per stratum (``residual_by``) and AR(1) errors within groups
(``residual_ar1``) make each cross-product of a group a weighted sum of components
(:mod:`dlmm.objective.residual_structure`). The one pass forms every component of
every group and keeps them apart (:mod:`dlmm.kernels.residual_blocks`), still reading
each row once:

* a variance per stratum only: each chunk's rows split by stratum, each part summed
  as the grouped engine sums a chunk (:func:`.grouped.chunk_crossproducts`: the fused
  loop where the model is made of plain columns);
* with AR(1): each chunk's design rows sorted by (group, time); pairs of consecutive
  rows of a group within the chunk are summed there. The rows at the ends of each
  group's runs in a chunk ("loose" rows: a handful per group and chunk where the
  data are written group by group) travel with the group's sums to its block, where
  runs from different chunks are joined into pairs and the first and last rows of
  each group are found. Times must be consecutive integers within a group.

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
from ..kernels.block import KeyedCrossProducts, combine_keyed
from ..kernels.crossprod import GroupCrossProducts, _sum_by_key
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
from .fused import group_runs
from .grouped import (
    GroupedStatistics,
    chunk_crossproducts,
    label_parts,
    split_by_hash,
    whole_group_blocks,
)

#: A component of a chunk: ``(kind, s, t)`` with the chunk's own stratum codes.
Key = tuple


@dataclass(eq=False)
class LooseRows:
    """Rows at the ends of a chunk's runs of consecutive times (AR(1)), to be joined
    with other chunks' runs in the group's block."""

    labels: np.ndarray
    t: np.ndarray
    s: np.ndarray
    head: np.ndarray
    tail: np.ndarray
    z: np.ndarray
    xy: np.ndarray

    def select(self, keep: np.ndarray) -> LooseRows:
        return LooseRows(*(a[keep] for a in (self.labels, self.t, self.s, self.head,
                                             self.tail, self.z, self.xy)))


@dataclass(eq=False)
class ComponentChunk:
    """What the one pass keeps of a chunk: each component's keyed per-group sums, its
    ``K_k``, the rows of each stratum, the row totals and, with AR(1), loose rows."""

    levels: list
    parts: dict
    k: dict
    rows: dict
    totals: RowTotals
    n_missing: int = 0
    loose: LooseRows | None = None


def _keyed(labels, n, zz, zr) -> KeyedCrossProducts:
    q, r = zr.shape[1], zr.shape[2]
    empty = np.zeros(0, dtype=np.int64)
    return KeyedCrossProducts(labels, GroupCrossProducts(
        np.asarray(n, dtype=float), zz, zr, empty, empty, np.zeros((0, q)), np.zeros((0, r)),
        empty, empty, empty, np.zeros(0)))


def _by_key(keys: np.ndarray, zz: np.ndarray, zr: np.ndarray):
    """Sums of per-row ``zz`` (m, q, q) and ``zr`` (m, q, r) over equal keys."""
    m, q, r = zr.shape
    uniq, sums = _sum_by_key(keys, np.concatenate([zz.reshape(m, -1), zr.reshape(m, -1),
                                                   np.ones((m, 1))], axis=1))
    return (uniq, sums[:, : q * q].reshape(-1, q, q), sums[:, q * q: q * q + q * r]
            .reshape(-1, q, r), sums[:, -1])


def residual_chunk(frame: pd.DataFrame, spec) -> ComponentChunk:
    """A chunk's components (see the module docstring)."""
    residual = spec.residual
    if residual.ar1 is not None:
        return _ar1_chunk(frame, spec)
    codes, levels = pd.factorize(frame[residual.strata], sort=True)
    results = [chunk_crossproducts(frame[codes == k], spec) for k in range(len(levels))]
    return ComponentChunk(
        [_plain(v) for v in levels],
        {("lag0", s, s): r.keyed for s, r in enumerate(results)},
        {("lag0", s, s): r.totals.xy_cross for s, r in enumerate(results)},
        {s: r.totals.n_rows for s, r in enumerate(results)},
        ordered_sum([r.totals for r in results]) if results else None,
        int((codes < 0).sum()))


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def _times(values: pd.Series, column: str) -> np.ndarray:
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        raise InputError(f"residual_ar1 time column {column!r} is not numeric (dtype "
                         f"{values.dtype}): AR(1) needs times that are consecutive integers "
                         "within each group")
    t = values.to_numpy(dtype=float)
    bad = t != np.round(t)
    if bad.any():
        raise InputError(
            f"residual_ar1 time column {column!r} has a value that is not an integer "
            f"({t[bad][0]!r}): AR(1) needs times that are consecutive integers within each "
            "group (for unequal spacing, nlme's corCAR1, a continuous-time AR(1), would be "
            "needed; dlmm does not fit it)")
    return t.astype(np.int64)


def _kept(frame: pd.DataFrame, column: str, kept: np.ndarray, every: bool) -> pd.Series:
    return frame[column] if every else frame[column][kept]


def _ar1_chunk(frame: pd.DataFrame, spec) -> ComponentChunk:
    from ..kernels.residual_loops import time_order

    residual = spec.residual
    design = spec.design(frame)
    every = bool(design.kept.all())
    t = _times(_kept(frame, residual.ar1, design.kept, every), residual.ar1)
    if residual.strata is not None:
        s, levels = pd.factorize(_kept(frame, residual.strata, design.kept, every), sort=True)
        levels = [_plain(v) for v in levels]
    else:
        s, levels = np.zeros(t.shape[0], dtype=np.int64), [None]
    n_rows = t.shape[0]
    labels, seg_start, seg_code, _ = group_runs(design.groups, np.zeros(n_rows, dtype=bool),
                                                n_rows)
    g = np.repeat(seg_code, np.diff(seg_start))
    labels = np.asarray(labels, dtype=object if np.asarray(labels).dtype.kind in "UO"
                        else None)
    z, xy = design.z, design.xy
    sw = np.ones(n_rows) if design.weights is None else np.sqrt(design.weights)
    s = s.astype(np.int64)
    ordered, repeat = time_order(g, t)
    if not ordered:
        order = np.lexsort((t, g))  # data not written group by group in time order
        g, t, s, z, xy, sw = g[order], t[order], s[order], z[order], xy[order], sw[order]
        repeat = time_order(g, t)[1]
    if repeat >= 0:
        raise InputError(f"residual_ar1: group {labels[g[repeat]]!r} has two rows at time "
                         f"{t[repeat]} in column {residual.ar1!r}")
    parts, k, rows, pair = _ar1_sums(g, t, s, z, xy, sw, spec.centering, labels, len(levels))
    head = np.concatenate([[True], ~pair])[:n_rows]
    tail = np.concatenate([~pair, [True]])[:n_rows]
    loose = np.flatnonzero(head | tail)
    centering = spec.centering
    xy_loose, z_loose = centering.apply(xy[loose], z[loose])
    lag0 = [k[key] for key in k if key[0] == "lag0"]
    z_cross = sum(parts[key].cp.zz.sum(axis=0) for key in parts if key[0] == "lag0")
    totals = RowTotals(
        xy_cross=sum(lag0) if lag0 else np.zeros((xy.shape[1], xy.shape[1])),
        n_rows=float(n_rows), n_dropped=float(design.n_dropped),
        missing_by_column=design.missing_by_column,
        infinite_by_column=design.infinite_by_column,
        z_cross=z_cross if lag0 else np.zeros((z.shape[1], z.shape[1])),
        log_weights=design.log_weights, bad_weights=float(design.bad_weights))
    return ComponentChunk(levels, parts, k, rows, totals, 0, LooseRows(
        labels[g[loose]], t[loose], s[loose], head[loose], tail[loose],
        z_loose * sw[loose, None], xy_loose * sw[loose, None]))


def _ar1_sums(g, t, s, z, xy, sw, centering, labels, n_levels: int) -> tuple:
    """The ``lag0`` and ``lag1`` components of a chunk sorted by (group, time), its rows
    centred and weighted as they are read, by one compiled loop
    (:func:`dlmm.kernels.residual_loops.ar1_sums_loop`): the parts, the ``K`` parts and
    the rows of each stratum, keyed by the chunk's stratum codes, and which rows pair
    with the next."""
    from ..kernels.residual_loops import ar1_sums_loop

    keys = [("lag0", a, a) for a in range(n_levels)]
    lag1_of = np.zeros((n_levels, n_levels), dtype=np.int64)
    for a in range(n_levels):
        for b in range(a, n_levels):
            lag1_of[a, b] = lag1_of[b, a] = len(keys)
            keys.append(("lag1", a, b))
    q, r = z.shape[1], xy.shape[1]
    n_groups = labels.shape[0]
    gz = np.zeros((len(keys), n_groups, q, q))
    hz = np.zeros((len(keys), n_groups, q, r))
    n = np.zeros((len(keys), n_groups))
    kk = np.zeros((len(keys), r, r))
    pair = np.zeros(max(t.shape[0] - 1, 0), dtype=bool)
    shifts = tuple(np.asarray(x, dtype=float) for x in (
        centering.z_shift, centering.z_scale, centering.xy_shift, centering.xy_scale))
    ar1_sums_loop(g.astype(np.int64), t, s, np.ascontiguousarray(z, dtype=float),
                  np.ascontiguousarray(xy, dtype=float), shifts, sw, lag1_of, gz, hz, n, kk,
                  pair)
    kk = np.triu(kk) + np.swapaxes(np.triu(kk, 1), 1, 2)  # the loop sums the upper half
    parts, k, rows = {}, {}, {}
    for c, key in enumerate(keys):  # a handful of components
        present = n[c] > 0
        if not present.any():
            continue
        parts[key] = _keyed(labels[present], n[c][present], gz[c][present], hz[c][present])
        k[key] = kk[c]
        if key[0] == "lag0":
            rows[key[1]] = float(n[c].sum())
    return parts, k, rows, pair


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
    by_comp = []
    for stratum in parts:
        if not stratum:
            by_comp.append(None)
            continue
        keyed = combine_keyed(stratum, 1)
        by_comp.append((keyed.labels, keyed.cp.zz, keyed.cp.zr, keyed.cp.n))
    present = [p for p in by_comp[: structure.n_strata] if p is not None]
    if not present:
        block = ComponentBlock(np.zeros(0), np.zeros(0), np.zeros((n_comp, 0, 0, 0)),
                               np.zeros((n_comp, 0, 0, 0)))
        block.k_extra = k_extra
        return block
    labels = np.unique(np.concatenate([p[0] for p in present]))
    n = np.zeros(labels.shape[0])
    for p in present:
        n[np.searchsorted(labels, p[0])] += p[3]
    if loose:
        lag1 = np.zeros(labels.shape[0])
        for p in by_comp[2 * structure.n_strata:]:
            if p is not None:
                lag1[np.searchsorted(labels, p[0])] += p[3]
        bad = np.flatnonzero(lag1 != n - 1)
        if bad.size:
            raise InputError(f"residual_ar1: the times of group {labels[bad[0]]!r} are not "
                             "consecutive integers, each once (AR(1) needs them)")
    block = component_block(labels, n, [None if p is None else p[:3] for p in by_comp])
    block.k_extra = k_extra
    return block


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
        (self.root if self.root is not None else self).evaluations += 1
        c, jac = self.structure.coefficients(self.phi)
        return self._pieces(component_pieces, chol_re, sd_vc, c,
                            np.ascontiguousarray(jac.T))[0]

    def _pieces(self, func, chol_re, sd_vc, c, dirs, *more) -> tuple:
        """``(value pieces, what func's sum is)``: ``func`` mapped over the blocks and
        summed; of its value pieces (itself, or its ``value``) ``∂K`` along ``dirs``
        subtracted from ``t_res`` and ``log|R|`` with ``Σ log w`` from ``logdet``."""
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
        return NewtonPieces(value, HessianPieces(value.hmh, raw.trace2, d1, raw.d2))

    def moment_pieces(self, coef: np.ndarray) -> MomentPieces:
        c = self.structure.coefficients(self.phi)[0]
        return self.backend.map_sum(component_moments, self.blocks, coef, c)

    def drop_fixed_columns(self, keep_xy: np.ndarray) -> None:
        keep_xy = np.asarray(keep_xy, dtype=bool)
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
