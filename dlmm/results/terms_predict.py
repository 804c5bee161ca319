"""Predictions of a fit of random-effects terms (lme4's ``predict``), chunk by chunk.

For a row, ``X beta`` plus, for every grouping factor, ``z_f' b_f`` where ``z_f``
are the row's columns of the factor's terms and ``b_f`` the conditional modes of the
row's level of that factor (lme4's ``ranef``, :attr:`TermsResults.random_effects`).
A level the fit never saw, or a missing grouping value, gets no effect for that
factor: lme4's ``predict(m, newdata, allow.new.levels = TRUE)`` (a new child in a
known school gets the school's effect). ``random_effects=False`` is lme4's
``re.form = NA``, the fixed part alone.

The learned specification (:class:`~dlmm.spec.terms_spec.TermsSpec`) makes every
chunk's design as the fit's pass did, so the same function runs in process on a
pandas frame and on every partition of a Dask frame (``map_partitions``); the
conditional modes go to each worker once. A row's level of a factor is found by
its label, the factor's values joined by ``:`` in lme4's order (``g01:h1``), the
labels of ``random_effects``: a loaded result, which has only those tables,
predicts the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..exceptions import InputError
from ..spec.formula import FormulaSpec
from .prediction import levels_by_value


@dataclass(frozen=True)
class FactorEffects:
    """One grouping factor's conditional modes, as a prediction reads them.

    Attributes
    ----------
    name : str
        lme4's name of the factor (the key of ``random_effects``).
    columns : tuple of str
        The factor's data columns, in the order its labels join them.
    terms : tuple of int
        The specification's terms on this factor, in the order of ``modes``' columns.
    labels : pandas.Index
        The levels' labels.
    modes : ndarray (levels, q)
    """

    name: str
    columns: tuple
    terms: tuple
    labels: pd.Index
    modes: np.ndarray


def label_columns(name: str, factor) -> list[str]:
    """The columns of ``factor`` in the order lme4's ``name`` writes them (``g:h``),
    which is the order its level labels join their values."""
    order = [c for c in str(name).split(":") if c in factor]
    return order if sorted(order) == sorted(factor) else list(factor)


@dataclass(frozen=True)
class TermsLookup:
    """Every grouping factor's :class:`FactorEffects` (one object: sent to each worker
    once, as a whole)."""

    factors: tuple


def effects_lookup(result) -> TermsLookup:
    """Each grouping factor's conditional modes, from ``result.random_effects``."""
    model = result.model
    layout, spec = model.engine_layout, model.spec
    effects = result.random_effects
    out = []
    for level, factor in enumerate(layout.levels):
        terms = sorted((k for k, lv in enumerate(layout.term_level) if lv == level),
                       key=lambda k: layout.term_columns[k].start)
        if not terms:
            continue
        name = spec.terms[terms[0]].name
        frame = effects[name]
        width = sum(len(layout.columns[k]) for k in terms)
        if frame.shape[1] != width:
            raise InputError(f"the random effects of {name!r} have {frame.shape[1]} columns; "
                             f"its terms have {width}")
        out.append(FactorEffects(name, tuple(label_columns(name, factor)), tuple(terms),
                                 pd.Index(frame.index.astype(str)),
                                 frame.to_numpy(dtype=float)))
    return TermsLookup(tuple(out))


def _row_levels(codes: dict[str, np.ndarray], spec, factor: FactorEffects) -> np.ndarray:
    """Each row's position among ``factor``'s levels, -1 for a level the fit never saw
    (or a missing value in one of its columns)."""
    parts = [codes[c] for c in factor.columns]
    n = parts[0].shape[0]
    known = np.ones(n, dtype=bool)
    for p in parts:
        known &= p >= 0
    out = np.full(n, -1, dtype=np.int64)
    if not known.any():
        return out
    stacked = np.column_stack([p[known] for p in parts])
    combos, inverse = np.unique(stacked, axis=0, return_inverse=True)
    values = [np.asarray(spec.levels[c], dtype=object) for c in factor.columns]
    labels = [":".join(str(values[j][code]) for j, code in enumerate(row)) for row in combos]
    out[known] = factor.labels.get_indexer(labels)[np.ravel(inverse)]
    return out


