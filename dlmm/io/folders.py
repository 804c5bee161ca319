"""Atomic output folders: filled under a temporary sibling, renamed into place when complete.

A failed or interrupted writer leaves no folder, and readers never see a
half-written one.

Refusals (before any work: :func:`check_output_folder`)
-------------------------------------------------------
* a URL (``s3://…``): :mod:`dlmm.io.store` stages and publishes those; here it
  would become a local folder named after the scheme;
* an output that is, contains or lies inside one of the run's inputs (paths
  resolved, symbolic links followed): writing there would replace the input,
  or make the next run read the outputs as data;
* an existing folder, unless ``overwrite``; and even with ``overwrite``, a
  non-empty folder that is not a dlmm output of the kind being written. An
  output is recognised by its marker file, a JSON object whose ``schema``
  names the kind (:class:`OutputKind`): ``result.json`` (``dlmm.result/…``)
  for a result folder, ``_truth.json`` (``dlmm.truth/…``) for a data set of
  ``dlmm simulate``, ``_predictions.json`` (``dlmm.predictions/…``) for the
  predictions of ``dlmm predict``. (The two Parquet data sets' markers start
  with ``_``, so Parquet readers skip them.)

Temporary siblings
------------------
The temporary folder is ``.NAME.tmp-PID-START@HOST-XXXXXXXX``: the writer's
process id, its start time (``/proc/PID/stat`` ticks on Linux, else the
process creation time) and host. A writer killed outright (SIGKILL, power
loss) cannot remove it, so every later writer of ``NAME`` removes the
temporary siblings whose writer is gone: same host, and no process with that
id and start time. Siblings of other hosts, of live writers or without the
owner in their name are left alone. The same holds for ``.NAME.old-…``, the
previous folder moved aside during an overwrite: removed once the new folder
is in place, put back if the writer died before that.

The temporary folder is made as ``mkdir`` makes folders (mode ``0o777`` less
the umask), so the output renamed into place has the permissions of any
folder its user makes: ``drwxr-xr-x`` under a umask of 022, group-writable
under 002.
"""

from __future__ import annotations

import glob
import json
import os
import re
import secrets
import shutil
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePath

from ..exceptions import InputError


@dataclass(frozen=True)
class OutputKind:
    """A kind of folder dlmm writes, recognised by a marker file.

    Attributes
    ----------
    description : str
        For messages: ``"a dlmm result folder"``.
    marker : str
        The marker file's name in the folder.
    schema : str
        Prefix of the marker's ``schema`` value (``"dlmm.result/"``).
    """

    description: str
    marker: str
    schema: str

    def recognises(self, folder: str | os.PathLike) -> bool:
        """Whether ``folder`` holds this kind's marker (a JSON object with the schema)."""
        file = Path(folder) / self.marker
        try:
            if file.is_symlink() or not file.is_file():
                return False
            doc = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        schema = doc.get("schema") if isinstance(doc, dict) else None
        return isinstance(schema, str) and schema.startswith(self.schema)


RESULT_FOLDER = OutputKind("a dlmm result folder", "result.json", "dlmm.result/")
SIMULATED_DATA = OutputKind("a data set written by dlmm simulate", "_truth.json",
                            "dlmm.truth/")
PREDICTIONS = OutputKind("predictions written by dlmm predict", "_predictions.json",
                         "dlmm.predictions/")
#: Every kind; ``kind=None`` accepts any of them.
OUTPUT_KINDS = (RESULT_FOLDER, SIMULATED_DATA, PREDICTIONS)


# -- inputs --------------------------------------------------------------------------


def _local_roots(value: object) -> list[Path]:
    """The local paths behind an input (file, folder, glob, ``file://`` URL or a list);
    a glob stands for the folder before its first wildcard. Remote URLs are skipped."""
    items = value if isinstance(value, (list, tuple)) else [value]
    roots = []
    for item in items:
        if item is None or not isinstance(item, (str, os.PathLike)):
            continue
        text = os.fspath(item)
        if "://" in text:
            if not text.startswith("file://"):
                continue
            text = text[len("file://"):]
        path = Path(os.path.expanduser(text))
        if glob.has_magic(text):
            parts = []
            for part in path.parts:
                if glob.has_magic(part):
                    break
                parts.append(part)
            path = Path(*parts) if parts else Path(".")
        roots.append(path.resolve())
    return roots


