"""``write_random_effects``: all or nothing (issue 20, item 1).

A write that fails while the table is computed leaves no folder, file or temporary
sibling behind (Dask's ``to_parquet`` makes the folder before it computes a row).
"""

from __future__ import annotations

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

import dlmm
from dlmm.exceptions import InputError
from tests.results.lme4_reference import FEATURES, sleepstudy


@pytest.fixture(scope="module")
def result():
    return dlmm.mixedlm("Reaction ~ Days", sleepstudy(), groups="Subject",
                        re_formula="~Days").fit()


def _lme4_modes() -> pd.DataFrame:
    """lme4's conditional modes (coef minus the fixed effects)."""
    coef = pd.DataFrame(FEATURES["sleepstudy"]["coef"]).set_index("level")
    fe = pd.DataFrame(FEATURES["sleepstudy"]["satterthwaite"]).set_index("name")["estimate"]
    return coef - fe


def _broken(frame: pd.DataFrame) -> pd.DataFrame:
    raise RuntimeError("the disk is full")


@pytest.mark.parametrize("kind", ["dask", "pandas"])
def test_a_failed_write_leaves_nothing(result, tmp_path, monkeypatch, kind):
    table = result.random_effects_table()
    if kind == "dask":
        broken = dd.from_pandas(table, npartitions=2).map_partitions(_broken, meta=table)
    else:
        class Broken(pd.DataFrame):
            def to_parquet(self, path, *args, **kwargs):
                with open(path, "wb") as handle:
                    handle.write(b"PAR1")  # a first few bytes, then the failure
                raise RuntimeError("the disk is full")

        broken = Broken(table)
    monkeypatch.setattr(result, "random_effects_table", lambda with_se=False: broken)
    with pytest.raises(RuntimeError, match="the disk is full"):
        result.write_random_effects(tmp_path / "re")
    assert list(tmp_path.iterdir()) == []


def test_a_dask_table_is_written_as_a_folder_in_one_go(result, tmp_path, monkeypatch):
    table = dd.from_pandas(result.random_effects_table(), npartitions=3)
    monkeypatch.setattr(result, "random_effects_table", lambda with_se=False: table)
    (tmp_path / "empty").mkdir()
    result.write_random_effects(tmp_path / "empty")  # an empty folder is taken
    back = pd.read_parquet(tmp_path / "empty")
    expected = _lme4_modes()
    assert sorted(back.index) == sorted(expected.index)
    np.testing.assert_allclose(back.loc[expected.index, ["Subject", "Days"]].to_numpy(),
                               expected[["(Intercept)", "Days"]].to_numpy(), atol=2e-3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]
    with pytest.raises(InputError, match="exists and is not empty"):
        result.write_random_effects(tmp_path / "empty")
