"""``result.save``: a result to its folder, and the folder back as plain data.

The folder is the one :mod:`dlmm.io.result_folder` defines, the same that
``dlmm fit -o`` writes: JSON for estimates and metadata, Parquet for the
random effects, never pickle. :func:`read_saved` returns what a loaded result
is rebuilt from (:func:`dlmm.results.loaded.load_result`).

A saved folder is data, never code: :func:`read_saved` refuses formulas that
hold anything but what dlmm writes (:mod:`dlmm.spec.saved_formula`), before
formulaic evaluates them, and files that lie outside the folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from ..exceptions import InputError
from ..spec.saved_formula import check_saved_spec
from .result_folder import (
    RANDOM_EFFECTS_FILE,
    VC_EFFECTS_FILE,
    confined,
    read_result,
    write_outputs,
)


def save_result(result, path: str | os.PathLike) -> None:
    """Write ``result`` to the folder ``path`` (created; must not exist or be empty)."""
    path = Path(path)
    if path.exists() and any(path.iterdir()):
        raise InputError(f"output folder {str(path)!r} exists and is not empty")
    if path.exists():
        path.rmdir()  # empty (checked above): the writer refuses existing folders
    write_outputs(result, path)


def read_saved(path: str | os.PathLike) -> tuple[dict, pd.DataFrame, pd.DataFrame | None]:
    """The ``state`` section of a result folder's ``result.json`` and its effects tables
    (the variance-component table is None for models without components)."""
    path = Path(path)
    if not (path / "result.json").exists():
        raise InputError(f"{str(path)!r} holds no dlmm result (no result.json)")
    doc = read_result(path)  # also confines every file named in it to the folder
    source = repr(str(path / "result.json"))
    state = doc.get("state")
    if not isinstance(state, dict):
        raise InputError(f"{source} is not a dlmm result file (no state section)")
    # A saved folder is data: its formulas are checked before formulaic evaluates them.
    check_saved_spec(state.get("spec"), source)
    files = doc.get("files", [])
    re_table = pd.read_parquet(confined(path, RANDOM_EFFECTS_FILE, source))
    vc_table = (pd.read_parquet(confined(path, VC_EFFECTS_FILE, source))
                if VC_EFFECTS_FILE in files else None)
    return state, re_table, vc_table
