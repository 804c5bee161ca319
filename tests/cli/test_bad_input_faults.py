"""``dlmm fit`` on bad Parquet input (issue 10, item 5): exit 2 and one line naming the column,
value or file, no output folder (nor temporary one), the input files unchanged; a folder with
files that are not data beside the Parquet files is read as Dask reads it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.cli.helpers import _error_line, _no_output, run_dlmm, run_dlmm_here
from tests.reliability.helpers import statsmodels_fit, tree_state
from tests.simulate import grouped_data


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    """200 rows, 20 groups; columns y, g, x1, x2."""
    return grouped_data(n_groups=20, per_group=10, k_fe=3, re_cov=np.array([[1.0]]), seed=1)


def _write(folder: Path, first: pd.DataFrame, second: pd.DataFrame) -> Path:
    folder.mkdir()
    first.to_parquet(folder / "part-0.parquet")
    second.to_parquet(folder / "part-1.parquet")
    return folder


def _bad_data(case: str, frame: pd.DataFrame, folder: Path) -> tuple[list[str], str]:
    """Write the case's data; return the extra arguments and the text the error must have."""
    head, tail = frame.iloc[:100], frame.iloc[100:]
    if case == "type differs":
        _write(folder, head, tail.assign(g=tail["g"].astype(str)))
        return [], "column 'g' is int64 in Parquet file"
    if case == "n/a in numbers":
        text = frame.assign(x1=frame["x1"].round(6).astype(str))
        text.loc[[4, 120], "x1"] = "n/a"
        _write(folder, text.iloc[:100], text.iloc[100:])
        return [], "column 'x1' is text, but its values are numbers"
    if case == "huge values":
        data = frame.assign(x1=frame["x1"] * 1e300)
        _write(folder, data.iloc[:100], data.iloc[100:])
        return [], "design column 'x1' has values as large as"
    if case == "vc missing column":
        _write(folder, head, tail)
        return ["--vc", "c=0 + C(zz)"], "column 'zz' used in vc_formula['c']"
    if case == "too many levels":
        rng = np.random.default_rng(2)
        n = 40_000
        data = pd.DataFrame({"y": rng.normal(size=n), "x1": rng.normal(size=n),
                             "g": np.repeat(np.arange(40), n // 40),
                             "id": np.tile(np.arange(20_000), 2).astype(str)})
        _write(folder, data.iloc[: n // 2], data.iloc[n // 2:])
        return ["--formula", "y ~ x1 + id"], "column 'id' has 20,000 levels"
    if case == "one row per group":
        data = frame.assign(g=np.arange(len(frame)))
        _write(folder, data.iloc[:100], data.iloc[100:])
        return [], "group column 'g' has 200 levels for 200 rows"
    if case == "no parquet files":
        folder.mkdir()
        (folder / "README.txt").write_text("the data are elsewhere\n")
        return [], "holds no Parquet files"
    raise AssertionError(case)


#: Faults refused from the files' names, footers and the formula, before the scheduler is
#: reached: these run in this process (:func:`run_dlmm_here`, no interpreter's start); the
#: others are found by the data pass on the workers, and run as the command users run.
BEFORE_ANY_WORK = {"type differs", "vc missing column", "no parquet files"}


@pytest.mark.parametrize("case", ["type differs", "n/a in numbers", "huge values",
                                  "vc missing column", "too many levels", "no parquet files",
                                  "one row per group"])
def test_bad_parquet_input_exits_2_with_one_line(scheduler, frame, tmp_path, case):
    data = tmp_path / "data"
    extra, fault = _bad_data(case, frame, data)
    before = tree_state(data)
    args = ["fit", data, "--formula", "y ~ x1", "--groups", "g", *extra,
            "--scheduler", scheduler, "--output", tmp_path / "out", "--quiet"]
    proc = (run_dlmm_here if case in BEFORE_ANY_WORK else run_dlmm)(*args)
    assert proc.returncode == 2, proc.stderr
    line = _error_line(proc)
    assert fault in line, line
    assert "unexpected" not in line and "\x1b" not in line
    _no_output(tmp_path)
    assert tree_state(data) == before


def test_folder_with_files_that_are_not_data(scheduler, frame, tmp_path):
    """_SUCCESS, README.txt, a .crc file and a _temporary/ folder beside the data: read as
    Dask and Spark read the folder; the fit is statsmodels' fit of the rows."""
    data = _write(tmp_path / "data", frame.iloc[:100], frame.iloc[100:])
    (data / "_SUCCESS").write_bytes(b"")
    (data / "README.txt").write_text("written by the nightly job\n")
    (data / ".part-0.parquet.crc").write_bytes(b"\x00")
    (data / "_temporary").mkdir()
    (data / "_temporary" / "part-9.parquet").write_bytes(b"half written")
    before = tree_state(data)
    out = tmp_path / "out"
    proc = run_dlmm("fit", data, "--formula", "y ~ x1", "--groups", "g", "--scheduler",
                    scheduler, "--output", out, "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert tree_state(data) == before
    doc = json.loads((out / "result.json").read_text())
    _, sm_result, _, error = statsmodels_fit("y ~ x1", frame, groups="g")
    assert error is None and doc["nobs"] == len(frame)
    assert doc["estimates"]["llf"] == pytest.approx(sm_result.llf, rel=1e-6)


def test_unidentified_variances_exit_3_with_the_reason(scheduler, tmp_path):
    """Two variance components with the same columns: only their sum is identified. The
    outputs are written, marked not converged, and the exit code is 3 (issue 10, item 2)."""
    from tests.objective.test_identifiable import _duplicated_components
    rows = _duplicated_components()
    data = _write(tmp_path / "data", rows.iloc[:360], rows.iloc[360:])
    out = tmp_path / "out"
    proc = run_dlmm("fit", data, "--formula", "y ~ x1", "--groups", "g", "--re-formula", "0",
                    "--vc", "a=0 + C(site)", "--vc", "b=0 + C(site_copy)",
                    "--scheduler", scheduler, "--output", out)
    assert proc.returncode == 3, proc.stderr
    reason = "the variance parameters are not identified by the data"
    result_line = [line for line in proc.stderr.splitlines() if "not converged (" in line]
    assert len(result_line) == 1 and reason in result_line[0], proc.stderr
    doc = json.loads((out / "result.json").read_text())
    assert doc["status"] == "not_converged" and doc["converged"] is False
    assert any(reason in line for line in doc["convergence_failures"])
