"""The input files of a run and their identities, from the store's metadata alone.

A nightly pipeline asks two questions before it reads a byte of data: which
files make up the input, and which of them changed since the last run. Both
are answered from listings and ``stat``/``info`` calls (fsspec for URLs), never
by opening a file.

A file's identity is its path, its size and, as the store gives them, its
modification time (``st_mtime_ns`` for local files) and its ETag or checksum
(S3's ``ETag``, GCS's ``md5Hash``/``crc32c``...). Two identities are equal only
when all of these are. The inputs' fingerprint is the SHA-256 of the sorted
identities: equal fingerprints mean the same files, unchanged.

Which files are data follows :mod:`dlmm.distributed.sources`: in a folder, the
files ending in ``.parquet``, ``.parq`` or ``.pq`` (in subfolders too), except
names starting with ``_`` or ``.``; a file named explicitly, or matched by a
glob, is always data.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any

from ..distributed.sources import PARQUET_EXTENSIONS, _check_local_paths
from ..exceptions import InputError

#: fsspec ``info`` keys that identify a file's content, in order of preference.
_CONTENT_KEYS = ("ETag", "etag", "md5Hash", "crc32c", "checksum", "sha256")
#: fsspec ``info`` keys of a modification time.
_TIME_KEYS = ("mtime", "LastModified", "updated", "last_modified", "modified")


@dataclass(frozen=True)
class FileIdentity:
    """What says that a file is the one seen before.

    Attributes
    ----------
    path : str
        Absolute local path, or the URL as fsspec names it (with its protocol).
    size : int
    modified : str
        Modification time as the store gives it (local files: ``st_mtime_ns``).
    content : str
        ETag or checksum where the store has one, else ``""``.
    """

    path: str
    size: int
    modified: str
    content: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "modified": self.modified,
                "content": self.content}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FileIdentity:
        return cls(str(d["path"]), int(d["size"]), str(d["modified"]), str(d.get("content", "")))


def _is_data_name(relative: str) -> bool:
    parts = relative.replace("\\", "/").split("/")
    return (not any(p.startswith((".", "_")) for p in parts)
            and parts[-1].lower().endswith(PARQUET_EXTENSIONS))


def _local_identity(path: str) -> FileIdentity:
    st = os.stat(path)
    return FileIdentity(os.path.abspath(path), int(st.st_size), str(st.st_mtime_ns))


def _local_files(path: str) -> list[str]:
    if os.path.isdir(path):
        out = []
        for root, dirs, names in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
            out += [os.path.join(root, n) for n in sorted(names)
                    if _is_data_name(n)]
        if not out:
            raise InputError(f"Parquet folder {path!r} holds no Parquet files")
        return out
    if any(ch in path for ch in "*?["):
        found = sorted(p for p in glob.glob(path) if os.path.isfile(p))
        if not found:
            raise InputError(f"Parquet path {path!r} matches no file")
        return found
    if not os.path.exists(path):
        raise InputError(f"Parquet path {path!r} does not exist")
    return [path]


def _remote_identities(url: str) -> list[FileIdentity]:
    import fsspec

    fs, _token, paths = fsspec.get_fs_token_paths(url)
    protocol = fs.protocol[0] if isinstance(fs.protocol, (tuple, list)) else fs.protocol
    out = []
    for root in paths:
        if fs.isdir(root):
            found = [p for p in sorted(fs.find(root))
                     if _is_data_name(p[len(root.rstrip("/")) + 1:])]
        else:
            found = [root]
        if not found:
            raise InputError(f"Parquet data {url!r} holds no Parquet files")
        for p in found:
            info = fs.info(p)
            content = next((str(info[k]) for k in _CONTENT_KEYS if info.get(k)), "")
            modified = next((str(info[k]) for k in _TIME_KEYS if info.get(k)), "")
            out.append(FileIdentity(f"{protocol}://{p}", int(info.get("size") or 0),
                                    modified, content))
    if not out:
        raise InputError(f"Parquet data {url!r} matches no file")
    return out


def input_files(data: Any) -> list[FileIdentity]:
    """The data files of Parquet input ``data`` (a path, folder, glob, URL or a list of
    those), with their identities, sorted by path; no file is opened.

    Raises
    ------
    InputError
        A path that does not exist, a folder without data files, a glob matching
        nothing, or input that is not Parquet paths.
    """
    items = list(data) if isinstance(data, (list, tuple)) else [data]
    if not items or not all(isinstance(d, (str, os.PathLike)) for d in items):
        raise InputError("the statistics cache and input fingerprints need Parquet "
                         "path(s) or URL(s) as data")
    found: dict[str, FileIdentity] = {}
    for item in map(str, items):
        if "://" in item and not item.startswith("file://"):
            try:
                identities = _remote_identities(item)
            except InputError:
                raise
            except Exception as exc:  # fsspec and its stores raise many types
                text = " ".join(str(exc).split())
                raise InputError(f"cannot list Parquet data {item!r}: {type(exc).__name__}: "
                                 f"{text}") from None
        else:
            local = item[len("file://"):] if item.startswith("file://") else item
            _check_local_paths([item])  # the messages of dlmm.distributed.sources
            identities = [_local_identity(p) for p in _local_files(local)]
        for ident in identities:
            found[ident.path] = ident
    return [found[k] for k in sorted(found)]


def fingerprint(files: list[FileIdentity]) -> str:
    """SHA-256 (hex) of the sorted identities: equal for the same, unchanged files."""
    rows = sorted(json.dumps(f.to_dict(), sort_keys=True) for f in files)
    return hashlib.sha256("\n".join(rows).encode("utf-8")).hexdigest()


def digest(obj: Any) -> str:
    """SHA-256 (hex) of a JSON-safe object written with sorted keys."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
