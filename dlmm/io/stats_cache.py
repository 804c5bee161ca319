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
Group labels are text, integers, floats or booleans.

A manifest is a JSON object: ``schema``; ``model_key`` and ``model_hash``;
``engine`` (``"grouped"``); ``spec`` (the learned specification,
``FormulaSpec.to_dict``); ``centering`` (the shifts every file was summed
with: ``xy_shift``, ``z_shift``, ``x_intercept``, ``z_intercept``);
``files``, a mapping from each input file's path to its ``identity``, its
``stats`` file name, that file's ``sha256`` and ``levels`` (the distinct
values of each categorical column in that input file); ``created`` and
``dlmm`` (the version that wrote it); and optionally ``aggregate``: ``files``
(each input file's path and the ``stats`` name of the per-file sums it
includes), ``pieces`` (a list of ``{"stats", "sha256"}``: archives in
``DIR/aggregate/`` holding the keyed cross-products of all those files,
merged by group label, whole groups per piece, without row totals) and
``totals`` (``{"stats", "sha256"}``: an archive of the summed row totals).
A refit uses the aggregate only when every file it names is present with
the same per-file ``stats`` name (so the same identity); otherwise it adds
the per-file sums of the unchanged files again. The aggregate is never
corrected by subtracting a file's sums. Older manifests without an
aggregate are read as before (the item is optional, so the format version
is unchanged).

Writing is all-or-nothing: every file is written under a temporary name in
the same folder and renamed into place (``os.replace``), stats files first,
the manifest last; stats files the new manifest no longer names are removed
after it is in place.

What is refused, what is rebuilt
--------------------------------
* A folder that exists, is not empty and has no marker, or a marker of
  another schema (another format version): refused with an error naming it;
  nothing in it is touched.
* A manifest that is not valid JSON or not of this schema, inside a cache
  folder: a warning, and every file's sums are rebuilt from the data.
* A stats file that is missing, unreadable or whose SHA-256 differs from the
  manifest's: a warning, and that input file is read again.
* An aggregate item that is malformed, or an aggregate piece or totals
  archive that fails its check: a warning, and the per-file sums are added
  instead (then a new aggregate is written).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import io
import json
import logging
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import InputError
from ..kernels.block import KeyedCrossProducts
from ..kernels.crossprod import GroupCrossProducts
from ..kernels.pieces import RowTotals
from .folders import check_not_input

SCHEMA = "dlmm.stats-cache/1"
MARKER = "dlmm-cache.json"
STATS_DIR = "stats"
AGGREGATE_DIR = "aggregate"

logger = logging.getLogger("dlmm")

_CP_FIELDS = ("n", "zz", "zr", "wz_group", "wz_slot", "wz", "wr", "ww_group", "ww_slot_a",
              "ww_slot_b", "ww")
_TOTAL_ARRAYS = ("xy_cross", "missing_by_column", "infinite_by_column", "z_cross")
_MANIFEST_KEYS = {"schema": str, "model_hash": str, "spec": dict, "centering": dict,
                  "files": dict}


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
        if tmp.exists():
            tmp.unlink()


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
    return arrays


def _write_npz(arrays: dict[str, np.ndarray], path: str) -> dict[str, Any]:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    data = buffer.getvalue()
    write_atomic(Path(path), data)
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
                     z_cross=arrays["z_cross"])


