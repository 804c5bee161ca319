"""The statistics cache folder (format ``dlmm.stats-cache/1``): per-file sums kept between runs.

Layout of a cache folder ``DIR``::

    DIR/dlmm-cache.json             marker: {"schema": "dlmm.stats-cache/1"}
    DIR/manifest-<model>.json       one per model specification (see below)
    DIR/stats/<key>.npz             the sums of one input file for one model
    DIR/aggregate/<model>-<run>-*.npz   the merged sums of all files of a run (optional)

``<model>`` is the first 16 hex digits of the SHA-256 of the model key (the
formula, groups, ``re_formula``, ``vc_formula`` and group name as given);
``<key>`` that of the model key and the file's identity
(:class:`dlmm.io.fingerprint.FileIdentity`), so a file's sums never overwrite
another's.

A stats file is a NumPy ``.npz`` archive (read with ``allow_pickle=False``)
holding the file's per-group cross-products keyed by group label (``labels``,
``label_kind``, ``n``, ``zz``, ``zr``, ``wz_group``, ``wz_slot``, ``wz``,
``wr``, ``ww_group``, ``ww_slot_a``, ``ww_slot_b``, ``ww``: the fields of
:class:`dlmm.kernels.crossprod.GroupCrossProducts`) and its row totals
(``xy_cross``, ``n_rows``, ``n_dropped``, ``missing_by_column``,
``infinite_by_column``, ``z_cross``: :class:`dlmm.kernels.pieces.RowTotals`).
Group labels are text, integers, floats or booleans. With a residual model of
parameters (``residual_by``, ``residual_ar1``) a stats file holds the file's
residual components instead (:mod:`dlmm.structure.residual_cache` names its
entries), and the manifest has no aggregate.

A manifest is a JSON object: ``schema``; ``model_key`` and ``model_hash``;
``engine`` (``"grouped"``); ``spec`` (the learned specification,
``FormulaSpec.to_dict``); ``centering`` (the shifts every file was summed
with: ``xy_shift``, ``z_shift``, ``x_intercept``, ``z_intercept``);
``dtypes`` (each column's pandas dtype); ``files``, a mapping from each input
file's path to its ``identity``, its ``stats`` file name, that file's
``sha256`` and ``bytes``, ``levels`` (the distinct values of each categorical
column in that input file) and the counts of its sums: ``n_rows`` (rows
used), ``n_dropped`` (rows dropped for missing values) and ``n_groups``;
``shape`` (``rows`` and ``groups`` of the whole data at the last run: what
:func:`dlmm.structure.cached.cache_pays` decides on); ``created`` and
``dlmm`` (the version that wrote it); optionally ``aggregate``: ``files``
(each input file's path and the ``stats`` name of the per-file sums it
includes), ``pieces`` (a list of ``{"stats", "sha256"}``: archives in
``DIR/aggregate/`` holding the keyed cross-products of all those files,
merged by group label, whole groups per piece, without row totals),
``totals`` (``{"stats", "sha256"}``: an archive of the summed row totals)
and its counts ``n_files``, ``n_rows``, ``n_dropped``, ``n_groups``; and
last ``checksum``: the SHA-256 of the manifest's JSON without this item,
written with sorted keys, separators ``(",", ":")`` and ASCII escapes
(:func:`dlmm.io.cache_manifest.manifest_checksum`).
A refit uses the aggregate only when every file it names is present with
the same per-file ``stats`` name (so the same identity); otherwise it adds
the per-file sums of the unchanged files again. The aggregate is never
corrected by subtracting a file's sums.

Writing is all-or-nothing: every file is written under a temporary name in
the same folder and renamed into place (``os.replace``), stats files first,
the manifest last; stats files the new manifest no longer names are removed
after it is in place.

What is refused, what is rebuilt
--------------------------------
* A folder that exists, is not empty and has no marker, or a marker of
  another schema (another format version): refused with an error naming it;
  nothing in it is touched.
* A folder that cannot be written (a read-only file system, no permission,
  a full disk): refused with an error naming it (:func:`check_cache_folder`
  probes it before any data are read; a write that fails later is the same
  error). A run never fits without keeping the sums it was asked to keep.
* A manifest that is not valid JSON, not of this schema, without its
  checksum (written before checksums, or edited) or whose checksum does not
  match (edited by hand, a bad merge), that lacks an item the reader needs
  or whose counts do not add up (an aggregate that does not name exactly
  the files of the manifest, or whose row count is not the sum of theirs),
  inside a cache folder: a warning saying why, and every file's sums are
  rebuilt from the data.
* A stats file that is missing, unreadable or whose SHA-256 differs from the
  manifest's: a warning, and that input file is read again.
* An aggregate piece or totals archive that fails its check, or totals whose
  row count is not the aggregate's: a warning, and the per-file sums are
  added instead (then a new aggregate is written).
* Sums whose rows do not add up to the manifest's counts when assembled
  (:mod:`dlmm.structure.cached`): a warning, and every file is read again.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import io
import json
import logging
import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import InputError
from ..kernels.block import KeyedCrossProducts
from ..kernels.crossprod import GroupCrossProducts
from ..kernels.pieces import RowTotals
from .cache_manifest import SCHEMA, manifest_checksum, manifest_problem
from .folders import check_not_input

MARKER = "dlmm-cache.json"
STATS_DIR = "stats"
AGGREGATE_DIR = "aggregate"

logger = logging.getLogger("dlmm")

_CP_FIELDS = ("n", "zz", "zr", "wz_group", "wz_slot", "wz", "wr", "ww_group", "ww_slot_a",
              "ww_slot_b", "ww")
_TOTAL_ARRAYS = ("xy_cross", "missing_by_column", "infinite_by_column", "z_cross")


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` under a temporary name in the same folder, then rename:
    readers see the old file or the new one, never part of one."""
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:12]}")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):  # (none was made, or it cannot be removed)
            tmp.unlink()


