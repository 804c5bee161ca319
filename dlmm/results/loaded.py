"""``dlmm.load_result``: a saved result folder back as a :class:`MixedLMResults`
(a folder of ``kind`` terms: a ``TermsResults``, :mod:`dlmm.results.terms_loaded`).

Rebuilt from the ``state`` section of ``result.json`` and the effects tables
(:func:`dlmm.io.saved_result.read_saved`): it has every estimate bit for bit,
prints its summary, gives its random effects and predicts.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..io.result_folder import RESULT_FILE, open_result
from ..io.saved_result import read_saved
from ..io.store import is_url
from ..spec.crossed import crossed_layout
from ..spec.formula import FormulaSpec
from .effects import EffectNames, LoadedEffects
from .estimates import Estimates, FitFacts, Inference
from .results import MixedLMResults
from .terms_saved import KIND as TERMS_KIND


def _floats(values) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in np.ravel(values)], dtype=float)


def _matrix(values, k: int) -> np.ndarray:
    return _floats(values).reshape(k, k) if k else np.zeros((0, 0))


class LoadedModel:
    """What a loaded result keeps of its model: the specification."""

    def __init__(self, spec):
        self.spec = spec


def _engine_of(spec, n_groups: int) -> str:
    """The engine a saved fit took, from its specification (for folders that do not
    record it): crossed for one group of crossed factors."""
    if spec is None or n_groups != 1:
        return "grouped"
    return "crossed" if crossed_layout(spec, group_levels=[None]) is not None else "grouped"


def load_result(path: str | os.PathLike):
    """Read a result folder written by :meth:`MixedLMResults.save` or ``dlmm fit -o``,
    or a URL (``s3://bucket/prefix``) where one was published (:mod:`dlmm.io.store`).

    Parameters
    ----------
    path : str or PathLike
        The folder, or its URL.

    Returns
    -------
    MixedLMResults, or TermsResults for a fit of lme4's terms (``kind`` terms)
        Every estimate as saved, bit for bit; it prints its summary, gives its
        random effects and predicts.
    """
    opened = open_result(path) if is_url(path) or (Path(path) / RESULT_FILE).exists() \
        else None
    if opened is not None and opened[0].get("kind") == TERMS_KIND:  # dlmm.lmer's terms
        from .terms_loaded import load

        return load(*opened)
    state, re_table, vc_table = read_saved(path, opened)
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
        engine=fit.get("engine") or _engine_of(spec, fit["n_groups"]),
        weights=fit.get("weights"), residual=fit.get("residual"),
    )
    columns = [list(c) for c in names["vc_column_names"]]
    effect_names = EffectNames(
        group_name=names["group_name"], exog_re_names=list(names["exog_re_names"]),
        vc_names=list(names["vc_names"]), slot_names=[n for cols in columns for n in cols],
        slot_component=np.repeat(np.arange(len(columns)), [len(c) for c in columns]
                                 ).astype(np.int64),
    )
    effects = LoadedEffects(re_table, vc_table, effect_names)
    return MixedLMResults(LoadedModel(spec), estimates, inference, facts, effects)
