"""The saved-result folder: ``result.json`` (schema ``dlmm.result/2``) and friends.

One format for every writer and reader: ``result.save(DIR)`` and ``dlmm fit
-o DIR`` write it; ``dlmm.load_result(DIR)``, ``dlmm summary DIR`` and
``dlmm predict DIR`` read it.

A fit's outputs are written into a temporary sibling of the output folder
(``.NAME.tmp-XXXX``) and renamed into place only when every file is complete,
so a failed or interrupted run leaves no folder, and readers never see a
half-written one. An existing folder is replaced only with ``overwrite``, and
only when it is empty or a result folder itself (its ``result.json`` has a
``dlmm.result/`` schema); an output that is, contains or lies inside the input
data is refused (:mod:`dlmm.io.folders`).

At a URL (``-o s3://bucket/prefix``, any fsspec URL) the same files are
written under a run prefix and published by a manifest that lists them with
their sizes and SHA-256 (:mod:`dlmm.io.store`); readers of a URL open only
what the manifest lists, checked against it.

Files
-----
``result.json``
    Estimates and facts of the fit (schema below).
``summary.txt``
    ``str(result.summary())``: statsmodels' text layout.
``random_effects.parquet``
    One row per group, indexed by the group label: the predicted random
    effects and their conditional standard deviations (``<name> SE``); no
    columns (only the group labels) when the model has no standard random
    effects.
``vc_effects.parquet``
    One row per variance-component effect: group, ``component``, ``column``,
    ``effect``, ``variance``; only for models with variance components.
``fitted.parquet/``
    Only with ``--fitted``: a Parquet data set with one column ``fitted``, the
    rows in the order of the input data (its files in name order). On a
    cluster the workers write it, so the output folder must be on storage
    they share with the driver (or a URL they can write to).

Each file is made by one *artifact writer* ``writer(context, folder) -> name
or None`` listed in :data:`ARTIFACTS` (``None``: nothing to write for this
fit). Adding a file is one function appended to that list; ``result.json``
lists what was written under ``files``.

Schema ``dlmm.result/2``
------------------------
A JSON object. Non-finite numbers (NaN, infinity) are written as ``null``;
floats are written with Python's shortest round-trip representation, so a
loaded result has every estimate bit for bit. New keys may be added within
version 2; a key is never removed or changes meaning without a new version.
(Version 1 had the same keys but ``state``, and a ``model/`` folder of its own
format beside them.)

=====================  =========================================================
key                    value
=====================  =========================================================
``schema``             ``"dlmm.result/2"``
``kind``               ``"terms"`` for a fit of lme4's random-effects terms beyond
                       statsmodels' shape (``TermsResults``: its keys and state are
                       :mod:`dlmm.results.terms_saved`'s); absent for the others
``status``             ``"converged"`` or ``"not_converged"`` (exit code 0 / 3)
``converged``          bool: the optimizer's convergence test and the lme4-style
                       checks passed; ``convergence_failures``: why not (a list)
``created``            UTC time the file was written, ISO 8601
``model``              ``data``, ``formula``, ``groups``, ``re_formula``,
                       ``vc_formula`` (name -> formula), ``method``
                       (``"REML"``/``"ML"``), ``reml``, ``missing``, ``response``
``nobs``               rows used
``n_groups``           groups
``n_dropped``          rows dropped for missing values (``missing="drop"``)
``group_size``         ``min``, ``max``, ``mean`` rows per group
``estimates``          ``fe_params`` (name -> value), ``cov_re`` (``names``,
                       ``matrix``: the random-effects covariance on the data's
                       scale), ``vcomp`` (name -> variance, sorted by name),
                       ``scale``, ``llf``, ``params`` (name -> value, statsmodels'
                       packed vector: fixed effects, lower triangle of
                       ``cov_re / scale`` row by row, ``vcomp / scale``),
                       ``bse`` (name -> standard error of ``params``, or ``null``
                       when this dlmm does not compute them), ``aic``, ``bic``
                       (or ``null``)
``optimizer``          the optimizer's report (``result.mle_retvals``): ``method``,
                       ``message``, ``methods`` (each method tried), ``evaluations``,
                       ``newton_steps``, ``grad``, ``grad_norm``, ``decrement``
``timings``            seconds: ``data_pass``, ``optimizer``, ``cluster`` (start or
                       connect), ``total``; ``evaluations``
``options``            every option of the run after merging ``--config`` and the
                       command line
``cluster``            ``kind`` (``"scheduler"``, ``"embedded"`` or ``"none"``),
                       ``address``, ``workers``, ``threads``, ``dashboard``
``versions``           ``dlmm``, ``dask``, ``distributed``, ``numpy``, ``scipy``,
                       ``pandas``, ``pyarrow``, ``python``, ``platform``
``files``              names of the other files written in the folder
``inputs``             (``dlmm fit``) ``fingerprint`` of the input files (SHA-256
                       of their paths, sizes, modification times and ETags or
                       checksums: :mod:`dlmm.io.fingerprint`), ``files``,
                       ``bytes``, the run's ``specification`` (model, REML/ML,
                       options) and its ``specification_hash``: what
                       ``--skip-unchanged`` compares
``cache``              (``dlmm fit --cache``) what the statistics cache did:
                       ``files``, ``files_read``, ``files_reused``,
                       ``files_dropped``, ``read`` and ``dropped`` (paths),
                       ``recomputed``, ``rebuilt`` (why every file was read, or
                       ``null``)
``start``              (``dlmm fit --start-from``) ``path``, ``used`` (whether the
                       optimizer started there) and ``reason`` (why not: a cold
                       start, as on the first night)
``state``              what :func:`dlmm.load_result` rebuilds the result from:
                       ``spec`` (formulas and learned levels), ``names``,
                       ``estimates`` (profile scale), ``cov_params``,
                       ``hessian``, ``freepat`` and ``fit`` (facts of the fit)
=====================  =========================================================
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np

from ..exceptions import InputError
from .folders import RESULT_FOLDER
from .jsonable import jsonable, versions
from .parquet_parts import fetched_ahead, write_parts
from .publish import staged_output
from .store import PublishedOutput, is_url, read_published

SCHEMA = "dlmm.result/2"
RESULT_FILE = "result.json"
SUMMARY_FILE = "summary.txt"
RANDOM_EFFECTS_FILE = "random_effects.parquet"
VC_EFFECTS_FILE = "vc_effects.parquet"
FITTED_FILE = "fitted.parquet"


# -- result.json --------------------------------------------------------------------


def _optional(result: Any, name: str) -> Any:
    """``result.name`` if the result has it (inference may be absent), else None."""
    try:
        value = getattr(result, name, None)
    except Exception:  # an attribute that cannot be computed for this fit
        return None
    return value() if callable(value) else value


def result_document(result: Any, *, options: Mapping[str, Any] | None = None,
                    cluster: Mapping[str, Any] | None = None,
                    timings: Mapping[str, float] | None = None,
                    files: list[str] | None = None,
                    sections: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``result.json`` object of a fit (schema ``dlmm.result/2``).

    Parameters
    ----------
    result : MixedLMResults
        The fit.
    options : mapping, optional
        The run's options (``data``, ``formula``, ...), recorded as given.
    cluster : mapping, optional
        Where the fit ran (``kind``, ``address``, ``workers``, ...).
    timings : mapping, optional
        Seconds spent outside the fit (``cluster``, ``total``), merged with
        ``result.timings``.
    files : list of str, optional
        The other files written beside ``result.json``.
    sections : mapping, optional
        More top-level keys (``inputs``, ``cache``); never one of the keys above.

    Returns
    -------
    dict
        JSON-safe.
    """
    options = dict(options or {})
    model = result.model
    spec = model.spec
    cov_re = result.cov_re
    estimates = {
        "fe_params": jsonable(result.fe_params),
        "cov_re": {"names": [str(n) for n in cov_re.columns],
                   "matrix": jsonable(np.asarray(cov_re, dtype=float))},
        "vcomp": {str(n): jsonable(v) for n, v in zip(result.vc_names, result.vcomp)},
        "scale": jsonable(result.scale),
        "llf": jsonable(result.llf),
        "params": jsonable(result.params),
        "bse": jsonable(_optional(result, "bse")),
        "aic": jsonable(_optional(result, "aic")),
        "bic": jsonable(_optional(result, "bic")),
    }
    all_timings = dict(result.timings)
    all_timings.update(timings or {})
    n_groups = int(result.n_groups)
    doc = {
        "schema": SCHEMA,
        "status": "converged" if result.converged else "not_converged",
        "converged": bool(result.converged),
        "convergence_failures": list(result.mle_retvals.get("convergence_failures", [])),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model": {
            "data": options.get("data"),
            "formula": getattr(spec, "formula", None),
            "groups": getattr(spec, "groups", None),
            "re_formula": getattr(spec, "re_formula", None),
            "vc_formula": dict(getattr(spec, "vc_formula", {}) or {}),
            "method": result.method,
            "reml": bool(result.reml),
            "missing": getattr(model, "missing", None),
            "response": getattr(model, "endog_names", None),
        },
        "nobs": int(result.nobs),
        "n_groups": n_groups,
        "n_dropped": int(getattr(result, "n_dropped", 0)),
        "group_size": {
            "min": jsonable(result.group_size_min),
            "max": jsonable(result.group_size_max),
            "mean": jsonable(result.nobs / n_groups if n_groups else None),
        },
        "estimates": estimates,
        "optimizer": jsonable(result.mle_retvals),
        "timings": jsonable(all_timings),
        "options": jsonable(options),
        "cluster": jsonable(dict(cluster or {"kind": "none"})),
        "versions": versions(),
        "files": list(files or []),
        "state": result_state(result),
    }
    for key, value in (sections or {}).items():
        if key in doc:
            raise ValueError(f"section {key!r} would replace a key of {SCHEMA}")
        doc[key] = jsonable(value)
    return doc