def not_writable(root: Path, exc: OSError) -> InputError:
    """The error of a cache folder that cannot be written (one line, naming it)."""
    reason = exc.strerror or type(exc).__name__
    return InputError(f"--cache {str(root)!r}: the statistics cache folder cannot be "
                      f"written ({reason}): make it writable, or choose another folder")


def _write_cache_file(path: Path, data: bytes) -> None:
    """:func:`write_atomic` into ``DIR/stats`` or ``DIR/aggregate``: an OSError is
    :func:`not_writable` of ``DIR``."""
    try:
        write_atomic(path, data)
    except OSError as exc:
        raise not_writable(path.parent.parent, exc) from None


def _label_array(labels: np.ndarray) -> tuple[np.ndarray, str]:
    labels = np.asarray(labels)
    if labels.dtype.kind == "O" and labels.shape[0]:  # one Python type: its array
        kinds = {type(v) for v in labels.tolist()}
        if len(kinds) == 1 and next(iter(kinds)) in (int, float, bool):
            labels = np.array(labels.tolist())
    if labels.dtype.kind in "iu":
        return labels.astype(np.int64), "int"
    if labels.dtype.kind == "f":
        return labels.astype(float), "float"
    if labels.dtype.kind == "b":
        return labels, "bool"
    if labels.dtype.kind in "UO" and all(isinstance(v, str) for v in labels.tolist()):
        return labels.astype(str), "text"
    kinds = sorted({type(v).__name__ for v in labels.tolist()})
    raise InputError(f"group labels of type {', '.join(kinds)} cannot be kept in the "
                     "statistics cache (text, integers, floats or booleans): convert the "
                     "group column")


def _keyed_arrays(keyed: KeyedCrossProducts) -> dict[str, np.ndarray]:
    labels, kind = _label_array(keyed.labels)
    arrays = {"labels": labels, "label_kind": np.array(kind)}
    arrays.update({f: np.asarray(getattr(keyed.cp, f)) for f in _CP_FIELDS})
    return arrays


def _totals_arrays(totals: RowTotals) -> dict[str, np.ndarray]:
    arrays = {"n_rows": np.array(totals.n_rows, dtype=float),
              "n_dropped": np.array(totals.n_dropped, dtype=float)}
    arrays.update({f: np.asarray(getattr(totals, f)) for f in _TOTAL_ARRAYS})
    if totals.log_weights or totals.bad_weights:  # precision weights (dlmm.spec.residual)
        arrays["log_weights"] = np.array(totals.log_weights, dtype=float)
        arrays["bad_weights"] = np.array(totals.bad_weights, dtype=float)
    return arrays


