"""The checks a statistics cache manifest passes before it is trusted.

A manifest (:mod:`dlmm.io.stats_cache`) says which sums of which files the
cache holds; a wrong one makes a wrong fit (a file counted twice, or left
out), so it is used only when it passes every check below, and otherwise
rebuilt from the data with a warning saying why:

* its checksum (:func:`manifest_checksum`) matches its content: no hand
  edit, no bad merge;
* every item the reader uses is there, with its type: the specification and
  centring, ``dtypes``, ``shape``, and each file's identity (path, size,
  modification time, content tag), stats name, SHA-256, size, levels and
  counts;
* its counts add up: the aggregate names exactly the manifest's files and
  stats names, its file and row counts are theirs, and its group count lies
  between the largest file's and their sum.

A manifest written before checksums cannot be told from an edited one: it is
rebuilt once.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

SCHEMA = "dlmm.stats-cache/1"


def manifest_checksum(doc: dict[str, Any]) -> str:
    """The SHA-256 of the JSON text of ``doc`` without its ``checksum`` item (sorted
    keys, separators ``(",", ":")``, ASCII escapes): what a manifest's checksum is."""
    body = {k: v for k, v in doc.items() if k != "checksum"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)


def _sha(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 \
        and all(c in "0123456789abcdef" for c in value)


def _name(value: Any) -> bool:
    return isinstance(value, str) and value.endswith(".npz") and "/" not in value \
        and "\\" not in value and not value.startswith(".")


def _archive(value: Any) -> bool:
    return isinstance(value, dict) and _name(value.get("stats")) and _sha(value.get("sha256"))


_COUNTS = ("n_rows", "n_dropped", "n_groups")
_SPEC_KEYS = {"formula": str, "columns": list, "levels": dict}


def _entry_problem(path: str, entry: Any) -> str | None:
    where = f"files[{path!r}]"
    if not isinstance(entry, dict):
        return f"{where} is not an object"
    ident = entry.get("identity")
    if not isinstance(ident, dict):
        return f"{where} has no 'identity'"
    if ident.get("path") != path or not _count(ident.get("size")) \
            or not isinstance(ident.get("modified"), str) \
            or not isinstance(ident.get("content", ""), str):
        return f"{where}'s identity (path, size, modified, content) is missing or malformed"
    if not _name(entry.get("stats")) or not _sha(entry.get("sha256")) \
            or not _count(entry.get("bytes")):
        return f"{where}'s 'stats', 'sha256' or 'bytes' is missing or malformed"
    levels = entry.get("levels")
    if not isinstance(levels, dict) or not all(isinstance(v, list) for v in levels.values()):
        return f"{where}'s 'levels' is missing or malformed"
    if not all(_count(entry.get(k)) for k in _COUNTS):
        return f"{where}'s counts ({', '.join(_COUNTS)}) are missing or malformed"
    return None


def _aggregate_problem(agg: Any, files: dict[str, dict]) -> str | None:
    if not isinstance(agg, dict) or not isinstance(agg.get("files"), dict) \
            or not isinstance(agg.get("pieces"), list) \
            or not all(map(_archive, agg["pieces"])) or not _archive(agg.get("totals")) \
            or not all(_count(agg.get(k)) for k in ("n_files", *_COUNTS)):
        return "its aggregate is missing an item or malformed"
    named = {p: e["stats"] for p, e in files.items()}
    if agg["files"] != named:
        gone = sorted(set(named) - set(agg["files"]))[:2]
        more = sorted(set(agg["files"]) - set(named))[:2]
        return ("its aggregate does not name exactly the files of the manifest"
                + (f" (not {', '.join(map(repr, gone))})" if gone else "")
                + (f" (also {', '.join(map(repr, more))})" if more else ""))
    sums = {k: sum(e[k] for e in files.values()) for k in ("n_rows", "n_dropped")}
    if agg["n_files"] != len(files) or any(agg[k] != v for k, v in sums.items()):
        return (f"its aggregate counts {agg['n_files']} files and {agg['n_rows']} rows, its "
                f"files {len(files)} and {sums['n_rows']}")
    if not max((e["n_groups"] for e in files.values()), default=0) <= agg["n_groups"] \
            <= sum(e["n_groups"] for e in files.values()):
        return f"its aggregate's {agg['n_groups']} groups are not those of its files"
    return None


def manifest_problem(doc: Any, model_hash: str) -> str | None:
    """Why a manifest (parsed JSON) cannot be trusted, or None.

    Checked, in order: the schema and model; the checksum
    (:func:`manifest_checksum`); every item the reader uses, with its type (the
    specification and centring, ``dtypes``, each file's identity, stats name,
    SHA-256, size, levels and counts, ``shape``); and the aggregate's consistency
    with the files (it names exactly the manifest's files and stats names, and
    its file, row and group counts are theirs)."""
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        return f"it is not a {SCHEMA} manifest"
    if doc.get("model_hash") != model_hash:
        return "it is the manifest of another model"
    if "checksum" not in doc:
        return "it has no checksum (written by an older dlmm, or edited)"
    if doc["checksum"] != manifest_checksum(doc):
        return "its checksum does not match its content (edited by hand, or a bad merge)"
    for key, kind in (("engine", str), ("spec", dict), ("centering", dict),
                      ("dtypes", dict), ("files", dict), ("shape", dict)):
        if not isinstance(doc.get(key), kind):
            return f"its {key!r} is missing or not a JSON {kind.__name__}"
    if doc["engine"] != "grouped":
        return f"its engine {doc['engine']!r} is not 'grouped'"
    spec = doc["spec"]
    for key, kind in _SPEC_KEYS.items():
        if not isinstance(spec.get(key), kind):
            return f"its 'spec.{key}' is missing or malformed"
    if not {"groups", "re_formula", "vc_formula", "stateful"} <= set(spec):
        return "its 'spec' is missing an item (groups, re_formula, vc_formula, stateful)"
    centering = doc["centering"]
    for key in ("xy_shift", "z_shift"):
        shift = centering.get(key)
        if not isinstance(shift, list) or not all(map(_number, shift)):
            return f"its 'centering.{key}' is missing or not a list of numbers"
    for key in ("x_intercept", "z_intercept"):
        if key not in centering or not (centering[key] is None or _count(centering[key])):
            return f"its 'centering.{key}' is missing or malformed"
    if not all(isinstance(v, str) for v in doc["dtypes"].values()):
        return "its 'dtypes' are not text"
    for path, entry in doc["files"].items():
        problem = _entry_problem(path, entry)
        if problem is not None:
            return f"its {problem}"
    if not all(_count(doc["shape"].get(k)) for k in ("rows", "groups")):
        return "its 'shape' (rows, groups) is missing or malformed"
    if "aggregate" in doc:
        return _aggregate_problem(doc["aggregate"], doc["files"])
    return None