def result_state(result: Any) -> dict[str, Any]:
    """The ``state`` section: everything a loaded result is rebuilt from (JSON-safe)."""
    spec = result.model.spec
    spec_state = spec.to_dict() if hasattr(spec, "to_dict") else {
        "kind": "arrays", "columns": [], "levels": {}, "stateful": False}
    e, inference, f = result.estimates, result.inference, result.facts
    return jsonable({
        "spec": spec_state,
        "names": {
            "exog_names": e.exog_names, "exog_re_names": e.exog_re_names,
            "vc_names": e.vc_names, "group_name": f.group_name, "endog_name": f.endog_name,
            "vc_column_names": [list(c) for c in getattr(spec, "vc_column_names", [])],
        },
        "estimates": {
            "fe_params": e.fe_params, "cov_re_unscaled": e.cov_re_unscaled,
            "vcomp_unscaled": e.vcomp_unscaled, "scale": e.scale, "llf": e.llf,
            "reml": e.reml,
        },
        "cov_params": inference.cov_params,
        "hessian": inference.hessian,
        "freepat": inference.freepat,
        "fit": {
            "nobs": f.nobs, "n_groups": f.n_groups, "n_dropped": f.n_dropped,
            "group_size_min": f.group_size_min, "group_size_max": f.group_size_max,
            "converged": f.converged, "mle_retvals": f.mle_retvals, "timings": f.timings,
            "backend": f.backend, "engine": f.engine,
            **({"weights": f.weights} if getattr(f, "weights", None) else {}),
            **({"residual": f.residual} if getattr(f, "residual", None) else {}),
        },
    })


