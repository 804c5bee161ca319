"""Atomic output folders: filled under a temporary sibling, renamed into place when complete.

A failed or interrupted writer leaves no folder, and readers never see a
half-written one. An existing folder is replaced only with ``overwrite``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..exceptions import InputError


def check_output_folder(path: str | os.PathLike, overwrite: bool = False,
                        option: str = "--output") -> Path:
    """Refuse an output folder before any work is done.

    Parameters
    ----------
    path : str or PathLike
        The folder to write.
    overwrite : bool
        Whether an existing folder may be replaced.
    option : str
        Name of the option, for the error message.

    Returns
    -------
    Path

    Raises
    ------
    InputError
        ``path`` exists (and not ``overwrite``), is a file, or its nearest
        existing parent is not a writable folder.
    """
    out = Path(path)
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise InputError(f"{option} {str(out)!r} exists and is not a folder")
        if not overwrite:
            raise InputError(
                f"{option} folder {str(out)!r} exists; pass --overwrite to replace it"
            )
    parent = out.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{option} {str(out)!r}: cannot write in {str(parent)!r}")
    return out


@contextmanager
def staged_folder(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """A temporary sibling of ``path`` to fill; renamed to ``path`` on success.

    On an exception the temporary folder is removed and ``path`` is left as
    it was. With ``overwrite`` an existing ``path`` is replaced (moved aside,
    then deleted once the new folder is in place).

    Parameters
    ----------
    path : str or PathLike
    overwrite : bool

    Yields
    ------
    Path
        The temporary folder.
    """
    out = check_output_folder(path, overwrite)
    parent = out.absolute().parent
    created = [p for p in [parent, *parent.parents] if not p.exists()]
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=parent))
    try:
        yield tmp
        _move_into_place(tmp, out, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for folder in created:  # innermost first; only the empty ones we made
            try:
                folder.rmdir()
            except OSError:
                break
        raise


def _move_into_place(tmp: Path, out: Path, overwrite: bool) -> None:
    old = None
    if out.exists():
        if not overwrite:  # appeared while we worked
            raise InputError(f"folder {str(out)!r} exists; pass --overwrite to replace it")
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.absolute().parent))
        os.replace(out, old / out.name)
    try:
        os.replace(tmp, out)
    except BaseException:
        if old is not None:
            os.replace(old / out.name, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


