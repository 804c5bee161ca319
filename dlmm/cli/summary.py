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

    Returns
    -------
    int
        0 (a missing folder or file is an :class:`~dlmm.InputError`).
    """
    from ..io.result_folder import SUMMARY_FILE, open_result
    from ..io.store import is_url, local_path

    folder = args.result_dir if is_url(args.result_dir) else Path(local_path(args.result_dir))
    if isinstance(folder, Path) and not folder.is_dir():
        raise InputError(f"RESULT_DIR {str(folder)!r} is not a folder")
    doc, files = open_result(folder)
    if not files.has(SUMMARY_FILE):
        raise InputError(f"{SUMMARY_FILE} of {str(folder)!r} does not exist")
    sys.stdout.write(files.read_bytes(SUMMARY_FILE).decode("utf-8"))
    if not doc.get("converged", False):
        event("result", "this fit did not converge (result.json status %r)",
              doc.get("status"), level=logging.WARNING, status=doc.get("status"))
    return EXIT_OK