def save_sums(keyed: KeyedCrossProducts, totals: RowTotals, path: str) -> dict[str, Any]:
    """Write one input file's sums to ``path`` (atomically); its name, SHA-256 and size."""
    return _write_npz({**_keyed_arrays(keyed), **_totals_arrays(totals)}, path)


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
        A folder that is not a statistics cache, or one of another format version.
    """

    def __init__(self, root: str | os.PathLike, inputs: dict | None = None):
        if "://" in str(root) and not str(root).startswith("file://"):
            raise InputError(f"--cache {str(root)!r}: the statistics cache must be a local "
                             "(or shared) folder, not a URL")
        self.root = Path(str(root)[len("file://"):] if str(root).startswith("file://")
                         else root)
        if inputs:
            check_not_input(self.root, inputs, option="--cache")
        marker = self.root / MARKER
        if self.root.exists() and not self.root.is_dir():
            raise InputError(f"--cache {str(self.root)!r} is a file, not a folder")
        if self.root.is_dir() and any(self.root.iterdir()):
            self._check_marker(marker)
        else:
            self.root.mkdir(parents=True, exist_ok=True)
            write_atomic(marker, (json.dumps({"schema": SCHEMA}) + "\n").encode())
        (self.root / STATS_DIR).mkdir(exist_ok=True)
        (self.root / AGGREGATE_DIR).mkdir(exist_ok=True)

    def _check_marker(self, marker: Path) -> None:
        where = f"--cache {str(self.root)!r}"
        try:
            doc = json.loads(marker.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(f"{where} is not empty and is not a dlmm statistics cache (no "
                             f"{MARKER}): choose an empty or new folder") from None
        except (OSError, ValueError) as exc:
            raise InputError(f"{where}: cannot read its {MARKER}: {exc}") from None
        schema = doc.get("schema") if isinstance(doc, dict) else None
        if schema != SCHEMA:
            raise InputError(f"{where} is a cache of format {schema!r}; this dlmm reads "
                             f"{SCHEMA!r}: remove the folder or choose another")

    def manifest_path(self, model_hash: str) -> Path:
        return self.root / f"manifest-{model_hash[:16]}.json"

    def stats_path(self, name: str) -> str:
        return str(self.root / STATS_DIR / name)

    def aggregate_path(self, name: str) -> str:
        return str(self.root / AGGREGATE_DIR / name)

    def read_manifest(self, model_hash: str) -> dict[str, Any] | None:
        """This model's manifest, or None: none yet, or one that cannot be trusted
        (then a warning says so and the cache is rebuilt)."""
        path = self.manifest_path(model_hash)
        if not path.exists():
            return None
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            ok = isinstance(doc, dict) and all(isinstance(doc.get(k), t)
                                               for k, t in _MANIFEST_KEYS.items())
            ok = ok and doc["schema"] == SCHEMA and doc["model_hash"] == model_hash
            ok = ok and all(isinstance(e, dict) and {"identity", "stats", "sha256", "levels"}
                            <= set(e) for e in doc["files"].values())
        except (OSError, ValueError) as exc:
            doc, ok = None, False
            logger.warning("statistics cache manifest %s cannot be read (%s)", path, exc)
        if not ok:
            logger.warning("statistics cache manifest %s is not a valid %s manifest: "
                           "rebuilding the cache from the data", path, SCHEMA)
            return None
        if "aggregate" in doc and not _valid_aggregate(doc["aggregate"]):
            logger.warning("statistics cache manifest %s: its aggregate is not valid; "
                           "adding the per-file sums instead", path)
            del doc["aggregate"]
        return doc

    def write_manifest(self, model_hash: str, doc: dict[str, Any],
                       previous: dict[str, Any] | None) -> None:
        """Put the manifest in place, then remove the stats files only ``previous`` named."""
        from .jsonable import jsonable

        doc = dict(doc, schema=SCHEMA, model_hash=model_hash,
                   created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
        text = json.dumps(jsonable(doc), indent=1, allow_nan=False, sort_keys=True)
        write_atomic(self.manifest_path(model_hash), (text + "\n").encode("utf-8"))
        if previous:
            keep = {e["stats"] for e in doc["files"].values()}
            for entry in previous["files"].values():
                self._remove(self.stats_path, entry.get("stats"), keep)
            keep = set(aggregate_names(doc.get("aggregate")))
            for name in aggregate_names(previous.get("aggregate")):
                self._remove(self.aggregate_path, name, keep)

    @staticmethod
    def _remove(where, name: Any, keep: set[str]) -> None:
        if isinstance(name, str) and name not in keep and "/" not in name \
                and name.endswith(".npz"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(where(name))


def _valid_aggregate(agg: Any) -> bool:
    def named(e: Any) -> bool:
        return isinstance(e, dict) and isinstance(e.get("stats"), str) \
            and isinstance(e.get("sha256"), str)

    return (isinstance(agg, dict) and isinstance(agg.get("files"), dict)
            and all(isinstance(v, str) for v in agg["files"].values())
            and isinstance(agg.get("pieces"), list) and all(map(named, agg["pieces"]))
            and named(agg.get("totals")))


def aggregate_names(agg: dict[str, Any] | None) -> list[str]:
    """The file names (in ``DIR/aggregate/``) of a manifest's aggregate item."""
    if not agg:
        return []
    return [e["stats"] for e in agg.get("pieces", [])] + [agg["totals"]["stats"]]
