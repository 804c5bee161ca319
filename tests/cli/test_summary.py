"""``dlmm summary`` reads every result folder: ``result.save`` and ``dlmm fit -o`` write one
format (one folder per result, no ``model/`` subfolder), in process. The real ``dlmm fit
-o`` on a cluster is read in tests/cli/test_one_format.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import dlmm
from dlmm import cli
from dlmm.io.result_folder import write_outputs


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("summary")
    rng = np.random.default_rng(8)
    g = np.repeat(np.arange(15), 6)
    data = pd.DataFrame({"x1": rng.normal(size=90), "g": g})
    data["y"] = 1 + 0.5 * data["x1"] + rng.normal(size=15)[g] + rng.normal(size=90)
    result = dlmm.mixedlm("y ~ x1", data, groups="g").fit()
    result.save(root / "saved")
    # What dlmm fit -o writes: the same writer, with the run's options and cluster.
    write_outputs(result, root / "fit", options={"formula": "y ~ x1", "groups": "g"},
                  cluster={"kind": "embedded", "workers": 1})
    return root, str(result.summary()) + "\n"  # summary.txt ends its last line


@pytest.mark.parametrize("name", ["saved", "fit", "saved/result.json", "fit/result.json"])
def test_summary_reads_every_result_folder(folders, capsys, name):
    root, expected = folders
    assert cli.main(["summary", str(root / name), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out == expected
    assert "Mixed Linear Model Regression Results" in out and "x1" in out


@pytest.mark.parametrize("inside", ["fit/model", "saved/random_effects.parquet"])
def test_a_path_inside_a_result_folder_names_the_folder(folders, capsys, inside):
    root, _ = folders
    assert cli.main(["summary", str(root / inside)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    folder = str(root / inside.split("/")[0])
    assert err[0] == (f"dlmm: error: RESULT_DIR {str(root / inside)!r} lies inside the "
                      f"result folder {folder!r}: give that folder (it holds the whole result)")
