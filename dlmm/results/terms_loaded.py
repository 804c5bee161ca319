"""A saved fit of random-effects terms back as a :class:`~dlmm.results.terms_results.TermsResults`.

:func:`load` rebuilds it from a result folder of ``kind`` terms
(:mod:`dlmm.results.terms_saved` describes the folder; :func:`dlmm.load_result`
calls it): the learned specification from the saved state (every formula checked
by :mod:`dlmm.spec.saved_formula` before formulaic sees it), the layouts of θ, the
estimates bit for bit, and the random effects from ``random_effects.parquet``
(read only when its size is the state's). The loaded model has no data: what needs
the rows says so.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..exceptions import InputError
from ..io.result_folder import RANDOM_EFFECTS_FILE
from ..io.saved_result import _bounded_table
from ..spec.residual import ResidualModel
from ..spec.saved_formula import check_saved_formula, check_saved_spec
from ..spec.terms import RandomTerm, RandomTerms
from ..spec.terms_spec import TermsSpec
from .terms_results import TermsResults
from .terms_saved import EFFECT_COLUMNS, KIND


class LoadedTermsModel:
    """What a loaded fit of terms keeps of its model: the learned specification, the
    layouts of θ, the lme4 formula (printed only) and the facts of the fit. It has no
    data: what needs the rows (``satterthwaite``, ``simulate``, ``refit``, profiles, an
    ML refit for ``anova``) says so."""

    _stats = None
    data = None

    def __init__(self, spec, layout, engine_layout, term_order, lmer_formula: str,
                 reml: bool, nobs: int, n_levels: dict, missing):
        self.spec, self.layout, self.engine_layout = spec, layout, engine_layout
        self.term_order = list(term_order)
        self.lmer_formula, self.reml = lmer_formula, reml
        self.nobs, self.n_levels, self.missing = nobs, dict(n_levels), missing

    def engine_theta(self, theta) -> np.ndarray:
        """θ in lme4's order as the engine orders it."""
        out = np.zeros(self.layout.n_theta)
        for k, engine_term in enumerate(self.term_order):
            out[self.engine_layout.theta_slices[engine_term]] = \
                np.asarray(theta, dtype=float)[self.layout.theta_slices[k]]
        return out


def _floats(values) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in np.ravel(values)], dtype=float)


def _need(mapping, key: str, kind, source: str):
    value = mapping.get(key) if isinstance(mapping, dict) else None
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise InputError(f"{source}: state.{key} is missing or not a {kind.__name__} "
                         "(not a result dlmm wrote)")
    return value


def _saved_terms(state: dict, columns: list[str], source: str) -> list[RandomTerm]:
    """The terms of a saved state, every formula checked (a saved folder is data)."""
    terms = []
    for i, t in enumerate(_need(state, "terms", list, source)):
        if not isinstance(t, dict):
            raise InputError(f"{source}: state.terms[{i}] is not an object")
        factor = t.get("factor")
        if not isinstance(factor, list) or not factor or not all(
                isinstance(c, str) and c in columns for c in factor):
            raise InputError(f"{source}: state.terms[{i}].factor must be columns of the model")
        check_saved_formula(t.get("formula"), f"state.terms[{i}].formula", source, columns)
        text = {k: t.get(k) for k in ("name", "source", "structure")}
        if not all(isinstance(v, str) for v in text.values()) or not (
                t.get("component") is None or isinstance(t.get("component"), str)):
            raise InputError(f"{source}: state.terms[{i}] has a name, source, structure or "
                             "component that is not text")
        try:
            terms.append(RandomTerm(tuple(factor), t["formula"], text["structure"],
                                    text["name"], text["source"], None, t.get("component")))
        except ValueError as exc:
            raise InputError(f"{source}: state.terms[{i}]: {exc}") from None
    return terms


def _terms_spec(spec_state: dict, terms: RandomTerms) -> TermsSpec:
    """The learned :class:`TermsSpec` of a saved state, without data: learned from one
    row whose factors hold every saved level (as :meth:`FormulaSpec.from_dict`)."""
    spec = TermsSpec(spec_state["formula"], terms,
                     ResidualModel.from_dict(spec_state.get("residual")))
    levels = spec_state.get("levels") or {}
    row = {}
    for c in spec_state["columns"]:
        values = levels.get(c)
        row[c] = pd.Categorical(values[:1], categories=values) if values else [1.0]
    spec.learn_levels(pd.DataFrame(row), {})
    spec.levels = {c: list(v) for c, v in levels.items()}
    spec.stateful = bool(spec_state.get("stateful"))
    if spec_state.get("fe_keep") is not None:
        spec.drop_fixed_columns(np.asarray(spec_state["fe_keep"], dtype=bool))
    return spec


