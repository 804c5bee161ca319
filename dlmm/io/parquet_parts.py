"""A pandas table written to one Parquet file from its parts, as they arrive.

:func:`write_parts` writes the parts (pandas frames of the same columns, in order) as
``pq.write_table`` writes their concatenation, without ever making it: the file's
schema is the first part's (``pa.Table.from_pandas``; every later part is cast to it),
and its rows are cut into row groups of :data:`ROW_GROUP_ROWS` at the places the whole
table's would be cut (a part's rows wait, as Arrow chunks without a copy, until a row
group is full). ``pd.read_parquet`` gives the concatenation back: values, dtypes,
index, column order (``tests/io/test_parquet_parts.py``). The writer holds at most a
row group and the part being written; the whole table, a copy of it and the file are
never in memory. (Measured, ``dlmm fit`` of 5,000,000 groups on two workers, six runs
alternating with the writer of the concatenation at a load of 7-15: the driver's CPU
in writing ``random_effects.parquet`` 1.8-2.4 s, mean 2.0, against 2.3-3.8 s, mean 3.0;
its peak resident memory 462-527 MB against 773 MB. On this machine a process's fresh
pages cost about 3 s a GB: each copy of the whole table made there cost ~0.5 s.)

Only columns that are not floating point get dictionary pages: effects and variances
are distinct numbers, whose dictionary pyarrow would build and then drop (half the
time of writing the effects of 10^6 groups).

The target is a local path (written in place: it lies in a staged folder, and a
failed write removes it, as ``pq.write_table`` does), or a file of a run at a URL
(:class:`dlmm.io.publish.StoreFile`): the file is written to a local temporary
file and put there through fsspec, the one file-system layer of every other file
(never the store client pyarrow would choose for a URL), only once complete.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

#: Results fetched ahead of the one being used (:func:`fetched_ahead`).
FETCH_AHEAD = 2

#: Rows of a row group: those of ``pq.write_table`` (the minimum of the table's rows
#: and 1024 * 1024).
ROW_GROUP_ROWS = 1024 * 1024


def fetched_ahead(gather: Callable[[list], list], handles: list,
                  ahead: int = FETCH_AHEAD) -> Iterator[Any]:
    """``gather([h])[0]`` of every handle, in order, each fetched (in a thread of its
    own) while the ones before it are used: at most ``ahead + 1`` results held here.
    (The embedded cluster's parts arrive over TLS in the client's event-loop thread,
    while this thread writes the ones before.)"""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(1, thread_name_prefix="dlmm-fetch")
    try:
        queue = deque(pool.submit(gather, [h]) for h in handles[:ahead])
        following = iter(handles[ahead:])
        while queue:
            part = queue.popleft().result()[0]
            for h in following:  # the next one, if any
                queue.append(pool.submit(gather, [h]))
                break
            yield part
            del part
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class PartsWriter:
    """A Parquet file written from pandas parts in order (:meth:`write`, then
    :meth:`close`); see the module docstring.

    Parameters
    ----------
    where : str or file-like
        What ``pq.ParquetWriter`` writes to.
    index : bool or None
        ``preserve_index`` of ``pa.Table.from_pandas`` (None: a named index is a column,
        a range index only metadata).
    """

    def __init__(self, where: Any, index: bool | None = None):
        self.where, self.index = where, index
        self._writer = None
        self._schema = None
        self._pending: list = []  # Arrow tables of fewer than ROW_GROUP_ROWS rows in all
        self._pending_rows = 0
        self._written = 0

    def write(self, part: Any) -> None:
        """Append a pandas frame's rows (an empty one only sets the schema if first)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        arrow = pa.Table.from_pandas(part, preserve_index=self.index)
        if self._writer is None:
            self._schema = arrow.schema
            dictionary = [f.name for f in arrow.schema if not pa.types.is_floating(f.type)]
            self._writer = pq.ParquetWriter(self.where, arrow.schema,
                                            use_dictionary=dictionary or False)
        elif not arrow.schema.equals(self._schema, check_metadata=False):
            arrow = arrow.cast(self._schema)
        if not arrow.num_rows:
            return
        self._pending.append(arrow)
        self._pending_rows += arrow.num_rows
        full = self._pending_rows - self._pending_rows % ROW_GROUP_ROWS
        if full:
            self._flush(full)

    def _flush(self, rows: int) -> None:
        import pyarrow as pa

        table = pa.concat_tables(self._pending)  # chunks side by side: no copy
        self._writer.write_table(table.slice(0, rows), row_group_size=ROW_GROUP_ROWS)
        self._written += rows
        rest = table.slice(rows)
        self._pending, self._pending_rows = ([rest], rest.num_rows) if rest.num_rows \
            else ([], 0)

    def close(self) -> None:
        """Write the last rows (an empty table: one empty row group, as
        ``pq.write_table``) and the footer."""
        if self._writer is None:
            raise ValueError("no part was written: the file has no schema")
        if self._pending_rows or not self._written:
            if self._pending_rows:
                self._flush(self._pending_rows)
            else:
                self._writer.write_table(self._schema.empty_table())
        self._writer.close()


def _write(parts: Iterable[Any], where: Any, index: bool | None) -> None:
    writer = PartsWriter(where, index)
    try:
        for part in parts:
            writer.write(part)
    except BaseException:
        close = getattr(parts, "close", None)
        if close is not None:  # a generator of parts lets go of what it holds and fetches
            close()
        if writer._writer is not None:  # let go of the file (its removal is the caller's)
            try:
                writer._writer.close()
            except Exception:  # noqa: BLE001 - the first error is the one raised
                pass
        raise
    writer.close()


def write_parts(parts: Iterable[Any], target: Any, index: bool | None = None) -> None:
    """The parts (pandas frames, at least one) to the Parquet file ``target``, a local
    :class:`~pathlib.Path` or a file of a run at a URL, as ``pq.write_table`` writes
    ``pa.Table.from_pandas(pd.concat(parts), preserve_index=index)``; see the module
    docstring."""
    if isinstance(target, Path):
        try:
            _write(parts, str(target), index)
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        return
    handle, local = tempfile.mkstemp(prefix="dlmm-", suffix=".parquet")
    os.close(handle)
    try:
        _write(parts, local, index)
        target.fs.put_file(local, target.path)
    finally:
        os.unlink(local)
