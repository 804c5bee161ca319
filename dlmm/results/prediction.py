"""Fitted values and predictions, chunk by chunk.

``X beta`` plus, for rows of groups seen in the fit, the predicted random
effects ``Z b_g + W v_g`` (:class:`dlmm.results.effects.EffectsLookup`).
The same function runs in process on a pandas frame and on every partition
of a Dask frame; the predicted effects of every group go to each worker once.

:func:`predict` is ``MixedLMResults.predict``: by default the fixed part
(statsmodels' meaning; ``predict()`` of in-memory data is an ndarray, as
statsmodels'), conditional predictions with ``random_effects=True``.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..exceptions import InputError
from ..spec.crossed import component_only_columns
from ..spec.formula import GROUP_VALUES_COLUMN
from .effects import EffectsLookup
from .labels import LabelMatcher, label_kind


def levels_by_value(frame: pd.DataFrame, spec) -> pd.DataFrame:
    """New data whose factor columns hold the fit's levels in the other type (text
    ``"7"`` for a level ``7``, or the reverse): those values replaced by the fit's
    levels of equal value (:mod:`dlmm.results.labels`), so that the design codes
    them as the fit did; other values are kept (unseen levels stay unseen)."""
    replaced = {}
    for column, levels in getattr(spec, "levels", {}).items():
        if column not in frame.columns or not len(levels):
            continue
        values = frame[column]
        matcher = LabelMatcher(levels, "level")
        if {matcher.kind, label_kind(values)} != {"number", "text"}:
            continue
        index = matcher.get_indexer(values.to_numpy(), column)
        found = index >= 0
        fit_levels = pd.Series(matcher.labels.take(np.maximum(index, 0)), index=values.index)
        replaced[column] = fit_levels if found.all() else \
            values.astype(object).where(~found, fit_levels.astype(object))
    return frame.assign(**replaced) if replaced else frame


def admit_unseen_levels(frame: pd.DataFrame, spec) -> tuple[pd.DataFrame, dict[int, np.ndarray]]:
    """New data whose component-only factors (:func:`~dlmm.spec.crossed.component_only_columns`)
    have levels the fit never saw, or no level (missing): those values replaced by a
    learned level, so that the design can be built, and, per component, the rows whose
    effect is then zero (lme4's ``predict(allow.new.levels = TRUE)``: a row without a
    level of a factor gets no effect of it, and the rest of its prediction). (An unseen
    level of a fixed-effects factor is still refused by the design.)"""
    unseen: dict[int, np.ndarray] = {}
    replaced = {}
    for column, components in component_only_columns(spec).items():
        if column not in frame.columns:
            continue
        values = frame[column]
        mask = (~values.isin(spec.levels[column])).to_numpy()  # unseen or missing
        if not mask.any():
            continue
        replaced[column] = values.astype(object).where(~mask, spec.levels[column][0])
        for k in components:
            unseen[k] = unseen.get(k, np.zeros(len(frame), dtype=bool)) | mask
    if replaced:
        frame = frame.assign(**replaced)
    return frame, unseen


def _without_unseen(design, unseen: dict[int, np.ndarray], slot_component: np.ndarray):
    """The design with the component columns of unseen levels zeroed (rows kept)."""
    if not unseen or design.w is None:
        return design
    w = sp.csr_array(design.w, copy=True)
    entry_row = np.repeat(np.arange(w.shape[0]), np.diff(w.indptr))
    component = np.asarray(slot_component)[w.indices]
    for k, rows in unseen.items():
        drop = rows[design.kept][entry_row] & (component == k)
        w.data[drop] = 0.0
    return replace(design, w=w)


def predict_chunk(frame: pd.DataFrame, spec, fe_params: np.ndarray,
                  lookup: EffectsLookup | None, fitted: bool) -> pd.Series:
    """Predictions for a chunk.

    With ``fitted=True`` (the fitted data) only the rows used in the fit are
    returned; otherwise every row, NaN where a model column is missing. In new
    data a level of a component-only factor that the fit never saw gets no
    effect (zero), as an unseen group does. Group labels and factor levels of
    the other type than the fit's (text ``"7"`` for ``7``) match by value.
    """
    unseen: dict[int, np.ndarray] = {}
    if not fitted:
        frame, unseen = admit_unseen_levels(levels_by_value(frame, spec), spec)
    design = spec.design(frame) if fitted else spec.design(frame, response=False)
    k = fe_params.shape[0]
    values = design.xy[:, :k] @ fe_params
    if lookup is not None:
        design = _without_unseen(design, unseen, spec.slot_component)
        values = values + lookup.contribution(design, spec.group_name)
    name = "fitted" if fitted else "predicted"
    if fitted:
        return pd.Series(values, index=frame.index[design.kept], name=name)
    out = np.full(len(frame), np.nan)
    out[design.kept] = values
    return pd.Series(out, index=frame.index, name=name)


def response_of(frame: pd.DataFrame, spec) -> pd.Series:
    """The response of the rows used in the fit."""
    design = spec.design(frame)
    return pd.Series(design.xy[:, -1], index=frame.index[design.kept], name="fitted")


def _predictions(result, map_rows, random_effects: bool, fitted: bool):
    """``predict_chunk`` over every chunk that ``map_rows(func, meta, *shared)`` maps."""
    spec = result.model.spec
    lookup = result.effects.lookup() if random_effects else None
    fe = np.asarray(result.fe_params, dtype=float)

    def run(frame, lookup):
        return predict_chunk(frame, spec, fe, lookup, fitted)

    meta = pd.Series(dtype=float, name="fitted" if fitted else "predicted")
    return map_rows(run, meta, lookup)


def fitted_values(result, statistics):
    """Fitted values of the rows used in the fit (``statistics`` maps them again)."""
    return _predictions(result, statistics.map_rows, True, True)


def responses(spec, statistics):
    """The response of the rows used in the fit."""
    return statistics.map_rows(lambda f: response_of(f, spec),
                               pd.Series(dtype=float, name="fitted"))


def predict(result, exog, random_effects: bool, client=None):
    """``result.predict(exog, random_effects)`` (see ``MixedLMResults.predict``)."""
    spec = result.model.spec
    if exog is not None and _is_design_array(exog):
        return _predict_array(result, exog, random_effects)
    if spec is None:
        raise InputError("this loaded result was fitted from arrays and cannot predict "
                         "from a data frame")
    if getattr(spec, "stateful", False) and result._stats is None:
        raise InputError("the formula uses a stateful transform (center, scale...) whose "
                         "state is not saved; refit to predict")
    if exog is None:
        stats = result._require_stats("predict()")
        out = _predictions(result, stats.map_rows, random_effects, True)
        return out if hasattr(out, "npartitions") else out.to_numpy()
    return predict_new_data(result, exog, random_effects, client)


def _is_design_array(exog) -> bool:
    """A NumPy array (or list) of fixed-effects columns, not a frame or a path."""
    return isinstance(exog, (np.ndarray, list)) and not isinstance(exog, str)


def _predict_array(result, exog, random_effects: bool) -> np.ndarray:
    """``exog @ fe_params`` for a design array (statsmodels' ``predict(exog)``)."""
    if random_effects:
        raise InputError("random_effects=True needs group labels: pass a DataFrame with the "
                         "model's columns, not an array")
    x = np.asarray(exog, dtype=float)
    x = x[:, None] if x.ndim == 1 and result.k_fe == 1 else np.atleast_2d(x)
    if x.shape[1] != result.k_fe:
        raise InputError(f"exog has {x.shape[1]} columns; the model has {result.k_fe} fixed "
                         f"effects ({', '.join(result.exog_names)})")
    return x @ np.asarray(result.fe_params, dtype=float)


def _with_group_values(exog, model, random_effects: bool):
    """New data for a fit that took its group labels as values (``groups=data["g"]``):
    the labels are the new data's column named like the Series, if it has one."""
    spec = model.spec
    if not random_effects or getattr(spec, "groups", None) != GROUP_VALUES_COLUMN:
        return exog
    columns = getattr(exog, "columns", None)
    if columns is None or GROUP_VALUES_COLUMN in columns:
        return exog
    name = getattr(model, "group_values_name", None)
    if name is not None and name in columns:
        return exog.rename(columns={name: GROUP_VALUES_COLUMN})
    named = f"a Series named {name!r}" if name is not None else "an unnamed array"
    fix = f"add a column {name!r} with them" if name is not None else \
        f"add them as column {GROUP_VALUES_COLUMN!r}"
    raise InputError(f"the fit took its group labels as values ({named}), and the new "
                     f"data have no such column: {fix}, or pass random_effects=False")


def predict_new_data(result, exog, random_effects: bool, client=None):
    """Predictions for new data: a pandas frame, a Dask frame or Parquet path(s)."""
    from ..distributed.sources import open_backend

    spec = result.model.spec
    exog = _with_group_values(exog, result.model, random_effects)
    backend = open_backend(exog, client)
    spec.check_prediction_columns(backend.columns, random_effects)
    backend = backend.select([c for c in spec.columns if c in backend.columns])
    return _predictions(result, backend.map_frame, random_effects, False)