# -- the other files ---------------------------------------------------------------


@dataclass
class OutputContext:
    """What an artifact writer may use: the fit and how it was run.

    Attributes
    ----------
    result : MixedLMResults
    options : dict
        The run's options (``data`` is the input path).
    client : distributed.Client or None
        The cluster of the fit, for writers that must read the data again
        (fitted values).
    extra : dict
        Anything else a writer needs.
    """

    result: Any
    options: dict[str, Any] = field(default_factory=dict)
    client: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


#: ``writer(context, folder)``: ``folder`` is a local folder or a run prefix at a URL
#: (:class:`dlmm.io.publish.StoreFile`); both have ``folder / name`` with ``write_text``,
#: and ``str(folder / name)`` is a path or URL that Dask writes to (through fsspec; pandas
#: tables go through :func:`write_table`, never a URL string: see its docstring).
ArtifactWriter = Callable[[OutputContext, Path], "str | None"]


def _compute(obj: Any, client: Any) -> Any:
    """A pandas object from a pandas or lazy Dask one (computed on ``client``)."""
    if not hasattr(obj, "compute"):
        return obj
    return client.compute(obj).result() if client is not None else obj.compute()


def computed_parts(table: Any, client: Any) -> Iterator[Any]:
    """The pandas parts of a pandas or lazy Dask table, in order, whose concatenation is
    what computing it gives: a lazy table's partitions computed on ``client`` and
    fetched a few at a time (:func:`~dlmm.io.parquet_parts.fetched_ahead`), the empty
    ones left out as Dask's concatenation leaves them out (the first when all are)."""
    if not hasattr(table, "compute"):
        yield table
        return
    if client is None or not hasattr(table, "partitions"):
        yield table.compute()
        return
    futures = client.compute([table.partitions[i] for i in range(table.npartitions)])
    first, rows = None, False
    try:
        for part in fetched_ahead(client.gather, futures):
            first = part if first is None else first
            if len(part):
                rows = True
                yield part
        if not rows:
            yield first
    finally:
        for future in futures:
            future.release()


