"""Fitted values and predictions, chunk by chunk.

``X beta`` plus, for rows of groups seen in the fit, the predicted random
effects ``Z b_g + W v_g`` (:class:`dlmm.results.effects.EffectsLookup`).
The same function runs in process on a pandas frame and on every partition
of a Dask frame; the predicted effects of every group go to each worker once.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..spec.crossed import component_only_columns
from .effects import EffectsLookup


def admit_unseen_levels(frame: pd.DataFrame, spec) -> tuple[pd.DataFrame, dict[int, np.ndarray]]:
    """New data whose component-only factors (:func:`~dlmm.spec.crossed.component_only_columns`)
    have levels the fit never saw: those values replaced by a learned level, so that
    the design can be built, and, per component, the rows whose effect is then zero.
    (An unseen level of a fixed-effects factor is still refused by the design.)"""
    unseen: dict[int, np.ndarray] = {}
    replaced = {}
    for column, components in component_only_columns(spec).items():
        if column not in frame.columns:
            continue
        values = frame[column]
        mask = (values.notna() & ~values.isin(spec.levels[column])).to_numpy()
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
    effect (zero), as an unseen group does.
    """
    unseen: dict[int, np.ndarray] = {}
    if not fitted:
        frame, unseen = admit_unseen_levels(frame, spec)
    design = spec.design(frame, response=fitted)
    k = fe_params.shape[0]
    values = design.xy[:, :k] @ fe_params
    if lookup is not None:
        design = _without_unseen(design, unseen, spec.slot_component)
        values = values + lookup.contribution(design)
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
    fe = result.fe_params.to_numpy()

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


def predict_fitted_rows(result, statistics, random_effects: bool):
    """Predictions for every row of the fitted data (NaN where a value is missing)."""
    return _predictions(result, statistics.map_rows, random_effects, False)


def predict_new_data(result, exog, random_effects: bool, client=None):
    """Predictions for new data: a pandas frame, a Dask frame or Parquet path(s)."""
    from ..distributed.sources import open_backend

    spec = result.model.spec
    backend = open_backend(exog, client)
    spec.check_prediction_columns(backend.columns, random_effects)
    backend = backend.select([c for c in spec.columns if c in backend.columns])
    return _predictions(result, backend.map_frame, random_effects, False)
