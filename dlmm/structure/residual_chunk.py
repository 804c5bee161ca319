"""The one pass over a chunk for a residual model of parameters: rows to components.

A variance per stratum (``residual_by``) and AR(1) errors within groups
(``residual_ar1``) make each cross-product of a group a weighted sum of components
(:mod:`dlmm.objective.residual_structure`); a chunk's rows are summed by component,
each row read once:

* a variance per stratum only: the chunk's rows split by stratum, each part summed
  as the grouped engine sums a chunk (:func:`.grouped.chunk_crossproducts`: the fused
  loop where the model is made of plain columns);
* with AR(1), a model made of plain columns: straight from the chunk's columns
  (:mod:`.residual_columns`), the same sums as below;
* with AR(1), any other model: the chunk's design rows in (group, time) order (no sort when written
  so; :func:`dlmm.kernels.residual_loops.time_order` tells), each centred and weighted
  as one compiled loop reads it (:func:`dlmm.kernels.residual_loops.ar1_sums_loop`),
  pairs of consecutive rows of a group summed there; the rows at the ends of each
  group's runs ("loose" rows) are kept for the group's block
  (:mod:`dlmm.structure.residual_pass`), where runs from different chunks are joined.

The first chunk of many groups a process reads also starts loading the compiled loops
of the steps and effects (:func:`dlmm.kernels.residual_blocks.warm_steps`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..distributed.base import ordered_sum
from ..exceptions import InputError
from ..kernels.pieces import RowTotals
from ..kernels.residual_blocks import COMPILED_MIN_GROUPS, warm_steps
from .fused import group_runs
from .grouped import chunk_crossproducts
from .residual_columns import _plain, columns_ar1_chunk, strata_codes
from .residual_parts import ComponentChunk, LooseRows, ar1_parts, component_keys


def residual_chunk(frame: pd.DataFrame, spec) -> ComponentChunk:
    """A chunk's components (see the module docstring); the first chunk of many groups
    a process reads also starts loading the compiled loops of the steps and effects
    (:func:`~dlmm.kernels.residual_blocks.warm_steps`)."""
    chunk = _ar1_chunk(frame, spec) if spec.residual.ar1 is not None \
        else _strata_chunk(frame, spec)
    lag0 = chunk.parts.get(("lag0", 0, 0))
    if lag0 is not None and lag0.labels.shape[0] >= COMPILED_MIN_GROUPS:
        warm_steps(lag0.cp.zr.shape[1], lag0.cp.zr.shape[2])
    return chunk


def _strata_chunk(frame: pd.DataFrame, spec) -> ComponentChunk:
    residual = spec.residual
    codes, levels = strata_codes(frame[residual.strata])
    results = [chunk_crossproducts(frame[codes == k], spec) for k in range(len(levels))]
    return ComponentChunk(
        levels,
        {("lag0", s, s): r.keyed for s, r in enumerate(results)},
        {("lag0", s, s): r.totals.xy_cross for s, r in enumerate(results)},
        {s: r.totals.n_rows for s, r in enumerate(results)},
        ordered_sum([r.totals for r in results]) if results else None,
        int((codes < 0).sum()))


def _times(values: pd.Series, column: str) -> np.ndarray:
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        raise InputError(f"residual_ar1 time column {column!r} is not numeric (dtype "
                         f"{values.dtype}): AR(1) needs times that are consecutive integers "
                         "within each group")
    if isinstance(values.dtype, np.dtype) and values.dtype.kind in "iu":  # integers as read
        return values.to_numpy(dtype=np.int64, copy=False)
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

    fused = columns_ar1_chunk(frame, spec)  # a plain model: from its columns
    if fused is not None:
        return fused
    residual = spec.residual
    design = spec.design(frame)
    every = bool(design.kept.all())
    t = _times(_kept(frame, residual.ar1, design.kept, every), residual.ar1)
    if residual.strata is not None:
        s, levels = strata_codes(_kept(frame, residual.strata, design.kept, every))
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
    s = s.astype(np.int64, copy=False)
    ordered, repeat = time_order(g, t)
    if not ordered:
        order = np.lexsort((t, g))  # data not written group by group in time order
        g, t, s, z, xy, sw = g[order], t[order], s[order], z[order], xy[order], sw[order]
        repeat = time_order(g, t)[1]
    if repeat >= 0:
        raise InputError(f"residual_ar1: group {_plain(labels[g[repeat]])!r} has two rows at time "
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
    from ..kernels.residual_loops import ar1_sums_loop, sizes

    keys, lag1_of = component_keys(n_levels)
    q, r = z.shape[1], xy.shape[1]
    n_groups = labels.shape[0]
    gz = np.zeros((len(keys), n_groups, q, q))
    hz = np.zeros((len(keys), n_groups, q, r))
    n = np.zeros((len(keys), n_groups))
    kk = np.zeros((len(keys), r, r))
    pair = np.zeros(max(t.shape[0] - 1, 0), dtype=bool)
    shifts = tuple(np.asarray(x, dtype=float) for x in (
        centering.z_shift, centering.z_scale, centering.xy_shift, centering.xy_scale))
    ar1_sums_loop(g.astype(np.int64, copy=False), t, s, np.ascontiguousarray(z, dtype=float),
                  np.ascontiguousarray(xy, dtype=float), shifts, sw, lag1_of, gz, hz, n, kk,
                  pair, *sizes(q, r))
    kk = np.triu(kk) + np.swapaxes(np.triu(kk, 1), 1, 2)  # the loop sums the upper half
    return (*ar1_parts(keys, labels, gz, hz, n, kk), pair)