def predict_chunk(frame: pd.DataFrame, spec, fe: np.ndarray, lookup: TermsLookup | None,
                  fitted: bool) -> pd.Series:
    """Predictions for a chunk (see the module docstring).

    With ``fitted=True`` (the fitted data) the rows used in the fit, indexed like
    them; otherwise every row, NaN where a column of the fixed part or of a term is
    missing (a missing grouping value gives that factor no effect).
    """
    if fitted:
        design = spec.design(frame)
        kept_frame = frame
    else:
        frame = levels_by_value(frame, spec)
        # Grouping columns that nothing else reads: a seen level for the fixed design
        # (an unseen or missing one only means no effect of its factor).
        only = [c for c in grouping_only_columns(spec) if c in frame.columns
                and spec.levels.get(c)]
        filled = frame.assign(**{c: spec.levels[c][0] for c in only}) if only else frame
        design = spec.design(filled, response=False)
        kept_frame = frame
    values = design.xy[:, : fe.shape[0]] @ fe
    if lookup is not None and lookup.factors:
        codes, columns = spec.term_rows(kept_frame, design.kept)
        for factor in lookup.factors:
            at = _row_levels(codes, spec, factor)
            seen = at >= 0
            if not seen.any():
                continue
            z = np.hstack([columns[k] for k in factor.terms])
            values[seen] += np.einsum("rq,rq->r", z[seen], factor.modes[at[seen]])
    if fitted:
        return pd.Series(values, index=frame.index[design.kept], name="fitted")
    out = np.full(len(frame), np.nan)
    out[design.kept] = values
    return pd.Series(out, index=frame.index, name="predicted")


def grouping_only_columns(spec) -> list[str]:
    """The grouping columns that neither the fixed part nor a term's design reads."""
    read = set(FormulaSpec.required_columns(spec, spec.columns))
    return [c for c in spec.grouping_columns if c not in read]


def _check_columns(spec, available, random_effects: bool) -> None:
    names = {str(c) for c in available}
    skip = set() if random_effects else set(grouping_only_columns(spec))
    missing = [c for c in spec.columns if c != spec.response and c not in names
               and c not in skip]
    if missing:
        more = "" if random_effects or missing[0] not in spec.grouping_columns else \
            " (it is read by a term's design too)"
        raise InputError(f"column {missing[0]!r} needed for prediction is not in the "
                         f"data{more}")


def predict(result, data=None, random_effects: bool = True, client=None):
    """``result.predict(data, random_effects)``: see
    :meth:`dlmm.results.terms_results.TermsResults.predict`."""
    spec = result.model.spec
    lookup = effects_lookup(result) if random_effects else None
    fe = result.fe_params.to_numpy(dtype=float)
    if data is None:
        stats = getattr(result.model, "_stats", None)
        if stats is None:
            raise InputError("this result has no fitted data (a loaded result): pass the "
                             "data to predict")

        def fitted(frame, lookup):
            return predict_chunk(frame, spec, fe, lookup, True)

        return stats.map_rows(fitted, pd.Series(dtype=float, name="fitted"), lookup)
    from ..distributed.sources import open_backend

    if isinstance(data, pd.Series) or isinstance(data, np.ndarray):
        raise InputError("predict needs a DataFrame (or Dask DataFrame, or Parquet path) "
                         "with the model's columns")
    backend = open_backend(data, client)
    _check_columns(spec, backend.columns, random_effects)
    wanted = [c for c in spec.columns if c in set(map(str, backend.columns))]
    if list(backend.columns) != wanted:
        backend = backend.select(wanted)

    def new(frame, lookup):
        return predict_chunk(frame, spec, fe, lookup, False)

    return backend.map_frame(new, pd.Series(dtype=float, name="predicted"), lookup)
