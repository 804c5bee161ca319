"""Fitted values and predictions, chunk by chunk.

``X beta`` plus, for rows of groups seen in the fit, the predicted random
effects ``Z b_g + W v_g`` (:class:`dlmm.random_effects.EffectsLookup`).
The same function runs in process on a pandas frame and on every partition
of a Dask frame.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .random_effects import EffectsLookup


def predict_chunk(frame: pd.DataFrame, spec, fe_params: np.ndarray,
                  lookup: EffectsLookup | None, fitted: bool) -> pd.Series:
    """Predictions for a chunk.

    With ``fitted=True`` (the fitted data) only the rows used in the fit are
    returned; otherwise every row, NaN where a model column is missing.
    """
    design = spec.design(frame, response=fitted)
    k = fe_params.shape[0]
    values = design.xy[:, :k] @ fe_params
    if lookup is not None:
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