def overlap(out: PurePath, root: PurePath) -> str | None:
    """How an output path stands to an input root: ``"is"`` it, ``"lies inside"``
    it, ``"contains"`` it, or None (apart). Local paths and URL paths alike."""
    if out == root:
        return "is"
    if root in out.parents:
        return "lies inside"
    if out in root.parents:
        return "contains"
    return None

def check_not_input(path: str | os.PathLike, inputs: Mapping[str, object],
                    option: str = "--output") -> None:
    """Refuse an output that is, contains or lies inside one of ``inputs``.

    Parameters
    ----------
    path : str or PathLike
        The output.
    inputs : mapping
        Name of the input (``"DATA"``, ``"RESULT_DIR"``) -> its path(s).
    option : str
        Name of the output option, for the message.

    Raises
    ------
    InputError
    """
    out = Path(path).resolve()
    for name, value in inputs.items():
        for root in _local_roots(value):
            how = overlap(out, root)
            if how is None:
                continue
            raise InputError(f"{option} {str(path)!r} {how} the input {name} {str(root)!r}: "
                             "refusing to write there (choose a folder outside the inputs)")


# -- the output folder ---------------------------------------------------------------


def check_output_folder(path: str | os.PathLike, overwrite: bool = False,
                        option: str = "--output", *, kind: OutputKind | None = None,
                        inputs: Mapping[str, object] | None = None) -> Path:
    """Refuse an output folder before any work is done.

    Parameters
    ----------
    path : str or PathLike
        The folder to write.
    overwrite : bool
        Whether an existing folder may be replaced: only an empty one, or one
        that ``kind`` recognises.
    option : str
        Name of the option, for the error message.
    kind : OutputKind, optional
        What is written; None: any kind of :data:`OUTPUT_KINDS` may be replaced.
    inputs : mapping, optional
        The run's inputs, name -> path(s) (:func:`check_not_input`).

    Returns
    -------
    Path

    Raises
    ------
    InputError
        ``path`` is a URL (:mod:`dlmm.io.store` writes those); is, contains or lies
        inside an input; exists (and not
        ``overwrite``, or is not a dlmm output of ``kind``); is a file; or its
        nearest existing parent is not a writable folder.
    """
    if "://" in os.fspath(path):  # else Path() makes a local folder named after the scheme
        raise InputError(f"{option} {os.fspath(path)!r} is a URL: give a local folder here "
                         "(dlmm fit -o and dlmm predict -o also take URLs)")
    out = Path(path)
    if inputs:
        check_not_input(out, inputs, option)
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise InputError(f"{option} {str(out)!r} exists and is not a folder")
        if not overwrite:
            raise InputError(
                f"{option} folder {str(out)!r} exists; pass --overwrite to replace it"
            )
        _check_replaceable(out, kind, option)
    parent = out.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{option} {str(out)!r}: cannot write in {str(parent)!r}")
    return out


def _check_replaceable(out: Path, kind: OutputKind | None, option: str) -> None:
    """An existing folder may be replaced when empty or an output of ``kind``."""
    try:
        empty = not any(out.iterdir())
    except OSError as exc:
        raise InputError(f"{option} {str(out)!r} cannot be read: {exc}") from None
    kinds = OUTPUT_KINDS if kind is None else (kind,)
    if empty or any(k.recognises(out) for k in kinds):
        return
    what = " or ".join(k.description for k in kinds)
    markers = ", ".join(k.marker for k in kinds)
    raise InputError(f"--overwrite refused: {option} {str(out)!r} is not {what} "
                     f"(no {markers} of dlmm in it); remove it yourself or choose another "
                     "folder")


@contextmanager
def staged_folder(path: str | os.PathLike, overwrite: bool = False, *,
                  kind: OutputKind | None = None,
                  inputs: Mapping[str, object] | None = None) -> Iterator[Path]:
    """A temporary sibling of ``path`` to fill; renamed to ``path`` on success.

    On an exception the temporary folder is removed and ``path`` is left as
    it was. With ``overwrite`` an existing ``path`` (empty, or an output of
    ``kind``: :func:`check_output_folder`) is replaced (moved aside, then
    deleted once the new folder is in place). Stale temporary siblings of
    ``path`` left by writers that were killed are removed first.

    Parameters
    ----------
    path : str or PathLike
    overwrite : bool
    kind : OutputKind, optional
    inputs : mapping, optional

    Yields
    ------
    Path
        The temporary folder.
    """
    out = check_output_folder(path, overwrite, kind=kind, inputs=inputs)
    parent = out.absolute().parent
    created = [p for p in [parent, *parent.parents] if not p.exists()]
    parent.mkdir(parents=True, exist_ok=True)
    clean_stale_siblings(out)
    tmp = _sibling(out, "tmp")
    try:
        yield tmp
        _move_into_place(tmp, out, overwrite, kind)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for folder in created:  # innermost first; only the empty ones we made
            try:
                folder.rmdir()
            except OSError:
                break
        raise


