"""Nightly refits: the inputs' fingerprint, ``--skip-unchanged`` and ``--start-from``.

``result.json`` of ``dlmm fit -o`` has an ``inputs`` section: the data files'
fingerprint (:func:`dlmm.io.fingerprint.fingerprint`, from listings and
``stat``/fsspec ``info`` only), their number and bytes, and the run's
specification (the model, REML or ML, missing-value handling, collinear
columns, optimizer options) with its SHA-256. A later run with
``--skip-unchanged`` compares both with the previous output's before it reads
any data or starts a cluster, and when neither changed exits 0 with status
``unchanged`` (a log event), writing nothing; when that output did not
converge, the skipped run passes its status on (exit 3), and a run asking for
``--fitted`` is not skipped over an output without fitted values.
``--start-from PREVIOUS_OUTPUT`` starts the optimizer at the previous optimum
after checking that the previous output fitted the same model and that its
estimates are a start point (finite numbers of the right shapes: else exit 2
naming the fault). Nothing there yet (the first night: no folder, an empty
one, or a URL where nothing was published) is a cold start, logged; a start
point at which the likelihood cannot be evaluated (variances of 1e300, say)
is a cold start too, logged with the reason and recorded in ``result.json``
(``start``).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..exceptions import InputError
from ..io.fingerprint import FileIdentity, digest, fingerprint, input_files

#: The options that make up a run's specification (what a fit's estimates depend on
#: besides the data).
SPEC_OPTIONS = ("formula", "groups", "re_formula", "vc", "weights", "residual_by",
                "residual_ar1", "ml", "missing", "drop_collinear", "method", "max_iter",
                "newton_steps")
#: The options that make up the model (what ``--start-from`` checks).
MODEL_OPTIONS = ("formula", "groups", "re_formula", "vc", "weights", "residual_by",
                 "residual_ar1")


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


def previous_document(path: str | os.PathLike,
                      option: str = "--start-from") -> dict[str, Any] | None:
    """``result.json`` of the previous output ``path``, or None when there is nothing
    there yet (night one): no such folder, or an empty one; at a URL, nothing published
    (no manifest, and nothing beside the unpublished runs of killed writers).

    Raises
    ------
    InputError
        Something is there but it is not a readable dlmm result.
    """
    from ..io.result_folder import read_result
    from ..io.store import is_url, local_path

    if is_url(path):
        if _nothing_published(os.fspath(path), option):
            return None
    else:
        folder = os.fspath(local_path(path))
        if not os.path.lexists(folder):
            return None
        try:
            if os.path.isdir(folder) and not os.listdir(folder):
                return None
        except OSError as exc:  # unreadable: said in one line
            raise InputError(f"{option} {folder!r} cannot be read: {exc}") from None
    return read_result(path)


def _nothing_published(url: str, option: str) -> bool:
    """Whether a store prefix holds no output: no manifest, no files but ``_runs/``."""
    from ..io.store import MANIFEST, RUNS, open_store

    fs, root = open_store(url, option)
    try:
        fs.invalidate_cache(root)
        entries = [e.rstrip("/").rsplit("/", 1)[-1] for e in fs.ls(root, detail=False)]
    except FileNotFoundError:
        return True
    except Exception as exc:  # credentials, network: said in one line
        text = " ".join(str(exc).split()) or type(exc).__name__
        raise InputError(f"{option} {url!r}: cannot reach the store: {text}") from None
    return MANIFEST not in entries and all(e == RUNS for e in entries)


def unchanged(opts: dict[str, Any], files: list[FileIdentity]) -> tuple[str | None, str]:
    """``(previous output, why not)``: the output whose inputs and specification this
    run's equal (and which has every file this run would write), or None and the
    first difference found."""
    from ..io.result_folder import FITTED_FILE

    path = previous_output(opts)
    if path is None:
        return None, "no previous output"
    try:
        doc = previous_document(path, "--start-from" if opts.get("start_from") else
                                "--output")
    except InputError as exc:
        return None, f"no readable previous result in {path!r} ({exc})"
    if doc is None:
        return None, f"no previous result in {path!r}"
    before = doc.get("inputs") if isinstance(doc.get("inputs"), dict) else None
    if before is None:
        return None, f"{path!r} records no inputs fingerprint"
    now = inputs_section(opts, files)
    if before.get("specification_hash") != now["specification_hash"]:
        return None, "the specification changed"
    if before.get("fingerprint") != now["fingerprint"]:
        return None, "the input files changed"
    files_written = doc.get("files") if isinstance(doc.get("files"), list) else []
    if opts.get("fitted") and FITTED_FILE not in files_written:
        return None, f"{path!r} has no fitted values (--fitted)"
    return str(path), ""


def previous_status(path: str) -> tuple[bool, list[str]]:
    """Whether the previous output ``path`` converged, and why not (its
    ``convergence_failures``): what a skipped run passes on as its exit code."""
    doc = previous_document(path) or {}
    converged = doc.get("converged") is True and doc.get("status") == "converged"
    reasons = doc.get("convergence_failures")
    reasons = [str(r) for r in reasons] if isinstance(reasons, list) else []
    if not converged and not reasons:
        reasons = [f"status {doc.get('status')!r}"]
    return converged, reasons


def start_params(path: str, opts: dict[str, Any], doc: dict[str, Any]):
    """The covariance parameters of the previous output ``path`` (profile scale), read
    from its ``result.json`` ``doc``, after checking it fitted the same model and that
    its estimates are a start point: numbers, finite, of the shapes its random-effect
    names give, a positive semidefinite covariance.

    Raises
    ------
    InputError
        Its model differs (naming the first option that does), or its estimates
        are not a start point (naming the fault).
    """
    from ..objective.params import MixedLMParams

    recorded = (doc.get("inputs") or {}).get("specification") or {}
    model = doc.get("model") or {}
    saved = {"formula": model.get("formula"), "groups": model.get("groups"),
             "re_formula": model.get("re_formula"), "vc": model.get("vc_formula") or {}}
    saved.update({k: recorded[k] for k in MODEL_OPTIONS if k in recorded})
    for key in MODEL_OPTIONS:
        mine = (opts.get(key) or {}) if key == "vc" else opts.get(key)
        if saved.get(key) != mine:
            flag = "--" + key.replace("_", "-")
            raise InputError(f"--start-from {path!r} fitted another model: its {flag} is "
                             f"{saved.get(key)!r}, this run's {mine!r}")
    state = doc.get("state") if isinstance(doc.get("state"), dict) else {}
    est = state.get("estimates") if isinstance(state.get("estimates"), dict) else {}
    names = state.get("names") if isinstance(state.get("names"), dict) else {}
    where = f"--start-from {path!r}: result.json"
    if opts.get("terms"):
        return _start_theta(where, est)
    try:
        cov = np.asarray(est["cov_re_unscaled"], dtype=float)
        vcomp = np.asarray(est["vcomp_unscaled"], dtype=float)
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise InputError(f"{where} has no usable estimates ({exc})") from None
    if cov.size == 0:
        cov = np.zeros((0, 0))
    if cov.ndim != 2 or cov.shape[0] != cov.shape[1]:
        raise InputError(f"{where}: cov_re_unscaled is not a square matrix (shape "
                         f"{cov.shape})")
    if vcomp.ndim != 1:
        raise InputError(f"{where}: vcomp_unscaled is not a list (shape {vcomp.shape})")
    for key, size, what in (("exog_re_names", cov.shape[0], "cov_re_unscaled holds the "
                             f"covariance of {cov.shape[0]} random effects"),
                            ("vc_names", vcomp.shape[0], f"vcomp_unscaled holds "
                             f"{vcomp.shape[0]} variance components")):
        if isinstance(names.get(key), list) and len(names[key]) != size:
            raise InputError(f"{where}: {what} but its {key} lists {len(names[key])}: "
                             "not a start point")
    for what, values in (("cov_re_unscaled", cov), ("vcomp_unscaled", vcomp)):
        if not np.isfinite(values).all():
            raise InputError(f"{where}: {what} is not finite (NaN or infinity): not a "
                             "start point")
    try:
        params = MixedLMParams.from_components(cov_re=cov, vcomp=vcomp)
    except (np.linalg.LinAlgError, ValueError, FloatingPointError) as exc:
        raise InputError(f"{where} has no usable estimates ({exc})") from None
    params.residual = _start_phi(state)
    return params


def _start_phi(state: dict[str, Any]) -> np.ndarray | None:
    """The previous fit's residual parameters φ (``residual_by``, ``residual_ar1``), a
    start for this run's where it has as many (a new stratum: none); None without."""
    from ..results.residual_estimates import ResidualEstimates

    fit = state.get("fit") if isinstance(state.get("fit"), dict) else {}
    try:
        residual = ResidualEstimates.from_dict(fit.get("residual"))
        return None if residual is None else residual.phi
    except (KeyError, TypeError, ValueError):  # an edited file: a cold start of φ
        return None


