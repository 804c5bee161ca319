"""``dlmm fit``: a bad formula or a missing column is reported before any cluster starts
(in process; the cluster is replaced by one that fails the test if reached)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dlmm import cli
from dlmm.cli import cluster


@pytest.fixture
def data(tmp_path):
    """Two Parquet files of columns y, x1, x2, g, c."""
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"y": rng.normal(size=40), "x1": rng.normal(size=40),
                          "x2": rng.normal(size=40), "g": np.repeat(np.arange(8), 5),
                          "c": np.tile(["a", "b"], 20)})
    folder = tmp_path / "data"
    folder.mkdir()
    frame.iloc[:20].to_parquet(folder / "part-0.parquet")
    frame.iloc[20:].to_parquet(folder / "part-1.parquet")
    return folder


@pytest.fixture
def no_cluster(monkeypatch):
    """``cluster.connected`` raising: a fit that reaches it exits 1 saying so."""
    reached = []

    def connected(opts):
        reached.append(opts)
        raise RuntimeError("a cluster was started")

    monkeypatch.setattr(cluster, "connected", connected)
    return reached


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--formula", "y ~ nosuchcol"],
         "column 'nosuchcol' used in formula 'y ~ nosuchcol' is not in the data "
         "(columns: y, x1, x2, g, c)"),
        (["--formula", "y ~ x1 + C(nosuchcol)"], "column 'nosuchcol' used in formula"),
        (["--formula", "y ~ x1", "--groups", "gg"], "groups column 'gg' is not in the data"),
        (["--formula", "y ~ x1", "-g", "g", "--re-formula", "~x9"],
         "column 'x9' used in re_formula '~x9'"),
        (["--formula", "y ~ x1", "-g", "g", "--vc", "k=0 + C(cc)"],
         "column 'cc' used in vc_formula['k'] '0 + C(cc)' is not in the data"),
        (["--formula", "y ~ x1 +"], "formula 'y ~ x1 +' cannot be parsed"),
        (["--formula", "x1"], "formula must look like 'y ~ x1 + x2'"),
    ],
)
def test_model_errors_come_before_the_cluster(data, no_cluster, capsys, extra, message):
    code = cli.main(["fit", str(data), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("dlmm: error: ") and message in err[0]
    assert no_cluster == []


def test_a_file_lacking_a_column_is_named_before_the_cluster(data, no_cluster, capsys):
    pd.read_parquet(data / "part-1.parquet").drop(columns="x2").to_parquet(
        data / "part-1.parquet")
    code = cli.main(["fit", str(data), "--formula", "y ~ x1 + x2", "-g", "g"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "part-1.parquet' lacks column 'x2' used by the model" in err[0]
    assert no_cluster == []


def test_a_good_model_goes_on_to_the_cluster(data, no_cluster, capsys):
    # --workers: a cluster, asked for (data this small would fit in process)
    code = cli.main(["fit", str(data), "--formula", "y ~ x1 + C(c)", "-g", "g",
                     "--re-formula", "~x1", "--workers", "1", "--quiet"])
    assert code == 1 and "a cluster was started" in capsys.readouterr().err
    assert len(no_cluster) == 1
