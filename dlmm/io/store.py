"""Outputs at fsspec URLs (``s3://bucket/prefix``): the layout, the refusals, the readers.

Object stores have no rename, so the all-or-nothing promise of local folders
(:mod:`dlmm.io.folders`) is kept another way. An output ``URL`` is laid out as

``URL/_runs/PID-START@HOST-XXXXXXXX/…``
    The files of one run (the same files a local folder holds), written while
    the run works; the name carries its writer, as the temporary siblings of
    local folders do.
``URL/_manifest.json``
    Written last, in one PUT (which a store applies whole or not at all): schema
    ``dlmm.manifest/1``, the kind of output (``kind``: the marker's schema, e.g.
    ``dlmm.result/``), the run holding the files (``run``) and every file of it
    with its size and SHA-256, read back from the store.

Readers trust the manifest and nothing else: a prefix without a valid manifest
holds no result (a run that was killed never wrote one), only files the manifest
lists are opened, and each is checked against its size and SHA-256 before use.
An overwrite writes a new run, replaces the manifest, then deletes the old run,
so readers see the old output or the new one, never a mixture.

Refusals (before any work: :func:`check_output`) are those of local folders: an
output that is, contains or lies inside an input (URLs of the same scheme
compared by path); an existing output unless ``overwrite``, and even then only a
published dlmm output of the kind being written (or an empty prefix); an unknown
scheme, a scheme whose fsspec backend is not installed (``s3://`` needs s3fs:
``pip install 'dlmm[s3]'``), a missing bucket or a store that cannot be reached.
Runs left by writers that are gone (same host, no such process) are deleted by
the next writer of the prefix; the published run never is.

:mod:`dlmm.io.publish` writes such outputs. Credentials and endpoints come
from the backend's usual configuration (for s3fs: ``AWS_ACCESS_KEY_ID``,
``AWS_ENDPOINT_URL``, ``~/.aws``; or fsspec's ``FSSPEC_S3_…`` variables); Dask
workers that write ``fitted.parquet`` or predictions need the same.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ..exceptions import InputError
from .folders import (
    OUTPUT_KINDS,
    OutputKind,
    check_output_folder,
    overlap,
)

MANIFEST = "_manifest.json"
MANIFEST_SCHEMA = "dlmm.manifest/1"
RUNS = "_runs"
#: Protocols whose first path component is a bucket that must exist before a write.
_BUCKETED = ("s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "oss", "r2")


def is_url(path: object) -> bool:
    """Whether ``path`` is a URL of a store (``s3://…``), not a local path or ``file://``."""
    if not isinstance(path, (str, os.PathLike)):
        return False
    text = os.fspath(path)
    return "://" in text and not text.startswith("file://")


def local_path(path: str | os.PathLike) -> str | os.PathLike:
    """``path`` without a ``file://`` scheme."""
    text = os.fspath(path)
    return text[len("file://"):] if text.startswith("file://") else path


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def open_store(url: str, option: str = "--output"):
    """The fsspec file system of ``url`` and the path in it (no trailing ``/``).

    Raises
    ------
    InputError
        An unknown scheme, or a backend that is not installed (one line, naming
        the package).
    """
    import fsspec
    from fsspec.core import split_protocol

    _check_protocol(url, split_protocol(url)[0] or "file", option)
    try:
        fs, path = fsspec.core.url_to_fs(url)
    except Exception as exc:  # backends raise their own types for bad URLs
        raise InputError(f"{option} {url!r}: {_one_line(exc)}") from None
    path = path.rstrip("/")
    if not path:
        raise InputError(f"{option} {url!r}: name a prefix inside the bucket, "
                         "e.g. s3://bucket/out")
    return fs, path


def _check_protocol(url: str, protocol: str, option: str) -> None:
    """Refuse an unknown scheme or one whose fsspec backend is not installed."""
    import fsspec

    for name in protocol.split("::"):
        try:
            fsspec.get_filesystem_class(name)
        except ValueError:
            raise InputError(f"{option} {url!r}: unknown storage scheme {name + '://'!r} "
                             "(no fsspec backend of that name)") from None
        except ImportError as exc:
            hint = " (pip install 'dlmm[s3]')" if name in ("s3", "s3a") else ""
            raise InputError(f"{option} {url!r}: the backend of {name + '://'!r} is not "
                             f"installed: {_one_line(exc)}{hint}") from None


def check_input_urls(value: object, option: str = "DATA") -> None:
    """Refuse input URLs (a path, URL or list of them) whose scheme is unknown, whose
    backend is not installed or whose bucket does not exist, in one line naming the
    URL, before anything is read."""
    items = value if isinstance(value, (list, tuple)) else [value]
    for item in items:
        if is_url(item):
            from fsspec.core import split_protocol

            url = os.fspath(item)
            protocol = split_protocol(url)[0]
            _check_protocol(url, protocol, option)
            if protocol in _BUCKETED:
                _check_bucket(url, option)


def _check_bucket(url: str, option: str) -> None:
    """Refuse an input URL whose bucket does not exist (or whose store cannot be
    reached), in one line: Dask's reader would say it in several, without the bucket."""
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(url)
    except Exception as exc:  # backends raise their own types for bad URLs
        raise InputError(f"{option} {url!r}: {_one_line(exc)}") from None
    bucket = path.strip("/").split("/", 1)[0]
    if not bucket or any(ch in bucket for ch in "*?["):
        return  # a glob over buckets: the reader says what it matches
    try:
        found = fs.exists(bucket)
    except Exception as exc:  # credentials, network, permissions: said in one line
        raise InputError(f"{option} {url!r}: cannot reach the store: {_one_line(exc)}"
                         ) from None
    if not found:
        raise InputError(f"{option} {url!r}: no bucket {bucket!r}")
    root = path.rstrip("/")
    if root != bucket and not any(ch in root for ch in "*?["):
        try:
            there = fs.exists(root)
        except Exception:  # noqa: BLE001 - the reader says what it is
            there = True
        if not there:
            raise InputError(f"{option} {url!r}: no such file or prefix in bucket "
                             f"{bucket!r}")


_RUN = re.compile(rf"{RUNS}/[A-Za-z0-9._@-]+")



# -- refusals ------------------------------------------------------------------------


def _manifest_document(fs, root: str) -> Any:
    """The parsed manifest at ``root``, ``False`` when it is not JSON, None when absent."""
    path = f"{root}/{MANIFEST}"
    fs.invalidate_cache(root)
    try:
        data = fs.cat_file(path)
    except FileNotFoundError:
        return None
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return False


def _recognises(doc: Any, kinds: tuple[OutputKind, ...]) -> bool:
    return (isinstance(doc, dict) and doc.get("schema") == MANIFEST_SCHEMA
            and any(doc.get("kind") == k.schema for k in kinds))


def _url_root(text: str) -> tuple[str, str] | None:
    """(protocol, path) of a URL input, a glob standing for the prefix before its
    first wildcard; None for local inputs."""
    if not is_url(text):
        return None
    from fsspec.core import split_protocol

    protocol, path = split_protocol(text)
    parts = []
    for part in PurePosixPath(path).parts:
        if any(ch in part for ch in "*?["):
            break
        parts.append(part)
    return protocol, "/".join(parts).strip("/")


def check_not_input_url(url: str, root: str, inputs: Mapping[str, object],
                        option: str = "--output") -> None:
    """Refuse an output URL that is, contains or lies inside an input URL of its scheme."""
    from fsspec.core import split_protocol

    protocol = split_protocol(url)[0]
    out = PurePosixPath(root.strip("/"))
    for name, value in inputs.items():
        items = value if isinstance(value, (list, tuple)) else [value]
        for item in items:
            if not isinstance(item, (str, os.PathLike)):
                continue
            found = _url_root(os.fspath(item))
            if found is None or found[0] != protocol:
                continue
            root_in = PurePosixPath(found[1])
            how = overlap(out, root_in)
            if how is None:
                continue
            raise InputError(f"{option} {url!r} {how} the input {name} {os.fspath(item)!r}: "
                             "refusing to write there (choose a prefix outside the inputs)")


def check_output_prefix(url: str, overwrite: bool = False, option: str = "--output", *,
                        kind: OutputKind | None = None,
                        inputs: Mapping[str, object] | None = None):
    """Refuse an output URL before any work is done (the rules of local folders).

    Returns
    -------
    fs, path
        The file system and the prefix's path in it.

    Raises
    ------
    InputError
    """
    fs, root = open_store(url, option)
    if inputs:
        check_not_input_url(url, root, inputs, option)
    try:
        if fs.protocol and set(_protocols(fs)) & set(_BUCKETED):
            bucket = root.split("/", 1)[0]
            if not fs.exists(bucket):
                raise InputError(f"{option} {url!r}: no bucket {bucket!r} (create it first)")
        fs.invalidate_cache(root)
        if fs.isfile(root):
            raise InputError(f"{option} {url!r} exists and is not a prefix (it is a file)")
        try:
            entries = [e.rstrip("/").rsplit("/", 1)[-1] for e in fs.ls(root, detail=False)]
        except FileNotFoundError:
            entries = []
        doc = _manifest_document(fs, root) if MANIFEST in entries else None
    except InputError:
        raise
    except Exception as exc:  # credentials, network, permissions: said in one line
        raise InputError(f"{option} {url!r}: cannot reach the store: {_one_line(exc)}"
                         ) from None
    others = [e for e in entries if e not in (MANIFEST, RUNS)]
    if doc is None and not others:
        return fs, root  # empty, or only runs that were never published
    if not overwrite:
        raise InputError(f"{option} {url!r} exists; pass --overwrite to replace it")
    kinds = OUTPUT_KINDS if kind is None else (kind,)
    if others or not _recognises(doc, kinds):
        what = " or ".join(k.description for k in kinds)
        raise InputError(f"--overwrite refused: {option} {url!r} is not {what} "
                         f"(no valid {MANIFEST} of dlmm, or other files beside it); "
                         "remove it yourself or choose another prefix")
    return fs, root


def _protocols(fs) -> tuple[str, ...]:
    return (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)


# -- one check for local folders and URLs --------------------------------------------


def check_output(path: str | os.PathLike, overwrite: bool = False, option: str = "--output",
                 *, kind: OutputKind | None = None,
                 inputs: Mapping[str, object] | None = None) -> str | Path:
    """:func:`dlmm.io.folders.check_output_folder` for a local path (``file://`` too),
    :func:`check_output_prefix` for a URL; returns the path or the URL."""
    if is_url(path):
        check_output_prefix(os.fspath(path), overwrite, option, kind=kind, inputs=inputs)
        return os.fspath(path)
    return check_output_folder(local_path(path), overwrite, option, kind=kind, inputs=inputs)


# -- readers -------------------------------------------------------------------------


@dataclass
class PublishedOutput:
    """A published output at a URL: its manifest, and its files checked against it."""

    url: str
    fs: Any
    root: str
    run: str
    files: dict[str, dict[str, Any]]

    def has(self, name: str) -> bool:
        """Whether ``name`` is a file of the output, or a folder of its files."""
        return name in self.files or any(f.startswith(name + "/") for f in self.files)

    def file_url(self, name: str) -> str:
        return self.fs.unstrip_protocol(f"{self.root}/{self.run}/{name}")

    def read_bytes(self, name: str) -> bytes:
        """The bytes of the file ``name``, refused unless the manifest lists it with
        their size and SHA-256."""
        entry = self.files.get(name)
        if entry is None:
            raise InputError(f"{self.url!r}: {name} is not in its {MANIFEST}")
        try:
            data = self.fs.cat_file(f"{self.root}/{self.run}/{name}")
        except FileNotFoundError:
            raise InputError(f"{self.url!r}: {name}, listed in its {MANIFEST}, is gone "
                             "(deleted or overwritten while being read)") from None
        if len(data) != entry["size"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise InputError(f"{self.url!r}: {name} does not match its {MANIFEST} (size or "
                             "SHA-256): changed after it was published; not reading it")
        return data


def _safe_name(name: object) -> bool:
    if not isinstance(name, str) or not name or "\x00" in name or "\\" in name:
        return False
    parts = name.split("/")
    return not name.startswith("/") and all(p not in ("", ".", "..") for p in parts)


def read_published(url: str, kind: OutputKind, option: str = "RESULT_DIR") -> PublishedOutput:
    """The published output of ``kind`` at ``url``.

    Raises
    ------
    InputError
        No manifest (nothing published: not written by dlmm, or its writer did
        not finish), an invalid one, another kind, or names leaving the run.
    """
    fs, root = open_store(url, option)
    try:
        doc = _manifest_document(fs, root)
    except Exception as exc:  # credentials, network
        raise InputError(f"{option} {url!r}: cannot reach the store: {_one_line(exc)}"
                         ) from None
    if doc is None:
        raise InputError(f"{option} {url!r} holds no published dlmm output (no {MANIFEST}): "
                         "not written by dlmm, or its writer did not finish")
    source = f"{url!r}: {MANIFEST}"
    if not isinstance(doc, dict) or doc.get("schema") != MANIFEST_SCHEMA:
        raise InputError(f"{source} is not a dlmm manifest (schema {MANIFEST_SCHEMA!r})")
    if doc.get("kind") != kind.schema:
        raise InputError(f"{source}: {url!r} is not {kind.description} "
                         f"(kind {doc.get('kind')!r})")
    run = doc.get("run")
    if not isinstance(run, str) or not _RUN.fullmatch(run) or ".." in run:
        raise InputError(f"{source}: run {run!r} is not a run of this prefix")
    files: dict[str, dict[str, Any]] = {}
    entries = doc.get("files")
    if not isinstance(entries, list):
        raise InputError(f"{source}: 'files' must be a list")
    for entry in entries:
        ok = (isinstance(entry, dict) and _safe_name(entry.get("name"))
              and isinstance(entry.get("size"), int) and isinstance(entry.get("sha256"), str))
        if not ok:
            raise InputError(f"{source}: file entry {entry!r} is not a file of the run "
                             "(name inside it, size, sha256)")
        files[entry["name"]] = entry
    return PublishedOutput(url=url, fs=fs, root=root, run=run, files=files)
