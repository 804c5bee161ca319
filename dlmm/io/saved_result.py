"""``result.save``: a result to its folder, and the folder back as plain data.

The folder is the one :mod:`dlmm.io.result_folder` defines, the same that
``dlmm fit -o`` writes: JSON for estimates and metadata, Parquet for the
random effects, never pickle. :func:`read_saved` returns what a loaded result
is rebuilt from (:func:`dlmm.results.loaded.load_result`).

A saved folder is data, never code: :func:`read_saved` refuses formulas that
hold anything but what dlmm writes (:mod:`dlmm.spec.saved_formula`), before
formulaic evaluates them, and files that lie outside the folder. A URL
(``s3://bucket/prefix``) is written and read the same way, published by a
manifest (:mod:`dlmm.io.store`).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pandas as pd

from ..exceptions import InputError
from ..spec.saved_formula import check_saved_spec
from .result_folder import (
    RANDOM_EFFECTS_FILE,
    RESULT_FILE,
    VC_EFFECTS_FILE,
    open_result,
    write_outputs,
)
from .store import is_url


def save_result(result, path: str | os.PathLike) -> None:
    """Write ``result`` to the folder ``path`` (created; must not exist or be empty), or
    publish it at a URL (nothing may be published there yet)."""
    if is_url(path):
        write_outputs(result, os.fspath(path))
        return
    path = Path(path)
    if path.exists() and any(path.iterdir()):
        raise InputError(f"output folder {str(path)!r} exists and is not empty")
    if path.exists():
        path.rmdir()  # empty (checked above): the writer refuses existing folders
    write_outputs(result, path)


def read_saved(path: str | os.PathLike) -> tuple[dict, pd.DataFrame, pd.DataFrame | None]:
    """The ``state`` section of a result folder's ``result.json`` and its effects tables
    (the variance-component table is None for models without components); ``path``
    may be a URL where a result was published."""
    if not is_url(path):
        path = Path(path)
        if not (path / RESULT_FILE).exists():
            raise InputError(f"{str(path)!r} holds no dlmm result (no result.json)")
    doc, saved = open_result(path)  # confines every file named in it to the folder
    source = saved.label
    state = doc.get("state")
    if not isinstance(state, dict):
        raise InputError(f"{source} is not a dlmm result file (no state section)")
    # A saved folder is data: its formulas are checked before formulaic evaluates them.
    check_saved_spec(state.get("spec"), source)
    files = doc.get("files", [])
    re_table = pd.read_parquet(io.BytesIO(saved.read_bytes(RANDOM_EFFECTS_FILE)))
    vc_table = (pd.read_parquet(io.BytesIO(saved.read_bytes(VC_EFFECTS_FILE)))
                if VC_EFFECTS_FILE in files else None)
    return state, re_table, vc_table
