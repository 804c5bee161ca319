"""``dlmm summary``: print ``summary.txt`` of a fit's output folder."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..exceptions import InputError
from .errors import EXIT_OK
from .log import event


def run(args: argparse.Namespace) -> int:
    """Print the summary of ``args.result_dir``; warn if that fit did not converge.

    Returns
    -------
    int
        0 (a missing folder or file is an :class:`~dlmm.InputError`).
    """
    from ..io.result_folder import SUMMARY_FILE, read_result

    folder = Path(args.result_dir)
    if not folder.is_dir():
        raise InputError(f"RESULT_DIR {str(folder)!r} is not a folder")
    doc = read_result(folder)
    file = folder / SUMMARY_FILE
    if not file.is_file():
        raise InputError(f"{str(file)!r} does not exist")
    sys.stdout.write(file.read_text(encoding="utf-8"))
    if not doc.get("converged", False):
        event("result", "this fit did not converge (result.json status %r)",
              doc.get("status"), level=logging.WARNING, status=doc.get("status"))
    return EXIT_OK
