"""A model made of plain columns, read as columns: no design matrix per chunk.

Most models of large data name their columns as they are: ``y ~ x1 + x2``, random
effects ``~x1``, variance components ``0 + C(school)``. Their design needs no
formulaic at all: column ``a`` of ``[X y]`` is a data column (or the intercept, 1),
and a component's column is the indicator of a learned level. :func:`plain_layout`
says, from a learned :class:`~dlmm.spec.formula.FormulaSpec`, whether its model is of
that form, and which data column feeds each design column; :func:`chunk_columns`
takes a chunk's columns as float64 arrays (pandas' own, no copy) with what the
formula path would count of their missing and infinite values, for the fused one
pass (:func:`dlmm.kernels.crossprod.fused_crossproducts`), which forms the
cross-products without forming the design.

The learned specification decides everything (which columns, the levels, the
centring); a chunk whose columns are not plain numbers (a nullable integer, text in
a numeric term) is left to the formula path, which gives the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .indicators import IndicatorSpec


@dataclass(frozen=True, eq=False)
class PlainLayout:
    """Which data column feeds each design column of a plain model.

    Attributes
    ----------
    sources : tuple of str
        The numeric data columns read as values, each once.
    xy_src : ndarray of int (p + 1,)
        Source of each column of ``[X y]`` (index into ``sources``; -1: intercept).
    z_src : ndarray of int (k_re,)
        Source of each column of ``Z``.
    group : str or None
        The group column (None: every row in one group).
    factors : tuple of (str, pandas.Index)
        Each variance component's factor column and learned levels, in order.
    offsets : ndarray of int (K,)
        Global slot of each component's first column.
    n_slots : int
    columns : tuple of str
        The model's data columns, the order of the missing and infinite counts.
    names : list of str
        Names of the columns of ``[X y]`` then ``Z``, for errors.
    weights_src : int
        Source of the precision weights (:mod:`dlmm.spec.residual`), -1 for none.
    """

    sources: tuple[str, ...]
    xy_src: np.ndarray
    z_src: np.ndarray
    group: str | None
    factors: tuple[tuple[str, pd.Index], ...]
    offsets: np.ndarray
    n_slots: int
    columns: tuple[str, ...]
    names: list[str]
    weights_src: int = -1


def plain_layout(spec) -> PlainLayout | None:
    """The :class:`PlainLayout` of a learned formula specification whose design is
    made only of plain numeric columns, intercepts and indicator components; None for
    any other (a transform, a factor in ``X`` or ``Z``, an interaction, a component
    formula other than ``0 + C(f)``, a specification not from formulas)."""
    plain = getattr(spec, "_plain", None)
    if plain is None or not getattr(spec, "_learned", False):
        return None
    lhs, rhs, re_cols = plain
    if lhs is None or rhs is None or len(lhs) != 1 or lhs[0] is None:
        return None
    if spec._re_spec is not None:
        if re_cols is None:
            return None
        z_cols = list(re_cols)
    else:
        z_cols = [None] if spec._re_intercept_only else []
    if not all(isinstance(s, IndicatorSpec) for s in spec._vc_specs):
        return None
    x_cols = list(rhs)
    if spec._fe_keep is not None:
        x_cols = [c for c, keep in zip(x_cols, spec._fe_keep) if keep]
    xy_cols = x_cols + [lhs[0]]
    weights = getattr(getattr(spec, "residual", None), "weights", None)
    sources = tuple(dict.fromkeys(c for c in xy_cols + z_cols + [weights] if c is not None))
    factors = tuple((s.factor, s.levels) for s in spec._vc_specs)
    residual = getattr(spec, "residual", None)
    # the stratum column is split off before the pass (residual_by); the AR(1) time
    # column is read by the AR(1) pass (dlmm.structure.residual_columns)
    own = {c for c in (getattr(residual, "strata", None), getattr(residual, "ar1", None))
           if c is not None}
    roles = set(sources) | {f for f, _ in factors} | (
        {spec.groups} if spec.groups is not None else set()) | own
    if any(c not in roles for c in spec.columns):
        return None
    where = {c: j for j, c in enumerate(sources)}
    widths = [len(levels) for _, levels in factors]
    return PlainLayout(
        sources=sources,
        xy_src=np.array([-1 if c is None else where[c] for c in xy_cols], dtype=np.int64),
        z_src=np.array([-1 if c is None else where[c] for c in z_cols], dtype=np.int64),
        group=spec.groups,
        factors=factors,
        offsets=np.cumsum([0] + widths[:-1]).astype(np.int64),
        n_slots=int(sum(widths)),
        columns=tuple(spec.columns),
        names=list(spec.exog_names) + [spec.response] + list(spec.exog_re_names),
        weights_src=-1 if weights is None else where[weights],
    )


@dataclass(eq=False)
class ChunkColumns:
    """A chunk's columns as the fused pass reads them.

    Attributes
    ----------
    values : tuple of ndarray (n,)
        The sources, float64 (NaN where missing); pandas' own arrays where they are
        float64 already.
    groups : ndarray (n,) or None
        The group labels as the formula path reads them (``to_numpy()``).
    group_bad : ndarray of bool (n,) or None
        Rows whose label is missing or infinite (left out).
    vc_codes : ndarray of int (K, n)
        Each component's level code per row; -1 a level the fit did not learn (a row
        of zeros), -2 missing or infinite (the row is left out).
    missing, infinite : ndarray (len(columns),)
        Counts of the columns that are not sources (the group and factor columns);
        zero for the sources, which the pass counts.
    """

    values: tuple[np.ndarray, ...]
    groups: np.ndarray | None
    group_bad: np.ndarray | None
    vc_codes: np.ndarray
    missing: np.ndarray
    infinite: np.ndarray


def _is_plain_number(kind) -> bool:
    return isinstance(kind, np.dtype) and kind.kind in "iuf"


def chunk_columns(frame: pd.DataFrame, layout: PlainLayout) -> ChunkColumns | None:
    """The chunk's columns for the fused pass, or None when a source column is not a
    plain NumPy number (a nullable or Arrow-backed type): the formula path then reads
    the chunk."""
    kinds = [frame[c].dtype for c in layout.sources]
    if not all(_is_plain_number(k) for k in kinds):
        return None
    values = tuple(np.ascontiguousarray(frame[c].to_numpy(), dtype=np.float64)
                   for c in layout.sources)
    n = len(frame)
    missing = np.zeros(len(layout.columns))
    infinite = np.zeros(len(layout.columns))
    counted = set(layout.sources)

    def bad_rows(column: str) -> np.ndarray:
        """Rows where ``column`` is missing or infinite (counted once per column)."""
        series = frame[column]
        if isinstance(series.dtype, np.dtype) and series.dtype.kind in "iub":
            # plain NumPy integers hold neither: no row, nothing counted (no pass)
            counted.add(column)
            return np.zeros(n, dtype=bool)
        na = series.isna().to_numpy()
        inf = np.zeros(n, dtype=bool)
        if pd.api.types.is_float_dtype(series):
            inf = np.isinf(series.to_numpy(dtype=float, na_value=np.nan))
        if column not in counted:
            j = layout.columns.index(column)
            missing[j], infinite[j] = na.sum(), inf.sum()
            counted.add(column)
        return na | inf

    vc_codes = np.zeros((len(layout.factors), n), dtype=np.int64)
    for q, (column, levels) in enumerate(layout.factors):
        series = frame[column]
        if isinstance(series.dtype, pd.CategoricalDtype):
            series = series.astype(object)
        vc_codes[q] = levels.get_indexer(series).astype(np.int64)
        vc_codes[q][bad_rows(column)] = -2
    groups = group_bad = None
    if layout.group is not None:
        groups = frame[layout.group].to_numpy()
        group_bad = bad_rows(layout.group)
    return ChunkColumns(values, groups, group_bad, vc_codes, missing, infinite)
