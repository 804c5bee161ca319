"""``result.save`` and ``dlmm.load_result``: a result to its folder and back.

The folder is the one :mod:`dlmm.io.result_folder` defines, the same that
``dlmm fit -o`` writes: JSON for estimates and metadata, Parquet for the
random effects, never pickle. A loaded result is rebuilt from the ``state``
section of ``result.json`` and the effects tables: it has every estimate bit
for bit, prints its summary, gives its random effects and predicts.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..exceptions import InputError
from .result_folder import RANDOM_EFFECTS_FILE, VC_EFFECTS_FILE, read_result, write_outputs


def _floats(values) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in np.ravel(values)], dtype=float)


def _matrix(values, k: int) -> np.ndarray:
    return _floats(values).reshape(k, k) if k else np.zeros((0, 0))


class LoadedModel:
    """What a loaded result keeps of its model: the specification."""

    def __init__(self, spec):
        self.spec = spec


def save_result(result, path: str | os.PathLike) -> None:
    """Write ``result`` to the folder ``path`` (created; must not exist or be empty)."""
    path = Path(path)
    if path.exists() and any(path.iterdir()):
        raise InputError(f"output folder {str(path)!r} exists and is not empty")
    if path.exists():
        path.rmdir()  # empty (checked above): the writer refuses existing folders
    write_outputs(result, path)


def load_result(path: str | os.PathLike):
    """Read a result folder written by :meth:`MixedLMResults.save` or ``dlmm fit -o``."""
    from ..results.effects import EffectNames, LoadedEffects
    from ..results.estimates import Estimates, FitFacts, Inference
    from ..results.results import MixedLMResults
    from ..spec.formula import FormulaSpec

    path = Path(path)
    if not (path / "result.json").exists():
        raise InputError(f"{str(path)!r} holds no dlmm result (no result.json)")
    doc = read_result(path)
    state = doc.get("state")
    if not isinstance(state, dict):
        raise InputError(f"{str(path / 'result.json')!r} is not a dlmm result file "
                         "(no state section)")
    names = state["names"]
    est = state["estimates"]
    spec_state = state["spec"]
    spec = FormulaSpec.from_dict(spec_state) if spec_state["kind"] == "formula" else None

    k_re = len(names["exog_re_names"])
    estimates = Estimates(
        exog_names=names["exog_names"], exog_re_names=names["exog_re_names"],
        vc_names=names["vc_names"], fe_params=_floats(est["fe_params"]),
        cov_re_unscaled=_matrix(est["cov_re_unscaled"], k_re),
        vcomp_unscaled=_floats(est["vcomp_unscaled"]), scale=est["scale"], llf=est["llf"],
        reml=est["reml"],
    )
    k = len(estimates.param_names)
    inference = Inference(
        hessian=_matrix(state["hessian"], k), cov_params=_matrix(state["cov_params"], k),
        freepat=None if state["freepat"] is None else _floats(state["freepat"]),
    )
    fit = state["fit"]
    facts = FitFacts(
        group_name=names["group_name"], endog_name=names["endog_name"], nobs=fit["nobs"],
        n_groups=fit["n_groups"], n_dropped=fit["n_dropped"],
        group_size_min=float(fit["group_size_min"]),
        group_size_max=float(fit["group_size_max"]), converged=fit["converged"],
        mle_retvals=fit["mle_retvals"], timings=fit["timings"], backend=fit["backend"],
    )
    files = doc.get("files", [])
    re_table = pd.read_parquet(path / RANDOM_EFFECTS_FILE)
    vc_table = pd.read_parquet(path / VC_EFFECTS_FILE) if VC_EFFECTS_FILE in files else None
    columns = [list(c) for c in names["vc_column_names"]]
    effect_names = EffectNames(
        group_name=names["group_name"], exog_re_names=list(names["exog_re_names"]),
        vc_names=list(names["vc_names"]), slot_names=[n for cols in columns for n in cols],
        slot_component=np.repeat(np.arange(len(columns)), [len(c) for c in columns]
                                 ).astype(np.int64),
    )
    effects = LoadedEffects(re_table, vc_table, effect_names)
    return MixedLMResults(LoadedModel(spec), estimates, inference, facts, effects)