def _write_npz(arrays: dict[str, np.ndarray], path: str) -> dict[str, Any]:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    data = buffer.getvalue()
    _write_cache_file(Path(path), data)
    return {"stats": Path(path).name, "sha256": hashlib.sha256(data).hexdigest(),
            "bytes": len(data)}


def _read_npz(path: str, sha256: str, build):
    """``build(arrays)`` of the archive at ``path``, or a sentence saying why it cannot
    be trusted (missing, unreadable, or not the bytes the manifest names)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return f"cannot read {path!r}: {exc.strerror or exc}"
    if hashlib.sha256(data).hexdigest() != sha256:
        return f"{path!r} does not match its SHA-256 in the manifest"
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        return build(arrays)
    except (KeyError, ValueError, OSError, TypeError) as exc:
        return f"cannot read {path!r}: {exc}"


def _keyed_of(arrays: dict[str, np.ndarray]) -> KeyedCrossProducts:
    labels = arrays["labels"]
    if str(arrays["label_kind"]) == "text":
        labels = labels.astype(object)
    return KeyedCrossProducts(labels, GroupCrossProducts(*(arrays[f] for f in _CP_FIELDS)))


def _totals_of(arrays: dict[str, np.ndarray]) -> RowTotals:
    return RowTotals(xy_cross=arrays["xy_cross"], n_rows=float(arrays["n_rows"]),
                     n_dropped=float(arrays["n_dropped"]),
                     missing_by_column=arrays["missing_by_column"],
                     infinite_by_column=arrays["infinite_by_column"],
                     z_cross=arrays["z_cross"],
                     log_weights=float(arrays.get("log_weights", 0.0)),
                     bad_weights=float(arrays.get("bad_weights", 0.0)))


def keyed_arrays(keyed: KeyedCrossProducts, prefix: str = "") -> dict[str, np.ndarray]:
    """The archive entries of keyed cross-products, named ``prefix + field``."""
    return {prefix + k: v for k, v in _keyed_arrays(keyed).items()}


def keyed_of(arrays: dict[str, np.ndarray], prefix: str = "") -> KeyedCrossProducts:
    """Keyed cross-products from the entries :func:`keyed_arrays` named."""
    return _keyed_of({k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)})


def totals_arrays(totals: RowTotals, prefix: str = "") -> dict[str, np.ndarray]:
    """The archive entries of row totals, named ``prefix + field``."""
    return {prefix + k: v for k, v in _totals_arrays(totals).items()}


def totals_of(arrays: dict[str, np.ndarray], prefix: str = "") -> RowTotals:
    """Row totals from the entries :func:`totals_arrays` named."""
    return _totals_of({k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)})


def label_array(labels: np.ndarray) -> tuple[np.ndarray, str]:
    """Labels as an archive can keep them (text, integers, floats, booleans) and their
    kind; an error naming the types of others."""
    return _label_array(labels)


def save_arrays(arrays: dict[str, np.ndarray], path: str) -> dict[str, Any]:
    """Write an archive of ``arrays`` to ``path`` (atomically): its name, SHA-256, size."""
    return _write_npz(arrays, path)


def load_arrays(path: str, sha256: str, build):
    """``build(arrays)`` of the archive at ``path``, or a sentence saying why it cannot be
    trusted (missing, unreadable, or not the bytes the manifest names)."""
    return _read_npz(path, sha256, build)


def sums_counts(keyed: KeyedCrossProducts, totals: RowTotals) -> dict[str, int]:
    """The counts a manifest keeps of sums: ``n_rows``, ``n_dropped``, ``n_groups``."""
    return {"n_rows": int(round(totals.n_rows)), "n_dropped": int(round(totals.n_dropped)),
            "n_groups": int(keyed.labels.shape[0])}


def save_sums(keyed: KeyedCrossProducts, totals: RowTotals, path: str) -> dict[str, Any]:
    """Write one input file's sums to ``path`` (atomically); its name, SHA-256 and size
    (``bytes``), and its counts (:func:`sums_counts`)."""
    info = _write_npz({**_keyed_arrays(keyed), **_totals_arrays(totals)}, path)
    return {**info, **sums_counts(keyed, totals)}


def load_sums(path: str, sha256: str) -> tuple[KeyedCrossProducts, RowTotals] | str:
    """The sums written by :func:`save_sums`, or a sentence saying why they cannot be
    trusted (missing, unreadable, or not the bytes the manifest names)."""
    return _read_npz(path, sha256, lambda a: (_keyed_of(a), _totals_of(a)))


def save_keyed(keyed: KeyedCrossProducts, path: str) -> dict[str, Any]:
    """Write one aggregate piece (keyed cross-products, no row totals) to ``path``."""
    return _write_npz(_keyed_arrays(keyed), path)


def load_keyed(path: str, sha256: str) -> KeyedCrossProducts | str:
    """An aggregate piece written by :func:`save_keyed`, or why it cannot be trusted."""
    return _read_npz(path, sha256, _keyed_of)


def save_totals(totals: RowTotals, path: str) -> dict[str, Any]:
    """Write an aggregate's row totals to ``path``."""
    return _write_npz(_totals_arrays(totals), path)


