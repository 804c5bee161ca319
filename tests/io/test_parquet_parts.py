"""``dlmm.io.parquet_parts``: a table written to one Parquet file from its parts, as they
arrive, and the parts fetched a few at a time (issue 27: the effects of 5,000,000
groups written without making the whole table on the driver).

The reference is pyarrow's writer of the parts' pandas concatenation, as the result
folder wrote its tables before (``pd.concat``, ``pa.Table.from_pandas``,
``pq.write_table``): the file must read back as that one does (values, dtypes, index
name and dtype, column order), with its schema, pandas metadata and row groups.
"""

from __future__ import annotations

import tempfile
import threading

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dlmm.io import parquet_parts
from dlmm.io.parquet_parts import PartsWriter, fetched_ahead, write_parts

#: Row-group size in these tests (pyarrow's is 2^20 rows): cuts inside and between parts.
ROWS = 7


@pytest.fixture(autouse=True)
def small_row_groups(monkeypatch):
    monkeypatch.setattr(parquet_parts, "ROW_GROUP_ROWS", ROWS)


def _re_parts(labels: str, with_se: bool, sizes: list[int], seed: int = 0) -> list:
    """Parts as the effects store makes them (``re_frame``, then Dask's dtypes): an
    index of group labels named ``group``, the effects and their SEs as float64."""
    rng = np.random.default_rng(seed)
    parts, start = [], 0
    for n in sizes:
        codes = np.arange(start, start + n) * 3 + 1
        start += n
        index = pd.Index(codes if labels == "int" else
                         pd.array([f"s{c}" for c in codes], dtype="str"), name="group")
        frame = pd.DataFrame({"group": rng.normal(size=n), "x1": rng.normal(size=n)},
                             index=index)
        if with_se:
            frame["group SE"] = rng.random(n)
            frame["x1 SE"] = rng.random(n)
        frame.iloc[::5, 1] = np.nan  # NaN (written as null) where the fit had none
        parts.append(frame)
    return parts


def _vc_parts(sizes: list[int], seed: int = 1) -> list:
    """Parts of the variance-component table (no index): text group, component and
    column, the effect and its variance."""
    rng = np.random.default_rng(seed)
    return [pd.DataFrame({
        "g": pd.array([f"s{i // 3}" for i in range(n)], dtype="str"),
        "component": pd.array(["c"] * n, dtype="str"),
        "column": pd.array([f"C(c)[{i % 3}]" for i in range(n)], dtype="str"),
        "effect": rng.normal(size=n), "variance": rng.random(n)}) for n in sizes]


def _reference(parts: list, path, index) -> None:
    """The file as written before: pq.write_table of the concatenation, dictionary pages
    for columns that are not floating point, row groups of ``ROWS`` rows."""
    arrow = pa.Table.from_pandas(pd.concat(parts), preserve_index=index)
    dictionary = [f.name for f in arrow.schema if not pa.types.is_floating(f.type)]
    pq.write_table(arrow, path, use_dictionary=dictionary or False, row_group_size=ROWS)


def _same_file(new, ref) -> None:
    pd.testing.assert_frame_equal(pd.read_parquet(new), pd.read_parquet(ref), check_exact=True)
    assert pq.read_schema(new).equals(pq.read_schema(ref), check_metadata=True)
    new_meta, ref_meta = pq.read_metadata(new), pq.read_metadata(ref)
    assert [new_meta.row_group(i).num_rows for i in range(new_meta.num_row_groups)] == \
        [ref_meta.row_group(i).num_rows for i in range(ref_meta.num_row_groups)]
    for i in range(new_meta.num_row_groups):
        for j in range(new_meta.num_columns):
            assert (new_meta.row_group(i).column(j).has_dictionary_page
                    == ref_meta.row_group(i).column(j).has_dictionary_page)


SIZES = {"straddling": [5, 0, 9, 3, 14, 1], "one": [4], "exact": [7, 7], "empty": [0, 0]}


@pytest.mark.parametrize("labels", ["int", "str"])
@pytest.mark.parametrize("with_se", [True, False])
@pytest.mark.parametrize("sizes", sorted(SIZES))
def test_effects_parts_read_back_as_their_concatenation(tmp_path, labels, with_se, sizes):
    parts = _re_parts(labels, with_se, SIZES[sizes])
    write_parts(iter(parts), tmp_path / "new.parquet")
    _reference(parts, tmp_path / "ref.parquet", None)
    _same_file(tmp_path / "new.parquet", tmp_path / "ref.parquet")
    back = pd.read_parquet(tmp_path / "new.parquet")
    pd.testing.assert_frame_equal(back, pd.concat(parts), check_exact=True)
    assert back.index.name == "group" and str(back.index.dtype) == \
        ("int64" if labels == "int" else "str")
    assert list(back.columns) == list(parts[0].columns)


