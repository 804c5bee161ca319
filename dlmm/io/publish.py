"""Writing an output at a URL: the run prefix, filled and then published by its manifest.

The layout, the manifest and the rules are :mod:`dlmm.io.store`'s; this module
writes them: :func:`staged_prefix` (and :func:`staged_output`, which takes a
local folder too) yields the run prefix to fill, reads every file back for its
size and SHA-256, and publishes the manifest in one PUT; on failure it deletes
the run. :func:`clean_stale_runs` deletes the runs of writers that are gone.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..exceptions import InputError
from .folders import _OWNER, OutputKind, _owner, _writer_gone, staged_folder
from .store import (
    _RUN,
    MANIFEST,
    MANIFEST_SCHEMA,
    RUNS,
    _manifest_document,
    _recognises,
    check_output_prefix,
    is_url,
    local_path,
)

# -- the staged run ------------------------------------------------------------------


class StoreFile:
    """One file of a staged run: ``str()`` is its URL; ``write_text`` and ``write_bytes``
    put it in one request; ``mkdir`` does nothing (stores have no folders)."""

    def __init__(self, fs, path: str):
        self.fs, self.path = fs, path

    def __str__(self) -> str:
        return self.fs.unstrip_protocol(self.path)

    def __truediv__(self, name: str) -> StoreFile:
        return StoreFile(self.fs, f"{self.path}/{name}")

    def write_bytes(self, data: bytes) -> int:
        self.fs.pipe_file(self.path, data)
        return len(data)

    def write_text(self, text: str, encoding: str = "utf-8") -> int:
        return self.write_bytes(text.encode(encoding))

    def mkdir(self, *args: Any, **kwargs: Any) -> None:
        return None

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


def _sha256(fs, path: str) -> str:
    digest = hashlib.sha256()
    with fs.open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _run_files(fs, run: str) -> list[dict[str, Any]]:
    """Every file under ``run`` with its size and SHA-256 (read back from the store)."""
    fs.invalidate_cache(run)
    found = fs.find(run, detail=True)
    files = []
    for path in sorted(found):
        info = found[path]
        if info.get("type", "file") != "file":
            continue
        name = path[len(run) + 1:]
        files.append({"name": name, "size": int(info["size"]), "sha256": _sha256(fs, path)})
    return files


@contextmanager
def staged_prefix(url: str, overwrite: bool = False, *, kind: OutputKind,
                  inputs: Mapping[str, object] | None = None) -> Iterator[StoreFile]:
    """A run prefix under ``url`` to fill; published by the manifest on success.

    On an exception the run's files are deleted and ``url`` keeps what it had
    published. See the module docstring for the layout and the refusals.

    Yields
    ------
    StoreFile
        The run's prefix: ``prefix / name`` is a file, ``str(prefix / name)`` its URL.
    """
    fs, root = check_output_prefix(url, overwrite, kind=kind, inputs=inputs)
    clean_stale_runs(fs, root)
    run = f"{RUNS}/{_owner()}-{secrets.token_hex(4)}"
    staged = StoreFile(fs, f"{root}/{run}")
    try:
        yield staged
        files = _run_files(fs, staged.path)
        if kind.marker not in {f["name"] for f in files}:
            raise InputError(f"{url!r}: the run wrote no {kind.marker}; nothing published")
        old = _published_run(fs, root, url, overwrite, kind)
        doc = {"schema": MANIFEST_SCHEMA, "kind": kind.schema, "marker": kind.marker,
               "run": run, "writer": _owner(),
               "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
               "files": files}
        fs.pipe_file(f"{root}/{MANIFEST}", (json.dumps(doc, indent=2) + "\n").encode())
    except BaseException:
        _remove(fs, staged.path)
        raise
    if old is not None and old != run:
        _remove(fs, f"{root}/{old}")


def _published_run(fs, root: str, url: str, overwrite: bool, kind: OutputKind) -> str | None:
    """Just before publishing: the run the current manifest names (to delete after), or
    None; refused when a manifest appeared and not ``overwrite`` or is of another kind."""
    doc = _manifest_document(fs, root)
    if doc is None:
        return None
    if not overwrite:  # appeared while we worked
        raise InputError(f"{url!r} exists; pass --overwrite to replace it")
    if not _recognises(doc, (kind,)):
        raise InputError(f"--overwrite refused: {url!r} changed while the run worked and "
                         f"is not {kind.description}")
    run = doc.get("run")
    return run if isinstance(run, str) and _RUN.fullmatch(run) else None


def _remove(fs, path: str) -> None:
    try:
        fs.rm(path, recursive=True)
    except FileNotFoundError:
        pass
    except Exception:  # noqa: BLE001 - a leftover run is cleaned by the next writer
        pass
    fs.invalidate_cache(path)


def clean_stale_runs(fs, root: str) -> list[str]:
    """Delete the runs under ``root/_runs`` that the manifest does not publish and whose
    writer is gone (same host, no such process); returns their paths."""
    doc = _manifest_document(fs, root)
    published = doc.get("run") if isinstance(doc, dict) else None
    try:
        fs.invalidate_cache(f"{root}/{RUNS}")
        entries = fs.ls(f"{root}/{RUNS}", detail=False)
    except (FileNotFoundError, NotADirectoryError):
        return []
    done = []
    for entry in entries:
        name = entry.rstrip("/").rsplit("/", 1)[-1]
        owner = _OWNER.match(name)
        if owner is None or f"{RUNS}/{name}" == published or not _writer_gone(owner):
            continue
        _remove(fs, f"{root}/{RUNS}/{name}")
        done.append(f"{root}/{RUNS}/{name}")
    return done


@contextmanager
def staged_output(path: str | os.PathLike, overwrite: bool = False, *, kind: OutputKind,
                  inputs: Mapping[str, object] | None = None) -> Iterator[Path | StoreFile]:
    """:func:`dlmm.io.folders.staged_folder` for a local path, :func:`staged_prefix` for
    a URL: yields the folder (or run prefix) to fill; ``str(folder / name)`` is a path
    or URL that Dask writes to (fsspec: the one file-system layer of every read and
    write)."""
    if is_url(path):
        with staged_prefix(os.fspath(path), overwrite, kind=kind, inputs=inputs) as run:
            yield run
    else:
        with staged_folder(local_path(path), overwrite, kind=kind, inputs=inputs) as tmp:
            yield tmp
