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
    publish it at a URL (nothing may be published there yet).

    Raises
    ------
    InputError
        ``path`` is a file, or a folder that is not empty.
    """
    write_outputs(result, save_target(path))


def save_target(path: str | os.PathLike) -> str | Path:
    """Where ``save`` writes: a URL as it is, or a local folder that does not exist
    (an empty one is removed first: the writers refuse existing folders).

    Raises
    ------
    InputError
        ``path`` is a file, or a folder that is not empty.
    """
    if is_url(path):
        return os.fspath(path)
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"cannot save to {str(path)!r}: it is a file, not a folder "
                         "(give a new or empty folder)")
    if path.exists() and any(path.iterdir()):
        raise InputError(f"output folder {str(path)!r} exists and is not empty")
    if path.exists():
        path.rmdir()  # empty (checked above)
    return path


def read_saved(path: str | os.PathLike, opened: tuple | None = None
               ) -> tuple[dict, pd.DataFrame, pd.DataFrame | None]:
    """The ``state`` section of a result folder's ``result.json`` and its effects tables
    (the variance-component table is None for models without components); ``path``
    may be a URL where a result was published. ``opened``: what
    :func:`~dlmm.io.result_folder.open_result` gave for ``path``, if already read."""
    if not is_url(path):
        path = Path(path)
        if not (path / RESULT_FILE).exists():
            raise InputError(f"{str(path)!r} holds no dlmm result (no result.json)")
    # open_result confines every file named in it to the folder
    doc, saved = opened if opened is not None else open_result(path)
    source = saved.label
    state = doc.get("state")
    if not isinstance(state, dict):
        raise InputError(f"{source} is not a dlmm result file (no state section)")
    # A saved folder is data: its formulas are checked before formulaic evaluates them.
    check_saved_spec(state.get("spec"), source)
    files = doc.get("files", [])
    n_groups, k_re, n_slots = _table_sizes(state, source)
    re_table = _bounded_table(saved, RANDOM_EFFECTS_FILE, source, rows=n_groups,
                              exact=True, columns=2 * k_re + 1)
    vc_table = (_bounded_table(saved, VC_EFFECTS_FILE, source,
                               rows=n_groups * max(n_slots, 1), exact=False,
                               columns=len(VC_COLUMNS))
                if VC_EFFECTS_FILE in files else None)
    return state, re_table, vc_table


#: The columns of ``vc_effects.parquet``.
VC_COLUMNS = ("group", "component", "column", "effect", "variance")
#: Uncompressed bytes a table may hold per cell (group labels are the longest values)
#: beyond a fixed allowance: a bound on what a small compressed file can expand to.
BYTES_PER_CELL = 4096
BYTES_FIXED = 1 << 20


def _table_sizes(state: dict, source: str) -> tuple[int, int, int]:
    """``(n_groups, random effects, variance-component columns)`` of a saved state: the
    sizes its tables must have."""
    fit = state.get("fit") if isinstance(state.get("fit"), dict) else {}
    names = state.get("names") if isinstance(state.get("names"), dict) else {}
    n_groups = fit.get("n_groups")
    re_names = names.get("exog_re_names")
    vc_columns = names.get("vc_column_names")
    if (not isinstance(n_groups, int) or isinstance(n_groups, bool) or n_groups < 0
            or not isinstance(re_names, list) or not isinstance(vc_columns, list)
            or not all(isinstance(c, list) for c in vc_columns)):
        raise InputError(f"{source}: its state lacks n_groups or the random-effect names "
                         "(not a result dlmm wrote)")
    return n_groups, len(re_names), sum(len(c) for c in vc_columns)


def _bounded_table(saved, name: str, source: str, *, rows: int, exact: bool,
                   columns: int) -> pd.DataFrame:
    """The Parquet table ``name`` of a saved result, read only when its footer agrees
    with the saved state: ``rows`` rows (at most, unless ``exact``), at most
    ``columns`` columns (the index of the random-effects table is one), and at most
    :data:`BYTES_PER_CELL` uncompressed bytes a cell. A small compressed file that
    would expand to far more than the state says is refused before it is decoded."""
    import pyarrow.parquet as pq

    data = saved.read_bytes(name)  # the compressed bytes (checked against a manifest)
    where = f"{source}: {name}"
    try:
        meta = pq.read_metadata(io.BytesIO(data))
    except Exception as exc:  # pyarrow raises several types for a bad footer
        raise InputError(f"{where} is not a Parquet file ({exc})") from None
    found = meta.num_rows
    if found > rows or (exact and found != rows):
        raise InputError(f"{where} has {found} rows where the saved state (n_groups "
                         f"{rows if exact else 'and its effects'}) allows "
                         f"{'' if exact else 'at most '}{rows}: not the table of this "
                         "result; not reading it")
    if meta.num_columns > columns:
        raise InputError(f"{where} has {meta.num_columns} columns where the saved state "
                         f"allows {columns}; not reading it")
    expanded = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    limit = max(rows, 1) * columns * BYTES_PER_CELL + BYTES_FIXED
    if expanded > limit:
        raise InputError(f"{where} expands to {expanded} bytes, more than {limit} for "
                         f"{rows} rows; not reading it")
    table = pd.read_parquet(io.BytesIO(data))
    if len(table) != found:  # a footer that lied about its row groups
        raise InputError(f"{where} holds {len(table)} rows, its footer says {found}")
    return table
