"""Save and load fit results: JSON for estimates and metadata, Parquet for effects.

Never pickle: a saved result is a folder with

* ``result.json``: format name and version, the model specification (formulas
  and learned levels), estimates, ``cov_params``, the Hessian, fit facts and
  the optimizer's report;
* ``random_effects.parquet``: one row per group (the standard random effects);
* ``vc_effects.parquet``: one row per variance-component effect (if any).

Floats are written with Python's shortest round-trip representation, so a
loaded result has every estimate bit for bit; non-finite values are ``null``.
A loaded result prints its summary, gives its random effects and predicts.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..exceptions import InputError
from .folders import staged_folder
from .jsonable import jsonable

FORMAT = "dlmm.result"
VERSION = 1


def _floats(values) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in np.ravel(values)], dtype=float)


def _matrix(values, k: int) -> np.ndarray:
    return _floats(values).reshape(k, k) if k else np.zeros((0, 0))


class _LoadedModel:
    """What a loaded result keeps of its model: the specification."""

    def __init__(self, spec):
        self.spec = spec


def save_result(result, path) -> None:
    """Write ``result`` to the folder ``path`` (created; must not exist or be empty)."""
    path = Path(path)
    if path.exists() and any(path.iterdir()):
        raise InputError(f"output folder {str(path)!r} exists and is not empty")
    spec = result.model.spec
    spec_state = spec.to_dict() if hasattr(spec, "to_dict") else {
        "kind": "arrays", "columns": [], "levels": {}, "stateful": False}
    state = {
        "format": FORMAT,
        "version": VERSION,
        "dlmm_version": _version(),
        "spec": spec_state,
        "names": {
            "exog_names": result.exog_names, "exog_re_names": result.exog_re_names,
            "vc_names": result.vc_names, "group_name": result.group_name,
            "endog_name": result.endog_name,
            "vc_column_names": [list(c) for c in getattr(spec, "vc_column_names", [])],
        },
        "estimates": {
            "fe_params": result.fe_params.to_numpy(),
            "cov_re_unscaled": result.cov_re_unscaled,
            "vcomp_unscaled": np.asarray(result.params.to_numpy()[result.k_fe + result.k_re2:]),
            "scale": result.scale, "llf": result.llf, "reml": result.reml,
        },
        "cov_params": result._cov,
        "hessian": result.hessian,
        "freepat": result.freepat,
        "fit": {
            "nobs": result.nobs, "n_groups": result.n_groups, "n_dropped": result.n_dropped,
            "group_size_min": result.group_size_min, "group_size_max": result.group_size_max,
            "converged": result.converged, "mle_retvals": result.mle_retvals,
            "timings": result.timings, "backend": result.backend,
        },
        "files": {"random_effects": "random_effects.parquet"},
    }
    if path.exists():
        path.rmdir()  # empty (checked above): staged_folder refuses existing folders
    with staged_folder(path) as tmp:
        _to_pandas(result.random_effects_table()).to_parquet(tmp / "random_effects.parquet")
        if result.k_vc:
            _to_pandas(result.vc_effects_table()).to_parquet(tmp / "vc_effects.parquet",
                                                             index=False)
            state["files"]["vc_effects"] = "vc_effects.parquet"
        with open(tmp / "result.json", "w", encoding="utf-8") as handle:
            json.dump(jsonable(state), handle, indent=1, allow_nan=False)


def _to_pandas(frame):
    return frame.compute() if hasattr(frame, "compute") else frame


def _version() -> str:
    from .. import __version__

    return __version__


def load_result(path):
    """Read a result written by :meth:`MixedLMResults.save`."""
    from ..results.effects import EffectNames, LoadedEffects
    from ..results.estimates import Estimates, FitFacts, Inference
    from ..results.results import MixedLMResults
    from ..spec.formula import FormulaSpec

    path = Path(path)
    file = path / "result.json"
    if not file.exists():
        raise InputError(f"{str(path)!r} holds no dlmm result (no result.json)")
    with open(file, encoding="utf-8") as handle:
        state = json.load(handle)
    if state.get("format") != FORMAT:
        raise InputError(f"{str(file)!r} is not a dlmm result file")
    if state.get("version") != VERSION:
        raise InputError(f"{str(file)!r} has format version {state.get('version')}; "
                         f"this dlmm reads version {VERSION}")
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
    re_table = pd.read_parquet(path / state["files"]["random_effects"])
    vc_table = None
    if "vc_effects" in state["files"]:
        vc_table = pd.read_parquet(path / state["files"]["vc_effects"])
    columns = [list(c) for c in names["vc_column_names"]]
    effect_names = EffectNames(
        group_name=names["group_name"], exog_re_names=list(names["exog_re_names"]),
        vc_names=list(names["vc_names"]), slot_names=[n for cols in columns for n in cols],
        slot_component=np.repeat(np.arange(len(columns)), [len(c) for c in columns]
                                 ).astype(np.int64),
    )
    effects = LoadedEffects(re_table, vc_table, effect_names)
    return MixedLMResults(_LoadedModel(spec), estimates, inference, facts, effects)