def load_totals(path: str, sha256: str) -> RowTotals | str:
    """Row totals written by :func:`save_totals`, or why they cannot be trusted."""
    return _read_npz(path, sha256, _totals_of)


def _local_root(root: str | os.PathLike) -> Path:
    text = str(root)
    if "://" in text and not text.startswith("file://"):
        raise InputError(f"--cache {text!r}: the statistics cache must be a local "
                         "(or shared) folder, not a URL")
    return Path(text[len("file://"):] if text.startswith("file://") else root)


def _check_marker(root: Path) -> None:
    where = f"--cache {str(root)!r}"
    try:
        doc = json.loads((root / MARKER).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{where} is not empty and is not a dlmm statistics cache (no "
                         f"{MARKER}): choose an empty or new folder") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{where}: cannot read its {MARKER}: {exc}") from None
    schema = doc.get("schema") if isinstance(doc, dict) else None
    if schema != SCHEMA:
        raise InputError(f"{where} is a cache of format {schema!r}; this dlmm reads "
                         f"{SCHEMA!r}: remove the folder or choose another")


def _probe(root: Path, folder: Path) -> None:
    """Make and remove a file in ``folder``: the one sure test that it can be written
    (permissions, a read-only file system, quotas; also for root)."""
    try:
        handle, name = tempfile.mkstemp(prefix=".dlmm-probe-", dir=folder)
    except OSError as exc:
        raise not_writable(root, exc) from None
    os.close(handle)
    try:
        os.unlink(name)
    except OSError as exc:
        raise not_writable(root, exc) from None


def check_cache_folder(root: str | os.PathLike, inputs: dict | None = None) -> Path:
    """Refuse a statistics cache folder before any data are read; make nothing.

    Parameters
    ----------
    root : str or PathLike
        The folder (``--cache``).
    inputs : mapping, optional
        The run's inputs (``{"DATA": path}``): a cache that is, contains or lies
        inside one is refused.

    Returns
    -------
    Path
        The folder.

    Raises
    ------
    InputError
        A URL; an input; a file; a folder that is not a statistics cache (or one
        of another format version); a folder that cannot be written (a file is
        made and removed in it and in its ``stats`` and ``aggregate`` folders),
        or, when it does not exist yet, whose nearest existing parent cannot be.
    """
    path = _local_root(root)
    if inputs:
        check_not_input(path, inputs, option="--cache")
    if path.exists() and not path.is_dir():
        raise InputError(f"--cache {str(path)!r} is a file, not a folder")
    if path.is_dir():
        try:
            empty = not any(path.iterdir())
        except OSError as exc:
            raise InputError(f"--cache {str(path)!r} cannot be read: "
                             f"{exc.strerror or exc}") from None
        if not empty:
            _check_marker(path)
        for folder in (path, path / STATS_DIR, path / AGGREGATE_DIR):
            if folder.is_dir():
                _probe(path, folder)
            elif folder.exists():
                raise InputError(f"--cache {str(path)!r}: {str(folder)!r} is not a folder")
        return path
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"--cache {str(path)!r}: {str(parent)!r} is not a folder")
    _probe(path, parent)
    return path


