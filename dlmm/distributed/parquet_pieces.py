"""The pieces of local Parquet input, read by a task of their own with pyarrow.

A Dask DataFrame from ``dask.dataframe.read_parquet`` reads partition ``j`` in a task
of Dask's (fsspec byte ranges, then pyarrow), which a chunk task then receives as a
dependency. The one pass needs only the rows, once: :func:`parquet_pieces` reads
the plan Dask made of the data (the files and row groups of each partition, in its
order) and :func:`read_piece` reads one piece inside the task that uses it, with
pyarrow straight from the file, into the frame Dask's reader would give (the same
columns and types: text as ``string[pyarrow]`` when Dask converts strings, the
index the file's pandas metadata describes). Each column comes out a block of its
own (no copy of the columns into one 2-D block).

Only plain local data take this way: a Dask frame straight from ``read_parquet``
(or the columns of one), local files, no filters, no index read from the files, no
hive partition columns, no types mapped by the user. Anything else (a URL, a frame
the user built) returns None and is read by Dask as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd


@dataclass(frozen=True)
class ParquetPiece:
    """One chunk of the one pass: a file, or some of its row groups.

    Attributes
    ----------
    path : str
        A local file.
    row_groups : tuple of int or None
        The row groups read (None: the whole file).
    """

    path: str
    row_groups: tuple[int, ...] | None = None


@dataclass(frozen=True)
class ParquetPieces:
    """The pieces of a Dask frame read from local Parquet, and how to read them.

    Attributes
    ----------
    pieces : list of ParquetPiece
        In Dask's partition order (before Dask fuses partitions of few columns).
    columns : list of str
        The columns read, in the frame's order.
    strings : bool
        Whether text becomes ``string[pyarrow]`` (Dask's ``dataframe.convert-string``).
    """

    pieces: list[ParquetPiece]
    columns: list[str]
    strings: bool


def _read_parquet_expr(frame) -> Any:
    """The ``ReadParquetFSSpec`` expression behind ``frame`` (a read, or a selection of
    its columns), or None."""
    expr = frame.expr.simplify()
    if type(expr).__name__ == "Projection":
        if not isinstance(expr.operand("columns"), list):
            return None
        expr = expr.operand("frame")
    return expr if type(expr).__name__ == "ReadParquetFSSpec" else None


def _piece(part: Any) -> ParquetPiece | None:
    piece = part.get("piece") if isinstance(part, dict) and len(part) == 1 else None
    if isinstance(piece, str):
        return ParquetPiece(piece)
    if not isinstance(piece, tuple) or len(piece) != 3 or piece[2]:
        return None  # several pieces in one partition, or hive partition keys
    path, row_groups, _ = piece
    if not isinstance(path, str):
        return None
    if row_groups is None:
        return ParquetPiece(path)
    groups = row_groups if isinstance(row_groups, (list, tuple)) else [row_groups]
    return ParquetPiece(path, tuple(int(g) for g in groups))


def parquet_pieces(frame) -> ParquetPieces | None:
    """The pieces of a Dask frame read from local Parquet files (see the module
    docstring), or None where Dask must read it."""
    try:
        expr = _read_parquet_expr(frame)
        if expr is None or expr.operand("filters") or expr.operand("_series"):
            return None
        if expr.operand("_partitions") is not None or expr.operand("categories"):
            return None
        info = expr._dataset_info
        from fsspec.implementations.local import LocalFileSystem

        if not isinstance(info["fs"], LocalFileSystem) or info["partitions"]:
            return None
        if any(c is not None for c in (info["index_cols"] or [])) or info["filters"]:
            return None
        plan = expr._plan
        common = plan["common_kwargs"]
        if plan["empty"] or common.get("dtype_backend") is not None or \
                common.get("arrow_to_pandas") or common.get("filters"):
            return None
        pieces = [_piece(part) for part in plan["parts"]]  # before any fusion
        if not pieces or any(p is None for p in pieces):
            return None
        columns = [str(c) for c in frame.columns]
        if not set(columns) <= {str(c) for c in expr.columns}:
            return None
        return ParquetPieces(pieces, columns, bool(common.get("convert_string", False)))
    except Exception:  # noqa: BLE001 - Dask's internals moved: Dask reads the data
        return None


def _types_mapper(strings: bool):
    """Dask's conversion of Arrow types to pandas' (``convert_string``)."""
    if not strings:
        return None
    import pyarrow as pa

    mapped = {pa.string(): pd.StringDtype("pyarrow"), pa.large_string(): pd.StringDtype("pyarrow"),
              pa.date32(): pd.ArrowDtype(pa.date32()), pa.date64(): pd.ArrowDtype(pa.date64())}

    def mapper(arrow_type):
        if arrow_type in mapped:
            return mapped[arrow_type]
        if pa.types.is_decimal(arrow_type):
            return pd.ArrowDtype(arrow_type)
        return None

    return mapper


def read_piece(piece: ParquetPiece, columns: list[str], strings: bool) -> pd.DataFrame:
    """The rows of one piece, only ``columns``, as Dask's reader gives them."""
    import pyarrow.parquet as pq

    handle = pq.ParquetFile(piece.path)
    if piece.row_groups is None:
        table = handle.read(columns=columns, use_threads=False)
    else:
        table = handle.read_row_groups(list(piece.row_groups), columns=columns,
                                       use_threads=False)
    return table.to_pandas(types_mapper=_types_mapper(strings), use_threads=False,
                           split_blocks=True, self_destruct=True)


def piece_facts(piece: ParquetPiece, dtypes: pd.Series) -> tuple[int, float]:
    """Rows of a piece (from its file's footer) and its bytes in memory, estimated from
    the frame's ``dtypes`` (8 bytes a value of a type without a fixed width)."""
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(piece.path).metadata
    groups = range(meta.num_row_groups) if piece.row_groups is None else piece.row_groups
    rows = int(sum(meta.row_group(g).num_rows for g in groups))
    width = sum(t.itemsize if getattr(t, "kind", "O") in "biufcmM" else 8 for t in dtypes)
    return rows, float(rows * width + rows * 8)


def sample_pieces(pieces: ParquetPieces, n_rows: int) -> pd.DataFrame:
    """The first ``n_rows`` rows of the pieces, in order, read in this process (only the
    batches they are in), with the types :func:`read_piece` gives.

    Raises
    ------
    OSError
        A file cannot be read here (the caller lets the workers read it).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    frames, rows = [], 0
    for piece in pieces.pieces:
        handle = pq.ParquetFile(piece.path)
        batches = []
        for batch in handle.iter_batches(batch_size=max(1, n_rows - rows),
                                         row_groups=piece.row_groups,
                                         columns=pieces.columns, use_threads=False):
            batches.append(batch)
            rows += batch.num_rows
            if rows >= n_rows:
                break
        if batches:
            frames.append(pa.Table.from_batches(batches).to_pandas(
                types_mapper=_types_mapper(pieces.strings), use_threads=False))
        if rows >= n_rows:
            break
    if not frames:
        return read_piece(pieces.pieces[0], pieces.columns, pieces.strings).head(0)
    return (pd.concat(frames) if len(frames) > 1 else frames[0]).head(n_rows)
