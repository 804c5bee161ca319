"""``TermsResults.save`` and its loading: a fit of random-effects terms as a result folder.

The folder is the one :mod:`dlmm.io.result_folder` defines (schema ``dlmm.result/2``,
written atomically, at a path or a URL), with ``"kind": "terms"`` beside the schema
(grouped results have no ``kind``), so that :func:`dlmm.load_result` knows which
result to rebuild and ``dlmm summary`` reads it as any other:

``result.json``
    ``schema``, ``kind``, ``status``, ``converged``, ``created``, ``model`` (``lmer``:
    lme4's formula, ``formula``: its fixed part, ``method``, ``reml``, ``missing``,
    ``response``), ``nobs``, ``n_groups`` (outermost groups), ``n_levels`` (each
    grouping factor's levels), ``estimates`` (``theta`` in lme4's order and names,
    ``fe_params``, ``bse_fe``, ``cov_fe``, ``scale``, ``llf``, ``aic``, ``bic``,
    ``varcorr``: lme4's rows), ``optimizer``, ``versions``, ``files``, and ``state``,
    from which the result is rebuilt: ``kind``, ``spec`` (the fixed part's learned
    specification, :meth:`~dlmm.spec.formula.FormulaSpec.to_dict`: columns and every
    learned level, the grouping columns' too), ``lmer_formula``, ``terms`` (each
    term's ``factor``, ``formula``, ``structure``, ``name``, ``source``,
    ``component`` and lme4's ``columns``, in the formula's order), ``term_order``
    (lme4's order of the terms), ``levels`` (the grouping factors, outermost first),
    ``estimates`` (``theta``, ``fe_names``, ``fe_params``, ``cov_fe``, ``scale``,
    ``llf``, ``reml``) and ``fit`` (``nobs``, ``n_levels``, ``converged``,
    ``mle_retvals``, ``engine``).
``summary.txt``
    ``result.summary()``.
``random_effects.parquet``
    lme4's ``as.data.frame(ranef(fit, condVar = TRUE))``: ``grpvar``, ``term``,
    ``grp`` (the level's label), ``condval``, ``condsd``; by factor (as
    ``random_effects``), column, level.

``dlmm fit -f`` writes the same folder (:func:`write_outputs`) with what a run adds:
``model.data``, ``timings`` (``data_pass``, ``optimizer``, ``evaluations``,
``cluster``, ``total``), ``options``, ``cluster``, the ``inputs`` (and ``start``)
sections of :mod:`dlmm.cli.nightly`, and ``fitted.parquet/`` with ``--fitted``.

Floats are written with Python's shortest round-trip representation: a loaded
result has every estimate bit for bit, its summary, VarCorr and random effects,
and predicts new data (:mod:`dlmm.results.terms_predict`) without the fitted data.
A saved folder is data: the term formulas and the fixed part go through
:mod:`dlmm.spec.saved_formula` before formulaic sees them, the lme4 formula is only
printed, and the effects table is read only when its size is the state's
(:mod:`dlmm.results.terms_loaded` reads the folder back).
"""

from __future__ import annotations

import datetime as _dt
import json
import os

import numpy as np
import pandas as pd

from ..io.folders import RESULT_FOLDER
from ..io.jsonable import jsonable, versions
from ..io.publish import staged_output
from ..io.result_folder import (
    RANDOM_EFFECTS_FILE,
    RESULT_FILE,
    SCHEMA,
    write_table,
)
from ..io.saved_result import save_target

#: ``kind`` of a result folder of a fit of random-effects terms.
KIND = "terms"
#: The columns of ``random_effects.parquet`` (lme4's ``as.data.frame(ranef(...))``).
EFFECT_COLUMNS = ("grpvar", "term", "grp", "condval", "condsd")


# -- writing ----------------------------------------------------------------------


def effects_table(result) -> pd.DataFrame:
    """The conditional modes and sds in lme4's long layout (:data:`EFFECT_COLUMNS`)."""
    parts = []
    covs = result.random_effects_cov()
    for name, frame in result.random_effects.items():
        sd = np.sqrt(np.maximum(np.einsum("nii->ni", covs[name]), 0.0)) if len(frame) \
            else np.zeros((0, frame.shape[1]))
        for j, column in enumerate(frame.columns):  # loop over a factor's few columns
            parts.append(pd.DataFrame({
                "grpvar": name, "term": str(column),
                "grp": frame.index.astype(str).to_numpy(dtype=object),
                "condval": frame.iloc[:, j].to_numpy(dtype=float), "condsd": sd[:, j]}))
    if not parts:
        return pd.DataFrame({c: [] for c in EFFECT_COLUMNS})
    return pd.concat(parts, ignore_index=True)


def _terms_state(model) -> list[dict]:
    """The terms in the formula's order (the engine layout's), with lme4's columns."""
    return [{"factor": list(t.factor), "formula": t.formula, "structure": t.structure,
             "name": t.name, "source": t.source, "component": t.component,
             "columns": list(cols)}
            for t, cols in zip(model.spec.terms, model.engine_layout.columns)]