def _sibling(out: Path, stage: str) -> Path:
    """A new empty folder ``.NAME.<stage>-OWNER-XXXXXXXX`` beside ``out``.

    Made by ``os.mkdir`` with mode ``0o777``, so the process's umask decides its
    permissions as it does for any folder ``mkdir`` makes (``tempfile.mkdtemp``
    would make it ``0o700``, and the renamed output owner-only).
    """
    parent = out.absolute().parent
    for _ in range(100):
        folder = parent / f".{out.name}.{stage}-{_owner()}-{secrets.token_hex(4)}"
        try:
            os.mkdir(folder, 0o777)
        except FileExistsError:
            continue
        return folder
    raise FileExistsError(f"no free name for a temporary folder beside {str(out)!r}")


def _move_into_place(tmp: Path, out: Path, overwrite: bool, kind: OutputKind | None) -> None:
    old = None
    if out.exists() or out.is_symlink():
        if not overwrite:  # appeared while we worked
            raise InputError(f"folder {str(out)!r} exists; pass --overwrite to replace it")
        _check_replaceable(out, kind, "--output")  # it may have changed while we worked
        old = _sibling(out, "old")
        os.replace(out, old / out.name)
    try:
        os.replace(tmp, out)
    except BaseException:
        if old is not None:
            os.replace(old / out.name, out)
            shutil.rmtree(old, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# -- stale temporary siblings --------------------------------------------------------


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname()) or "localhost"


def _process_start(pid: int) -> str | None:
    """When process ``pid`` started (a token equal for the same process), or None when
    there is no such process (or it cannot be told)."""
    if os.path.isdir("/proc/self"):
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            if fields[0] in (b"Z", b"X"):  # a zombie: killed, not yet reaped
                return None
            return fields[19].decode()  # field 22 of stat: start time in clock ticks
        except (OSError, IndexError):
            return None
    try:
        import psutil

        return f"{psutil.Process(pid).create_time():.3f}"
    except Exception:  # psutil missing, or no such process
        return None


def _owner() -> str:
    """``PID-START@HOST`` of this process, put in the names of its temporary folders."""
    pid = os.getpid()
    return f"{pid}-{_process_start(pid) or 0}@{_host()}"


_OWNER = re.compile(r"(?P<pid>\d+)-(?P<start>[0-9.]+)@(?P<host>[A-Za-z0-9._-]+)-[a-z0-9_]+\Z")


def _writer_gone(owner: re.Match) -> bool:
    """Whether the writer named in a temporary folder's name is surely gone."""
    if owner["host"] != _host():
        return False  # another machine's writer: cannot tell
    pid = int(owner["pid"])
    if pid == os.getpid():
        return False
    start = _process_start(pid)
    if start is not None and owner["start"] != "0":
        return start != owner["start"]  # a different process now has that id
    if start is None and os.path.exists(f"/proc/{pid}/stat"):
        return True  # a zombie
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, another user's
        return False
    return False


def clean_stale_siblings(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary siblings of ``path`` whose writer is gone.

    ``.NAME.tmp-…`` folders are deleted; a ``.NAME.old-…`` folder (the previous
    output moved aside during an overwrite) is deleted when ``path`` exists and
    put back as ``path`` when it does not (the writer died between the two
    renames).

    Returns
    -------
    list of Path
        The siblings removed or put back.
    """
    out = Path(path).absolute()
    parent = out.parent
    done = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return done
    for entry in entries:
        for stage in ("tmp", "old"):
            prefix = f".{out.name}.{stage}-"
            if not entry.name.startswith(prefix):
                continue
            owner = _OWNER.match(entry.name[len(prefix):])
            if owner is None or not entry.is_dir(follow_symlinks=False):
                continue
            if not _writer_gone(owner):
                continue
            sibling = Path(entry.path)
            if stage == "old":
                inner = sibling / out.name
                if not (out.exists() or out.is_symlink()) and (
                        inner.exists() or inner.is_symlink()):
                    os.replace(inner, out)
            shutil.rmtree(sibling, ignore_errors=True)
            done.append(sibling)
    return done

