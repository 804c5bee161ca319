"""Tables shared by every partition of a per-row computation on a user's cluster
(predictions' random effects) are sent under keys of their own: equal tables of two
predictions never share a key, whose release for the first could take the second's data
("lost dependencies", seen once in tests/results/test_prediction.py)."""

from __future__ import annotations

import dask.dataframe as dd
import numpy as np
import pandas as pd

from dlmm.distributed.dask_backend import DaskBackend


class Table:
    """A shared table as dlmm's are: an object, not a dict (which Dask scatters by value)."""

    def __init__(self, values):
        self.values = np.asarray(values, dtype=float)


def _plus(chunk: pd.DataFrame, table: Table) -> pd.Series:
    return chunk["a"] + table.values.sum()


def test_equal_shared_tables_get_keys_of_their_own(dask_client):
    frame = dd.from_pandas(pd.DataFrame({"a": np.arange(12.0)}), npartitions=3)
    backend = DaskBackend(frame, dask_client)
    assert not backend.self_contained  # the user's cluster: tables are scattered
    before = set(dask_client.futures)
    first = backend.map_frame(_plus, pd.Series(dtype=float), Table([1.0, 2.0]))
    second = backend.map_frame(_plus, pd.Series(dtype=float), Table([1.0, 2.0]))
    new = set(dask_client.futures) - before
    assert len([k for k in new if str(k).startswith("Table-")]) == 2
    del first  # its table's future released: the second's data stay
    got = dask_client.compute(second).result().sort_index()
    np.testing.assert_array_equal(got.to_numpy(), np.arange(12.0) + 3.0)