def result_state(result) -> dict:
    """The ``state`` section of a fit of terms (see the module docstring)."""
    model = result.model
    return jsonable({
        "kind": KIND,
        "spec": model.spec.to_dict(),
        "lmer_formula": model.lmer_formula,
        "terms": _terms_state(model),
        "term_order": [int(k) for k in model.term_order],
        "levels": [list(f) for f in model.engine_layout.levels],
        "estimates": {
            "theta": result.theta.to_numpy(), "fe_names": list(result.fe_params.index),
            "fe_params": result.fe_params.to_numpy(), "cov_fe": result.cov_fe.to_numpy(),
            "scale": result.scale, "llf": result.llf, "reml": result.reml,
        },
        "fit": {"nobs": result.nobs, "n_levels": result.n_levels,
                "converged": result.converged, "mle_retvals": result.mle_retvals,
                "engine": result.engine},
    })


def result_document(result, files: list[str], *, options=None, cluster=None,
                    timings=None, sections=None) -> dict:
    """``result.json`` of a fit of terms (schema ``dlmm.result/2``, ``kind`` terms);
    ``dlmm fit`` adds its ``options``, ``cluster``, ``timings`` and ``sections``
    (``inputs``, ``start``) as :func:`dlmm.io.result_folder.result_document` does."""
    model = result.model
    n_levels = result.n_levels
    cov = result.cov_fe
    options = dict(options or {})
    doc = {
        "schema": SCHEMA,
        "kind": KIND,
        "status": "converged" if result.converged else "not_converged",
        "converged": bool(result.converged),
        "convergence_failures": [] if result.converged else
        [str(result.mle_retvals.get("message", ""))],
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model": {"data": jsonable(options.get("data")), "lmer": model.lmer_formula,
                  "formula": model.spec.formula,
                  "method": "REML" if result.reml else "ML", "reml": bool(result.reml),
                  "missing": getattr(model, "missing", None),
                  "response": model.spec.response},
        "nobs": int(result.nobs),
        "n_groups": int(next(iter(n_levels.values()))) if n_levels else 0,
        "n_levels": jsonable(n_levels),
        "estimates": {
            "theta": jsonable(result.theta), "fe_params": jsonable(result.fe_params),
            "bse_fe": jsonable(result.bse_fe),
            "cov_fe": {"names": [str(c) for c in cov.columns],
                       "matrix": jsonable(cov.to_numpy())},
            "scale": jsonable(result.scale), "llf": jsonable(result.llf),
            "aic": jsonable(result.aic), "bic": jsonable(result.bic),
            "varcorr": jsonable(result.varcorr().to_dict("records")),
        },
        "optimizer": jsonable(result.mle_retvals),
        "versions": versions(),
        "files": list(files),
        "state": result_state(result),
    }
    if options:  # a run of dlmm fit
        doc.update(timings=jsonable(dict(timings or {})), options=jsonable(options),
                   cluster=jsonable(dict(cluster or {"kind": "none"})))
    for key, value in (sections or {}).items():
        if key in doc:
            raise ValueError(f"section {key!r} would replace a key of {SCHEMA}")
        doc[key] = jsonable(value)
    return doc


def save(result, path: str | os.PathLike) -> None:
    """Write ``result`` to the folder ``path`` (created; it must not exist or be empty),
    or publish it at a URL; nothing is left behind when a step fails."""
    write_outputs(result, save_target(path))


def write_outputs(result, path: str | os.PathLike, *, overwrite: bool = False,
                  options=None, cluster=None, timings=None, client=None,
                  sections=None) -> dict:
    """Write the result folder of a fit of terms atomically (``result.save``, and
    ``dlmm fit -o`` as :func:`dlmm.io.result_folder.write_outputs` for grouped fits):
    ``summary.txt``, ``random_effects.parquet``, ``fitted.parquet/`` with the
    ``fitted`` option, then ``result.json``.

    Returns
    -------
    dict
        The ``result.json`` document written.
    """
    from ..io.result_folder import OutputContext, write_fitted, write_summary

    options = dict(options or {})
    data = options.get("data")
    inputs = {"DATA": data} if isinstance(data, (str, os.PathLike, list, tuple)) else None
    table = effects_table(result)
    context = OutputContext(result=result, options=options, client=client)
    with staged_output(path, overwrite, kind=RESULT_FOLDER, inputs=inputs) as tmp:
        files = [write_summary(context, tmp)]
        write_table(table, tmp / RANDOM_EFFECTS_FILE, index=False)
        files.append(RANDOM_EFFECTS_FILE)
        fitted = write_fitted(context, tmp)
        files += [fitted] if fitted is not None else []
        doc = result_document(result, files, options=options, cluster=cluster,
                              timings=timings, sections=sections)
        text = json.dumps(doc, indent=2, allow_nan=False)
        (tmp / RESULT_FILE).write_text(text + "\n", encoding="utf-8")
    return doc