def load(doc: dict, saved) -> object:
    """The :class:`~dlmm.results.terms_results.TermsResults` of a result folder whose
    ``result.json`` (``doc``, opened by :func:`dlmm.io.result_folder.open_result` with
    its files ``saved``) has ``kind`` terms."""
    source = saved.label
    state = doc.get("state")
    if not isinstance(state, dict) or state.get("kind") != KIND:
        raise InputError(f"{source} is not a saved fit of random-effects terms (no state "
                         "of kind 'terms')")
    spec_state = state.get("spec")
    check_saved_spec(spec_state, source)
    if not isinstance(spec_state, dict) or spec_state.get("kind") != "formula":
        raise InputError(f"{source}: state.spec is not a formula's specification")
    columns = spec_state["columns"]
    terms = RandomTerms(tuple(_saved_terms(state, columns, source)))
    est, fit = _need(state, "estimates", dict, source), _need(state, "fit", dict, source)
    term_order = [int(k) for k in _need(state, "term_order", list, source)]
    levels = [tuple(f) for f in _need(state, "levels", list, source)]
    saved_columns = [tuple(t["columns"]) for t in state["terms"]]
    if sorted(term_order) != list(range(len(terms))):
        raise InputError(f"{source}: state.term_order is not an order of the terms")
    try:
        engine_layout = terms.layout(saved_columns, levels=levels)
        ordered = RandomTerms(tuple(terms[k] for k in term_order))
        layout = ordered.layout([saved_columns[k] for k in term_order], levels=levels)
    except ValueError as exc:
        raise InputError(f"{source}: the saved terms are not consistent: {exc}") from None
    spec = _terms_spec(spec_state, terms)
    n_levels = {str(k): int(v) for k, v in _need(fit, "n_levels", dict, source).items()}
    model = LoadedTermsModel(spec, layout, engine_layout, term_order,
                             str(_need(state, "lmer_formula", str, source)),
                             bool(est.get("reml")), int(_need(fit, "nobs", int, source)),
                             n_levels, doc.get("model", {}).get("missing"))
    theta = _floats(est["theta"])
    fe_names = [str(n) for n in est["fe_names"]]
    if theta.shape != (layout.n_theta,) or len(fe_names) != len(spec.exog_names):
        raise InputError(f"{source}: the saved estimates do not fit the saved terms")
    k = len(fe_names)
    cov_fe = _floats(est["cov_fe"]).reshape(k, k)
    table = _bounded_table(saved, RANDOM_EFFECTS_FILE, source,
                           rows=_effect_rows(engine_layout, spec, n_levels), exact=True,
                           columns=len(EFFECT_COLUMNS))
    result = TermsResults(
        model=model, theta=pd.Series(theta, index=list(layout.names)),
        fe_params=pd.Series(_floats(est["fe_params"]), index=fe_names),
        cov_fe=pd.DataFrame(cov_fe, index=fe_names, columns=fe_names),
        scale=float(est["scale"]), llf=float(est["llf"]), reml=bool(est["reml"]),
        converged=bool(fit.get("converged")), mle_retvals=dict(fit.get("mle_retvals") or {}),
        engine_theta=model.engine_theta(theta), beta_c=np.full(k, np.nan),
        engine=str(fit.get("engine") or "nested"))
    result._effects = _effects_from_table(table, engine_layout, spec, source)
    return result


def _factor_terms(engine_layout, spec):
    """Per grouping factor (engine level): lme4's name and its columns."""
    out = []
    for level in range(len(engine_layout.levels)):
        terms = sorted((k for k, lv in enumerate(engine_layout.term_level) if lv == level),
                       key=lambda k: engine_layout.term_columns[k].start)
        if terms:
            out.append((spec.terms[terms[0]].name,
                        [c for k in terms for c in engine_layout.columns[k]]))
    return out


def _effect_rows(engine_layout, spec, n_levels: dict) -> int:
    rows = 0
    for (name, cols), factor in zip(_factor_terms(engine_layout, spec), engine_layout.levels):
        count = n_levels.get(":".join(factor), n_levels.get(name))
        if count is None:
            raise InputError(f"the saved state has no number of levels of {name!r}")
        rows += int(count) * len(cols)
    return rows


def _effects_from_table(table: pd.DataFrame, engine_layout, spec, source: str) -> dict:
    """``random_effects`` (per factor a frame of its levels) from the saved table; the
    conditional covariances are not saved (only their sds: the table's ``condsd``)."""
    if list(table.columns) != list(EFFECT_COLUMNS):
        raise InputError(f"{source}: {RANDOM_EFFECTS_FILE} has columns {list(table.columns)}, "
                         f"not {list(EFFECT_COLUMNS)}")
    out = {}
    for name, cols in _factor_terms(engine_layout, spec):
        mine = table[table["grpvar"] == name]
        frames = []
        for col in cols:  # loop over a factor's few columns
            part = mine[mine["term"] == col]
            frames.append(pd.Series(part["condval"].to_numpy(dtype=float),
                                    index=pd.Index(part["grp"].astype(str), name=name),
                                    name=col))
        frame = pd.concat(frames, axis=1) if frames else pd.DataFrame()
        if any(len(f) != len(frame) for f in frames) or frame.isna().any().any():
            raise InputError(f"{source}: {RANDOM_EFFECTS_FILE} does not hold every level of "
                             f"{name!r} for each of its columns")
        out[name] = (frame, None)
    return out