def effects_parts(context: OutputContext, vc: bool = False) -> Iterator[Any]:
    """A fit's random-effects table (with SEs) or variance-component table as pandas
    parts, in order, a few at a time (their concatenation is the table; never made).

    For a fit on the embedded cluster the effects store makes them in this process from
    the gathered parts (``gathered_parts``, ``gathered_vc_parts``: the parts of the table
    the lazy one computes to, their dtypes Dask's); handing the lazy table to the cluster
    would send all of it there and back (measured on the 2-core machine at a load of
    20, the outputs of 500,000 groups: 4.8 and 6.7 s with that round trip, 3.7 and 4.2 s
    without). Otherwise the lazy table's partitions are computed on ``context.client``.
    """
    result, client = context.result, context.client
    here = getattr(getattr(result, "effects", None),
                   "gathered_vc_parts" if vc else "gathered_parts", None)
    if here is not None and client is not None:
        from ..distributed.embedded import is_embedded

        if is_embedded(client):
            return here() if vc else here(with_se=True)
    table = result.vc_effects_table() if vc else result.random_effects_table(with_se=True)
    return computed_parts(table, client)


def write_table(table: Any, target: Path, index: bool | None = None) -> None:
    """A pandas table to the Parquet file ``target`` (a local path or a file of a run at
    a URL), as ``table.to_parquet(target, index=index)`` writes it, through
    :func:`~dlmm.io.parquet_parts.write_parts` (at a URL: fsspec, the one file-system
    layer of every other file, never the store client pandas would choose for a URL
    string: pyarrow's own S3, which knows nothing of fsspec's endpoint settings).

    Only columns that are not floating point get dictionary pages: effects and variances
    are distinct numbers, whose dictionary pyarrow would build and then drop (half the
    time of writing the effects of 10^6 groups).
    """
    write_parts([table], target, index=index)


def write_summary(context: OutputContext, folder: Path) -> str:
    """``summary.txt``: the text summary of the fit."""
    (folder / SUMMARY_FILE).write_text(str(context.result.summary()) + "\n", encoding="utf-8")
    return SUMMARY_FILE


