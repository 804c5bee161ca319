"""Determinism (issue 5, item 4): the same data give the same estimates to 1e-8 relative
for 1, 2 and 4 worker processes and any partitioning; the same layout on the same cluster
gives bit-for-bit the same estimates (the reduction order is fixed, not the order in
which workers finish).

The reference is the in-process (pandas) fit, so every Dask layout is compared with a fit
that involves no cluster at all. One cluster is scaled from 1 to 2 to 4 workers to keep the
test quick (each scale-up starts only the new worker processes).
"""

from __future__ import annotations

import dask.dataframe as dd  # noqa: E402
import numpy as np
import pandas as pd
import pytest

import dlmm
from tests.reliability.helpers import assert_same_fit, local_cluster
from tests.simulate import grouped_data

FORMULA = "y ~ x1 + x2"
MODEL = {"groups": "g", "re_formula": "~x1", "vc_formula": {"c": "0 + C(c)"}}


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    """About 1500 rows of 80 groups, random intercept and slope, one variance component."""
    return grouped_data(n_groups=80, per_group=(8, 30), k_fe=3,
                        re_cov=np.array([[1.0, 0.3], [0.3, 0.5]]), vc_sd={"c": 0.7},
                        vc_levels=4, seed=13)


def _layouts(data: pd.DataFrame) -> dict:
    """Partitionings: one partition; whole groups in 7 partitions of unequal size; rows
    shuffled into 5 partitions so that groups span partitions (keyed cross-products are
    shuffled between workers); and 23 partitions with some groups split."""
    shuffled = data.sample(frac=1.0, random_state=1).reset_index(drop=True)
    starts = np.flatnonzero(np.r_[True, np.diff(data["g"].to_numpy()) != 0])
    cuts = [*starts[[0, 3, 4, 20, 50, 55, 70]].tolist(), len(data)]
    uneven = dd.from_delayed([_delayed(data.iloc[a:b]) for a, b in zip(cuts[:-1], cuts[1:])],
                             meta=data.iloc[:0])
    return {
        "one": dd.from_pandas(data, npartitions=1, sort=False),
        "uneven-7": uneven,
        "shuffled-5": dd.from_pandas(shuffled, npartitions=5, sort=False),
        "split-23": dd.from_pandas(data, npartitions=23, sort=False),
    }


def _delayed(frame):
    import dask

    return dask.delayed(frame)


def test_same_estimates_for_1_2_4_workers_and_any_partitioning(data):
    ref = dlmm.mixedlm(FORMULA, data, **MODEL).fit()
    assert ref.backend == "local" and ref.converged
    layouts = _layouts(data)
    fits = {}
    with local_cluster(1) as (cluster, client):
        for n_workers in (1, 2, 4):
            cluster.scale(n_workers)
            client.wait_for_workers(n_workers, timeout=60)
            assert len(client.scheduler_info(n_workers=-1)["workers"]) == n_workers
            for name, ddf in layouts.items():
                result = dlmm.mixedlm(FORMULA, ddf, client=client, **MODEL).fit()
                assert result.backend == "dask"
                fits[n_workers, name] = result
                assert_same_fit(result, ref)
        # The shuffled layout really made groups span partitions.
        assert fits[2, "shuffled-5"].groups_shuffled is True
        assert fits[2, "uneven-7"].groups_shuffled is False

        # Same layout, same cluster, run again: bit for bit.
        again = dlmm.mixedlm(FORMULA, layouts["shuffled-5"], client=client, **MODEL).fit()
        first = fits[4, "shuffled-5"]
        assert again.llf == first.llf
        assert np.array_equal(again.fe_params.to_numpy(), first.fe_params.to_numpy())
        assert np.array_equal(again.cov_re.to_numpy(), first.cov_re.to_numpy())
        assert np.array_equal(again.vcomp, first.vcomp)
        assert again.scale == first.scale
