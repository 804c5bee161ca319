"""``dlmm.load_result``: no per-group Python work on the way to predictions.

Loading used to build statsmodels' per-group dicts with ``iterrows`` (3.8 s per
50k groups) on every ``dlmm predict``, which never used them. Now the dicts are
built only when asked for; the lookup used by predictions is vectorized.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import dlmm
from tests.simulate import grouped_data


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    data = grouped_data(n_groups=3000, per_group=3, re_cov=np.diag([0.8, 0.2]),
                        vc_sd={"c": 0.4}, seed=12)
    result = dlmm.mixedlm("y ~ x1", data, groups="g", re_formula="~x1",
                          vc_formula={"c": "0 + C(c)"}).fit()
    folder = tmp_path_factory.mktemp("loaded") / "fit"
    result.save(folder)
    return data, result, folder


def test_load_and_predict_without_per_group_loops(saved, monkeypatch):
    data, result, folder = saved

    def refuse(*args, **kwargs):
        raise AssertionError("a per-group Python loop ran while loading or predicting")

    monkeypatch.setattr(pd.DataFrame, "iterrows", refuse)
    monkeypatch.setattr(pd.DataFrame, "itertuples", refuse)
    monkeypatch.setattr(pd.core.groupby.DataFrameGroupBy, "__iter__", refuse)
    loaded = dlmm.load_result(folder)
    new = data.drop(columns="y")
    np.testing.assert_allclose(loaded.predict(new, random_effects=True).to_numpy(),
                               result.predict(new, random_effects=True).to_numpy(),
                               rtol=1e-12, atol=1e-12)


def test_the_dicts_are_still_there_when_asked_for(saved):
    _, result, folder = saved
    loaded = dlmm.load_result(folder)
    label = next(iter(result.random_effects))
    pd.testing.assert_series_equal(loaded.random_effects[label], result.random_effects[label],
                                   check_names=False)
    assert len(loaded.random_effects) == result.n_groups == 3000