def _start_theta(where: str, est: dict[str, Any]) -> np.ndarray:
    """lme4's θ of a previous fit of terms (``state.estimates.theta``): finite numbers."""
    try:
        theta = np.asarray(est["theta"], dtype=float)
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise InputError(f"{where} has no usable estimates ({exc})") from None
    if theta.ndim != 1 or not np.isfinite(theta).all():
        raise InputError(f"{where}: theta is not a list of finite numbers: not a start point")
    return theta


def check_start(path: str, doc: dict[str, Any], params, model) -> None:
    """Refuse previous estimates whose random effects are not the model's (names, or
    the numbers of effects and components; for a model of terms, θ's names)."""
    if getattr(model, "lmer_formula", None) is not None:  # TermsMixedLM: lme4's θ
        saved = list((doc.get("estimates") or {}).get("theta") or {})
        if saved != list(model.layout.names):
            raise InputError(f"--start-from {path!r}: its theta {saved} is not this "
                             f"model's {list(model.layout.names)}")
        return
    names = (doc.get("state") or {}).get("names") or {}
    for key, mine in (("exog_re_names", model.exog_re_names),
                      ("vc_names", list(model.spec.vc_names))):
        if key in names and list(names[key]) != list(mine):
            raise InputError(f"--start-from {path!r}: its random effects {names[key]} are "
                             f"not this model's {mine}")
    if params.cov_re.shape[0] != model.k_re or params.vcomp.shape[0] != model.k_vc:
        raise InputError(f"--start-from {path!r}: its estimates have "
                         f"{params.cov_re.shape[0]} random effects and "
                         f"{params.vcomp.shape[0]} variance components, this model "
                         f"{model.k_re} and {model.k_vc}")


def list_inputs(data: Any) -> list[FileIdentity]:
    """The input files and identities (no file opened; see :mod:`dlmm.io.fingerprint`)."""
    return input_files(data)
