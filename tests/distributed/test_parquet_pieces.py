"""The one pass reads local Parquet input in its own tasks (issue 27): each piece of
Dask's plan (a file, or its row groups) is read with pyarrow inside the task that sums
it, into the frame Dask's reader gives for that partition; inputs Dask must read
(filters, an index, hive partitions, a frame the user built) keep Dask's reader.
The fit is statsmodels' (and, to 1e-10, the fit of the same rows read by Dask).
"""

from __future__ import annotations

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import dlmm
from dlmm.distributed.dask_backend import DaskBackend
from dlmm.distributed.parquet_pieces import parquet_pieces, read_piece
from dlmm.distributed.sources import read_parquet
from tests.reliability.helpers import assert_same_fit, statsmodels_fit


def _mixed(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ints = pd.array(rng.integers(0, 9, n), dtype="Int64")
    ints[::7] = pd.NA
    return pd.DataFrame({
        "y": rng.normal(size=n),
        "x": rng.normal(size=n).astype("float32"),
        "k": ints,  # nulls: float64 with NaN, as Dask reads it
        "s": rng.choice(["a", "bb", None], n),
        "c": pd.Categorical(rng.choice(["u", "v"], n)),
        "d": pd.to_datetime("2020-01-01") + pd.to_timedelta(rng.integers(0, 99, n), "D"),
        "b": rng.integers(0, 2, n).astype(bool),
    })


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory):
    """Three files of many column types, the last of four row groups."""
    folder = tmp_path_factory.mktemp("pieces") / "data"
    folder.mkdir()
    for j in range(3):
        table = pa.Table.from_pandas(_mixed(400, j), preserve_index=False)
        pq.write_table(table, folder / f"part-{j}.parquet", row_group_size=100 if j == 2 else None)
    return folder


@pytest.mark.parametrize("columns, split", [(None, False), (["s", "y", "k"], False),
                                            (None, True)])
def test_a_piece_is_the_partition_dask_reads(mixed_folder, columns, split):
    frame = dd.read_parquet(str(mixed_folder), columns=columns,
                            split_row_groups=split or "infer")
    pieces = parquet_pieces(frame)
    assert pieces is not None
    assert len(pieces.pieces) == frame.npartitions == (6 if split else 3)
    for j, piece in enumerate(pieces.pieces):
        got = read_piece(piece, pieces.columns, pieces.strings)
        pd.testing.assert_frame_equal(got, frame.partitions[j].compute(scheduler="sync"))


@pytest.mark.parametrize("n_rows", [5, 430, 2000])
def test_the_sample_is_the_first_rows_dask_reads(mixed_folder, n_rows):
    """The first rows (for the specification to learn from) are read on the driver, from
    the first files only, as Dask reads them."""
    frame = dd.read_parquet(str(mixed_folder), columns=["s", "y", "c", "k", "d"])
    got = DaskBackend(frame, client=None).sample(n_rows)
    want = frame.head(n_rows, npartitions=-1, compute=True)
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want.reset_index(drop=True))


def test_partitions_dask_fuses_are_read_piece_by_piece(tmp_path):
    """Two columns of forty: Dask fuses the files' partitions; the pass reads each file."""
    folder = tmp_path / "wide"
    folder.mkdir()
    rng = np.random.default_rng(5)
    for j in range(8):
        pd.DataFrame(rng.normal(size=(50, 40)), columns=[f"v{i}" for i in range(40)]).to_parquet(
            folder / f"part-{j}.parquet", index=False)
    frame = read_parquet(str(folder))[["v3", "v0"]]
    pieces = parquet_pieces(frame)
    assert pieces is not None and len(pieces.pieces) == 8 and pieces.columns == ["v3", "v0"]
    read = pd.concat([read_piece(p, pieces.columns, pieces.strings) for p in pieces.pieces])
    np.testing.assert_array_equal(read.to_numpy(), frame.compute(scheduler="sync").to_numpy())


def test_other_inputs_keep_dasks_reader(tmp_path, mixed_folder):
    data = _mixed(60, 9).assign(h=lambda f: np.arange(60) % 2)
    data.to_parquet(tmp_path / "hive", partition_cols=["h"], index=False)
    data.set_index("y").to_parquet(tmp_path / "indexed.parquet")
    assert parquet_pieces(dd.read_parquet(str(tmp_path / "hive"))) is None
    assert parquet_pieces(dd.read_parquet(str(tmp_path / "indexed.parquet"))) is None
    assert parquet_pieces(dd.read_parquet(str(mixed_folder), filters=[("y", ">", 0)])) is None
    assert parquet_pieces(dd.from_pandas(data, npartitions=2)) is None
    built = dd.read_parquet(str(mixed_folder)).map_partitions(lambda f: f.head(3))
    assert parquet_pieces(built) is None


@pytest.fixture(scope="module")
def grouped_folder(tmp_path_factory):
    """Six files of whole groups with text labels, a random slope."""
    from tests.simulate import grouped_data

    frame = grouped_data(n_groups=90, per_group=(4, 12), k_fe=3,
                         re_cov=np.array([[1.0, 0.2], [0.2, 0.4]]), seed=17)
    frame["g"] = frame["g"].map(lambda v: f"s{v:03d}")
    folder = tmp_path_factory.mktemp("grouped") / "data"
    folder.mkdir()
    bounds = np.linspace(0, len(frame), 7).astype(int)  # groups cut between files
    for j in range(6):
        frame.iloc[bounds[j]:bounds[j + 1]].to_parquet(folder / f"part-{j}.parquet", index=False)
    return frame, folder


def test_the_pass_reads_each_file_in_its_own_task(grouped_folder, dask_client):
    from distributed import get_task_stream

    frame, folder = grouped_folder
    model = dlmm.mixedlm("y ~ x1 + x2", str(folder), groups="g", re_formula="~x1",
                         client=dask_client)
    assert model.exog_names == ["Intercept", "x1", "x2"]  # learned before the pass
    with get_task_stream(dask_client) as stream:
        model.prepare(client=dask_client)
    names = [t["key"] if isinstance(t["key"], str) else t["key"][0] for t in stream.data]
    assert not [n for n in names if "read" in n and "parquet" in n], names
    assert len([n for n in names if n.startswith("dlmm-chunk-")]) == 6
    result = model.fit()

    # The rows Dask's reader gives, in a frame the user built: Dask's tasks read them.
    dask_frame = dd.read_parquet(str(folder)).map_partitions(lambda f: f.copy())
    assert parquet_pieces(dask_frame) is None
    by_dask = dlmm.mixedlm("y ~ x1 + x2", dask_frame, groups="g", re_formula="~x1",
                           client=dask_client).fit()
    assert_same_fit(result, by_dask, rtol=1e-10)

    _, sm, _, error = statsmodels_fit("y ~ x1 + x2", frame, groups="g", re_formula="~x1")
    assert error is None
    np.testing.assert_allclose(result.fe_params, sm.fe_params, rtol=1e-5)
    np.testing.assert_allclose(result.cov_re, sm.cov_re, rtol=1e-4)
    np.testing.assert_allclose(result.llf, sm.llf, rtol=1e-8)