class StatsCache:
    """A statistics cache folder (see the module docstring).

    Parameters
    ----------
    root : str or PathLike
        The folder; made (with the marker) if it does not exist.
    inputs : mapping, optional
        The run's inputs (``{"DATA": path}``): a cache that is, contains or lies
        inside one is refused.

    Raises
    ------
    InputError
        A folder that is not a statistics cache, one of another format version,
        or one that cannot be written (:func:`check_cache_folder`).
    """

    def __init__(self, root: str | os.PathLike, inputs: dict | None = None):
        self.root = check_cache_folder(root, inputs)
        self.distrust: str | None = None  # why the last manifest read was not trusted
        try:
            if not self.root.is_dir() or not any(self.root.iterdir()):
                self.root.mkdir(parents=True, exist_ok=True)
                write_atomic(self.root / MARKER, (json.dumps({"schema": SCHEMA}) + "\n").encode())
            (self.root / STATS_DIR).mkdir(exist_ok=True)
            (self.root / AGGREGATE_DIR).mkdir(exist_ok=True)
        except OSError as exc:
            raise not_writable(self.root, exc) from None

    def manifest_path(self, model_hash: str) -> Path:
        return self.root / f"manifest-{model_hash[:16]}.json"

    def stats_path(self, name: str) -> str:
        return str(self.root / STATS_DIR / name)

    def aggregate_path(self, name: str) -> str:
        return str(self.root / AGGREGATE_DIR / name)

    def read_manifest(self, model_hash: str) -> dict[str, Any] | None:
        """This model's manifest, or None: none yet, or one that cannot be trusted
        (then a warning says why, :attr:`distrust` keeps it, and the cache is rebuilt).

        A manifest is trusted only when its checksum matches its content, every item
        the reader needs is there with its type, and its counts add up
        (:func:`dlmm.io.cache_manifest.manifest_problem`)."""
        self.distrust = None
        path = self.manifest_path(model_hash)
        if not path.exists():
            return None
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            problem = manifest_problem(doc, model_hash)
        except (OSError, ValueError) as exc:
            doc, problem = None, f"it cannot be read ({exc})"
        if problem is not None:
            self.distrust = problem
            logger.warning("statistics cache manifest %s cannot be trusted: %s; rebuilding "
                           "the cache from the data", path, problem)
            return None
        return doc

    def write_manifest(self, model_hash: str, doc: dict[str, Any],
                       previous: dict[str, Any] | None) -> None:
        """Put the manifest in place (with its checksum), then remove the stats files
        only ``previous`` named."""
        from .jsonable import jsonable

        doc = jsonable(dict(doc, schema=SCHEMA, model_hash=model_hash,
                            created=_dt.datetime.now(_dt.timezone.utc).isoformat(
                                timespec="seconds")))
        doc.pop("checksum", None)
        doc["checksum"] = manifest_checksum(doc)
        text = json.dumps(doc, indent=1, allow_nan=False, sort_keys=True)
        try:
            write_atomic(self.manifest_path(model_hash), (text + "\n").encode("utf-8"))
        except OSError as exc:
            raise not_writable(self.root, exc) from None
        if previous:
            keep = {e["stats"] for e in doc["files"].values()}
            for entry in previous["files"].values():
                self._remove(self.stats_path, entry.get("stats"), keep)
            keep = set(aggregate_names(doc.get("aggregate")))
            for name in aggregate_names(previous.get("aggregate")):
                self._remove(self.aggregate_path, name, keep)

    @staticmethod
    def _remove(where, name: Any, keep: set[str]) -> None:
        # Best effort: a file no manifest names is never read (only a little disk).
        if isinstance(name, str) and name not in keep and "/" not in name \
                and name.endswith(".npz"):
            with contextlib.suppress(OSError):
                os.unlink(where(name))


def aggregate_names(agg: dict[str, Any] | None) -> list[str]:
    """The file names (in ``DIR/aggregate/``) of a manifest's aggregate item."""
    if not agg:
        return []
    return [e["stats"] for e in agg.get("pieces", [])] + [agg["totals"]["stats"]]
