"""Nightly refits: the inputs' fingerprint, ``--skip-unchanged`` and ``--start-from``.

``result.json`` of ``dlmm fit -o`` has an ``inputs`` section: the data files'
fingerprint (:func:`dlmm.io.fingerprint.fingerprint`, from listings and
``stat``/fsspec ``info`` only), their number and bytes, and the run's
specification (the model, REML or ML, missing-value handling, collinear
columns, optimizer options) with its SHA-256. A later run with
``--skip-unchanged`` compares both with the previous output's before it reads
any data or starts a cluster, and when neither changed exits 0 with status
``unchanged`` (a log event), writing nothing. ``--start-from PREVIOUS_OUTPUT``
starts the optimizer at the previous optimum after checking that the
previous output fitted the same model.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..exceptions import InputError
from ..io.fingerprint import FileIdentity, digest, fingerprint, input_files

#: The options that make up a run's specification (what a fit's estimates depend on
#: besides the data).
SPEC_OPTIONS = ("formula", "groups", "re_formula", "vc", "ml", "missing", "drop_collinear",
                "method", "max_iter", "newton_steps")
#: The options that make up the model (what ``--start-from`` checks).
MODEL_OPTIONS = ("formula", "groups", "re_formula", "vc")


def specification(opts: dict[str, Any]) -> dict[str, Any]:
    """The run's specification: the options of :data:`SPEC_OPTIONS` as JSON values."""
    spec = {k: opts.get(k) for k in SPEC_OPTIONS}
    spec["vc"] = dict(sorted((opts.get("vc") or {}).items()))
    return spec


def inputs_section(opts: dict[str, Any], files: list[FileIdentity]) -> dict[str, Any]:
    """The ``inputs`` section of ``result.json``."""
    spec = specification(opts)
    return {"fingerprint": fingerprint(files), "files": len(files),
            "bytes": int(sum(f.size for f in files)), "specification": spec,
            "specification_hash": digest(spec)}


def previous_output(opts: dict[str, Any]) -> str | None:
    """The output a run compares itself with: ``--start-from``, else ``--output``."""
    return opts.get("start_from") or opts.get("output")


def _read_previous(path: str) -> dict[str, Any]:
    from ..io.result_folder import read_result

    return read_result(path)


def unchanged(opts: dict[str, Any], files: list[FileIdentity]) -> tuple[str | None, str]:
    """``(previous output, why not)``: the output whose inputs and specification this
    run's equal, or None and the first difference found."""
    import os

    path = previous_output(opts)
    if path is None or not os.path.isfile(os.path.join(str(path), "result.json")):
        return None, f"no previous result in {path!r}"
    doc = _read_previous(str(path))
    before = doc.get("inputs") if isinstance(doc.get("inputs"), dict) else None
    if before is None:
        return None, f"{path!r} records no inputs fingerprint"
    now = inputs_section(opts, files)
    if before.get("specification_hash") != now["specification_hash"]:
        return None, "the specification changed"
    if before.get("fingerprint") != now["fingerprint"]:
        return None, "the input files changed"
    return str(path), ""


def start_params(path: str, opts: dict[str, Any]):
    """The covariance parameters of the previous output ``path`` (profile scale), after
    checking it fitted the same model.

    Raises
    ------
    InputError
        No result there, or its model differs (naming the first option that does).
    """
    from ..objective.params import MixedLMParams

    doc = _read_previous(path)
    recorded = (doc.get("inputs") or {}).get("specification") or {}
    model = doc.get("model") or {}
    saved = {"formula": model.get("formula"), "groups": model.get("groups"),
             "re_formula": model.get("re_formula"), "vc": model.get("vc_formula") or {}}
    saved.update({k: recorded[k] for k in MODEL_OPTIONS if k in recorded})
    for key in MODEL_OPTIONS:
        mine = (opts.get(key) or {}) if key == "vc" else opts.get(key)
        if saved[key] != mine:
            flag = "--" + key.replace("_", "-")
            raise InputError(f"--start-from {path!r} fitted another model: its {flag} is "
                             f"{saved[key]!r}, this run's {mine!r}")
    est = (doc.get("state") or {}).get("estimates") or {}
    try:
        return MixedLMParams.from_components(
            cov_re=np.asarray(est["cov_re_unscaled"], dtype=float),
            vcomp=np.asarray(est["vcomp_unscaled"], dtype=float))
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"--start-from {path!r}: result.json has no usable estimates "
                         f"({exc})") from None


def check_start(path: str, params, model) -> None:
    """Refuse previous estimates whose random-effect names differ from the model's."""
    doc = _read_previous(path)
    names = (doc.get("state") or {}).get("names") or {}
    for key, mine in (("exog_re_names", model.exog_re_names),
                      ("vc_names", list(model.spec.vc_names))):
        if key in names and list(names[key]) != list(mine):
            raise InputError(f"--start-from {path!r}: its random effects {names[key]} are "
                             f"not this model's {mine}")


def list_inputs(data: Any) -> list[FileIdentity]:
    """The input files and identities (no file opened; see :mod:`dlmm.io.fingerprint`)."""
    return input_files(data)
