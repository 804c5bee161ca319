"""``dlmm summary``: print ``summary.txt`` of a fit's output folder (or URL)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..exceptions import InputError
from .errors import EXIT_OK
from .log import event


def run(args: argparse.Namespace) -> int:
    """Print the summary of ``args.result_dir`` (a folder, or a URL where ``dlmm fit
    -o`` published a result: :mod:`dlmm.io.store`); warn if that fit did not converge.

    The folder is any result folder: ``dlmm fit -o`` and ``result.save`` write one
    format (:mod:`dlmm.io.result_folder`), one folder per result (no ``model/``
    subfolder, as results of schema ``dlmm.result/1`` had); its ``result.json`` may be
    given for it. A path inside a result folder is refused naming that folder.

    Returns
    -------
    int
        0 (a missing folder or file is an :class:`~dlmm.InputError`).
    """
    from ..io.result_folder import SUMMARY_FILE, open_result
    from ..io.store import is_url, local_path

    folder = args.result_dir if is_url(args.result_dir) else Path(local_path(args.result_dir))
    if isinstance(folder, Path):
        folder = _result_folder(folder)
    doc, files = open_result(folder)
    if not files.has(SUMMARY_FILE):
        raise InputError(f"{SUMMARY_FILE} of {str(folder)!r} does not exist")
    sys.stdout.write(files.read_bytes(SUMMARY_FILE).decode("utf-8"))
    if not doc.get("converged", False):
        event("result", "this fit did not converge (result.json status %r)",
              doc.get("status"), level=logging.WARNING, status=doc.get("status"))
    return EXIT_OK


def _result_folder(path: Path) -> Path:
    """The local result folder ``path`` names: itself, or the folder of its
    ``result.json``; an :class:`~dlmm.InputError` naming the result folder ``path``
    lies in (``out/model``, ``out/random_effects.parquet``), or saying it is no folder."""
    from ..io.result_folder import RESULT_FILE

    if path.name == RESULT_FILE and path.is_file():
        return path.parent
    if path.is_dir() and (path / RESULT_FILE).is_file():
        return path
    for parent in list(path.absolute().parents)[:3]:
        if (parent / RESULT_FILE).is_file():
            raise InputError(f"RESULT_DIR {str(path)!r} lies inside the result folder "
                             f"{str(parent)!r}: give that folder (it holds the whole result)")
    if not path.is_dir():
        raise InputError(f"RESULT_DIR {str(path)!r} is not a folder")
    return path
