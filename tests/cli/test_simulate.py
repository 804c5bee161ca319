"""``dlmm simulate``'s defaults: ``--seed 0`` and one file per started million rows
(in process, through ``dlmm.cli.main``)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from dlmm import cli
from dlmm.cli.simulate import ROWS_PER_PARTITION, default_partitions


def _simulate(out, *extra) -> dict:
    code = cli.main(["simulate", "--groups", "30", "--per-group", "4", "-o", str(out),
                     "--quiet", *extra])
    assert code == 0
    return json.loads((out / "_truth.json").read_text())["simulation"]


def test_seed_and_partitions_default(tmp_path):
    default = _simulate(tmp_path / "default")
    assert default["seed"] == 0 and default["partitions"] == 1
    assert sorted(p.name for p in (tmp_path / "default").iterdir()) == [
        "_truth.json", "part-00000.parquet"]
    # The default seed is seed 0: the same rows (cut in any number of files) ...
    explicit = _simulate(tmp_path / "seed0", "--seed", "0", "--partitions", "3")
    assert explicit["partitions"] == 3
    rows = pd.read_parquet(tmp_path / "default")
    pd.testing.assert_frame_equal(rows, pd.read_parquet(tmp_path / "seed0"))
    # ... and not those of another seed.
    _simulate(tmp_path / "seed1", "--seed", "1")
    other = pd.read_parquet(tmp_path / "seed1")
    assert not (other["y"].to_numpy() == rows["y"].to_numpy()).any()


@pytest.mark.parametrize(
    ("groups", "per_group", "partitions"),
    [
        (10, 5, 1),  # small: one file
        (1000, 1000, 1),  # exactly a million rows
        (1000, 1001, 2),  # a started second million
        (20_000, 500, 10),
        (3, 2_000_000, 3),  # six million rows in three groups: a file per group at most
    ],
)
def test_default_partitions(groups, per_group, partitions):
    assert ROWS_PER_PARTITION == 1_000_000
    assert default_partitions(groups, per_group) == partitions