def write_random_effects(context: OutputContext, folder: Path) -> str | None:
    """``random_effects.parquet``: one row per group (index: the group label), the
    predicted random effects and their conditional standard deviations (``<name> SE``);
    only the labels when the model has no standard random effects."""
    write_parts(effects_parts(context), folder / RANDOM_EFFECTS_FILE)
    return RANDOM_EFFECTS_FILE


def write_vc_effects(context: OutputContext, folder: Path) -> str | None:
    """``vc_effects.parquet``: one row per variance-component effect (group,
    component, column, effect, conditional variance)."""
    result = context.result
    if not result.k_vc:
        return None
    write_parts(effects_parts(context, vc=True), folder / VC_EFFECTS_FILE, index=False)
    return VC_EFFECTS_FILE


def write_fitted(context: OutputContext, folder: Path) -> str | None:
    """``fitted.parquet`` (only with the ``fitted`` option): a Parquet data set with
    one column ``fitted``, the rows in the order of the input data (files in name
    order; NaN where a model column is missing).

    For Dask fits the workers write the files, so the output folder must be on
    storage the workers can write (a shared file system).
    """
    if not context.options.get("fitted"):
        return None
    fitted = context.result.fittedvalues
    target = folder / FITTED_FILE
    if hasattr(fitted, "npartitions"):
        job = fitted.rename("fitted").to_frame().to_parquet(str(target), compute=False,
                                                            write_index=False)
        _compute(job, context.client)
    else:
        target.mkdir()
        write_table(fitted.rename("fitted").to_frame(), target / "part.0.parquet", index=False)
    return FITTED_FILE


#: The files written beside ``result.json``, in order; each writer returns the name
#: it wrote or None. Append a writer to add a file.
ARTIFACTS: list[ArtifactWriter] = [write_summary, write_random_effects, write_vc_effects,
                                   write_fitted]