@pytest.mark.parametrize("sizes", sorted(SIZES))
def test_vc_parts_read_back_as_their_concatenation(tmp_path, sizes):
    parts = _vc_parts(SIZES[sizes])
    write_parts(parts, tmp_path / "new.parquet", index=False)
    _reference(parts, tmp_path / "ref.parquet", False)
    _same_file(tmp_path / "new.parquet", tmp_path / "ref.parquet")
    back = pd.read_parquet(tmp_path / "new.parquet")
    pd.testing.assert_frame_equal(back, pd.concat(parts, ignore_index=True), check_exact=True)


def test_one_table_is_written_as_pyarrow_writes_it(tmp_path):
    """A single part (``write_table``'s case) makes pyarrow's file, byte for byte."""
    part = _re_parts("str", True, [23])[0]
    write_parts([part], tmp_path / "new.parquet")
    _reference([part], tmp_path / "ref.parquet", None)
    assert (tmp_path / "new.parquet").read_bytes() == (tmp_path / "ref.parquet").read_bytes()


def test_the_writer_holds_less_than_a_row_group(tmp_path):
    """Rows are written as soon as a row group is full: what waits is fewer rows than a
    row group, never the table."""
    writer = PartsWriter(str(tmp_path / "new.parquet"))
    for part in _re_parts("int", True, [5, 9, 3, 14, 1, 20]):
        writer.write(part)
        assert writer._pending_rows < ROWS
    writer.close()
    assert pq.read_metadata(tmp_path / "new.parquet").num_rows == 52


def test_a_later_part_is_cast_to_the_first_parts_schema(tmp_path):
    """A part whose pandas dtypes differ (float32 effects) is written in the file's
    schema, as the concatenation (which upcasts) would be."""
    parts = _re_parts("int", False, [4, 6])
    parts[1] = parts[1].astype({"x1": "float32"})
    write_parts(parts, tmp_path / "new.parquet")
    _reference(parts, tmp_path / "ref.parquet", None)
    _same_file(tmp_path / "new.parquet", tmp_path / "ref.parquet")


def _failing(parts):
    yield from parts
    raise RuntimeError("worker lost (simulated)")


def test_a_failed_local_write_leaves_no_file(tmp_path):
    with pytest.raises(RuntimeError, match="simulated"):
        write_parts(_failing(_re_parts("int", True, [9, 9])), tmp_path / "new.parquet")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_closes_the_parts_it_was_given(tmp_path):
    """When writing fails (here: no such folder), the generator of parts is closed at
    once (its fetches stopped, what it holds let go), not left to the garbage collector."""
    closed = []

    def parts():
        try:
            yield from _re_parts("int", True, [9, 9])
        finally:
            closed.append(True)

    with pytest.raises(OSError) as failure:  # its traceback holds the writer's frames
        write_parts(parts(), tmp_path / "no" / "new.parquet")
    assert closed == [True], failure


def test_a_url_gets_the_same_file_whole_or_nothing(tmp_path, monkeypatch, s3_bucket):
    """At a URL (a file of a run, :class:`dlmm.io.publish.StoreFile`) the file goes up
    through fsspec once complete; a failure leaves no object and no temporary file."""
    import s3fs

    from dlmm.io.publish import StoreFile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    parts = _re_parts("str", True, [5, 9, 3])
    write_parts(parts, tmp_path / "local.parquet")
    write_parts(parts, StoreFile(fs, f"{s3_bucket}/run/random_effects.parquet"))
    fs.invalidate_cache()
    assert fs.cat_file(f"{s3_bucket}/run/random_effects.parquet") == \
        (tmp_path / "local.parquet").read_bytes()
    with pytest.raises(RuntimeError, match="simulated"):
        write_parts(_failing(parts), StoreFile(fs, f"{s3_bucket}/run/vc_effects.parquet"))
    fs.invalidate_cache()
    assert fs.find(f"{s3_bucket}/run") == [f"{s3_bucket}/run/random_effects.parquet"]
    assert list((tmp_path / "tmp").iterdir()) == []


def test_fetched_ahead_keeps_order_and_few_results():
    """Results come in the handles' order; at most ``ahead + 1`` are held here at once
    (fetched, not yet let go by the consumer), and a failed fetch is raised where its
    result would have come."""
    alive, most, lock = set(), [0], threading.Lock()

    class Result:
        def __init__(self, h):
            self.h = h
            with lock:
                alive.add(h)
                most[0] = max(most[0], len(alive))

        def release(self):
            with lock:
                alive.discard(self.h)

    def gather(handles):
        if handles == [13]:
            raise KeyError("lost")
        return [Result(h) for h in handles]

    seen = []
    for r in fetched_ahead(gather, list(range(10)), ahead=2):
        seen.append(r.h)
        r.release()
    assert seen == list(range(10)) and most[0] <= 3
    got = []
    with pytest.raises(KeyError, match="lost"):
        for r in fetched_ahead(gather, list(range(10, 20)), ahead=2):
            got.append(r.h)
            r.release()
    assert got == [10, 11, 12]