def write_outputs(result: Any, path: str | os.PathLike, *, overwrite: bool = False,
                  options: Mapping[str, Any] | None = None,
                  cluster: Mapping[str, Any] | None = None,
                  timings: Mapping[str, float] | None = None, client: Any = None,
                  artifacts: list[ArtifactWriter] | None = None,
                  sections: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write the output folder of a fit, atomically.

    Parameters
    ----------
    result : MixedLMResults
    path : str or PathLike
        The folder, or a URL (:mod:`dlmm.io.store`); refused if it is, contains
        or lies inside the input ``options["data"]``; refused if it exists,
        unless ``overwrite`` and it is empty or a dlmm result.
    overwrite : bool
    options, cluster, timings
        Recorded in ``result.json`` (see :func:`result_document`).
    client : distributed.Client, optional
        Passed to the artifact writers.
    artifacts : list of callables, optional
        Writers of the files beside ``result.json``; default :data:`ARTIFACTS`.
    sections : mapping, optional
        More top-level keys of ``result.json`` (see :func:`result_document`).

    Returns
    -------
    dict
        The ``result.json`` document written.
    """
    context = OutputContext(result=result, options=dict(options or {}), client=client)
    data = context.options.get("data")
    inputs = {"DATA": data} if isinstance(data, (str, os.PathLike, list, tuple)) else None
    with staged_output(path, overwrite, kind=RESULT_FOLDER, inputs=inputs) as tmp:
        files = []
        for writer in ARTIFACTS if artifacts is None else artifacts:
            name = writer(context, tmp)
            if name is not None:
                files.append(name)
        doc = result_document(result, options=options, cluster=cluster, timings=timings,
                              files=files, sections=sections)
        text = json.dumps(doc, indent=2, allow_nan=False)
        (tmp / RESULT_FILE).write_text(text + "\n", encoding="utf-8")
    return doc


def confined(folder: str | os.PathLike, name: object, source: str | None = None) -> Path:
    """``folder / name``, refused unless it stays inside ``folder``.

    A saved folder is data: a name from ``result.json`` (``files``) or a file of
    the format is refused when it is absolute, holds ``..``, or resolves (through
    symbolic links) to a place outside the folder.

    Raises
    ------
    InputError
        Naming ``source`` (the file the name came from) and the entry.
    """
    where = f"{source}: " if source else ""
    if not isinstance(name, str) or not name or "\x00" in name:
        raise InputError(f"{where}file entry {name!r} is not a file name")
    pure, win = PurePosixPath(name), PureWindowsPath(name)
    if pure.is_absolute() or win.drive or win.root or name.startswith("~"):
        raise InputError(f"{where}file entry {name!r} is an absolute path: a result "
                         "folder's files must lie inside it")
    if ".." in pure.parts or ".." in win.parts:
        raise InputError(f"{where}file entry {name!r} leaves the result folder ('..')")
    root = Path(folder).resolve()
    target = Path(folder) / name
    resolved = target.resolve()
    if resolved != root and root not in resolved.parents:
        raise InputError(f"{where}file entry {name!r} leads outside the result folder "
                         f"(to {str(resolved)!r})")
    return target


@dataclass
class SavedFiles:
    """The files of a saved result for a reader: a local folder (each file confined to
    it) or a published output at a URL (each file checked against its manifest)."""

    path: str | os.PathLike
    published: PublishedOutput | None = None

    @property
    def label(self) -> str:
        """The result file, for messages."""
        if self.published is not None:
            return repr(f"{os.fspath(self.path).rstrip('/')}/{RESULT_FILE}")
        return repr(str(Path(self.path) / RESULT_FILE))

    def has(self, name: str) -> bool:
        if self.published is not None:
            return self.published.has(name)
        return confined(self.path, name, self.label).exists()

    def read_bytes(self, name: str) -> bytes:
        """The bytes of ``name`` (refused outside the folder or not as published)."""
        if self.published is not None:
            return self.published.read_bytes(name)
        file = confined(self.path, name, self.label)
        try:
            return file.read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read {str(file)!r}: {exc}") from None


def open_result(path: str | os.PathLike) -> tuple[dict[str, Any], SavedFiles]:
    """``result.json`` of a result folder or URL, checked (:func:`read_result`), and
    its files."""
    if is_url(path):
        files = SavedFiles(path, read_published(os.fspath(path), RESULT_FOLDER))
        data = files.read_bytes(RESULT_FILE)
    else:
        file = Path(path) / RESULT_FILE
        if not file.is_file():
            raise InputError(f"{str(file)!r} does not exist: not an output folder of dlmm "
                             "fit nor a saved result")
        files = SavedFiles(path)
        data = files.read_bytes(RESULT_FILE)
    label = files.label
    try:
        doc = json.loads(data.decode("utf-8"))
    except ValueError as exc:
        raise InputError(f"cannot read {label}: {exc}") from None
    schema = doc.get("schema") if isinstance(doc, dict) else None
    if not isinstance(schema, str) or not schema.startswith("dlmm.result/"):
        raise InputError(f"{label} is not a dlmm result (schema {schema!r})")
    if schema != SCHEMA:
        raise InputError(f"{label} has schema {schema!r}; this dlmm reads {SCHEMA!r}")
    names = doc.get("files", [])
    if not isinstance(names, list):
        raise InputError(f"{label}: 'files' must be a list of file names")
    if files.published is None:
        for name in [*names, SUMMARY_FILE, RANDOM_EFFECTS_FILE, VC_EFFECTS_FILE, FITTED_FILE]:
            confined(path, name, label)
    else:
        for name in names:
            if not isinstance(name, str) or not files.published.has(name):
                raise InputError(f"{label}: file entry {name!r} is not in the manifest")
    return doc, files


def read_result(path: str | os.PathLike) -> dict[str, Any]:
    """``result.json`` of a result folder (or a result published at a URL), checked to
    be schema ``dlmm.result/2``.

    Every file of the folder a reader may open (``result.json`` itself, the
    files of the format and each entry of ``files``) must lie inside the
    folder (:func:`confined`); at a URL, be listed by the manifest.

    Raises
    ------
    InputError
        No such folder or file, not JSON, another schema, or a file outside
        the folder.
    """
    return open_result(path)[0]
