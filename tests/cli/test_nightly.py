"""The README's nightly command as written, night after night, and ``--start-from`` /
``--skip-unchanged`` at their edges; the installed ``dlmm`` command in a subprocess.

One module fixture plays three nights in one folder (the input fingerprint holds
absolute paths, so the nights must share it): night one, with no earlier output,
is a cold start; night two, nothing changed, is skipped; night three asks for
``--fitted``, which the earlier output lacks, so it fits again. Night one runs
under a umask of 022 and night three under 002 (set in the subprocess's shell),
and each output's mode bits are those ``mkdir`` gives. The numbers are
statsmodels'.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.cli.helpers import TIMEOUT
from tests.reliability.helpers import statsmodels_fit
from tests.simulate import grouped_data

REPO = Path(__file__).resolve().parents[2]
#: The installed command (the virtualenv's ``dlmm`` script).
DLMM = str(Path(sys.executable).with_name("dlmm"))
MODEL = ["-f", "y ~ x1 + x2", "-g", "g", "--re-formula", "~x1"]


def readme_nightly_command() -> list[str]:
    """The command of the README's "Nightly refits" section, as written."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Nightly refits", 1)[1].split("\n#", 1)[0]
    block = re.search(r"\n\n((?:    .*\n)+)", section).group(1)
    words = shlex.split(block.replace("\\\n", " "))
    assert words[0] == "dlmm"
    return words[1:]


def dlmm(*args, cwd: Path, umask: str = "022") -> subprocess.CompletedProcess:
    """``dlmm ARGS`` in ``cwd``, its umask set by the shell that starts it."""
    return subprocess.run(["sh", "-c", f'umask {umask} && exec "$0" "$@"', DLMM,
                           *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=TIMEOUT)


def _modes(folder: Path) -> dict[str, int]:
    """Permission bits of ``folder`` (key ``.``) and of everything under it."""
    return {str(p.relative_to(folder)): stat.S_IMODE(p.stat().st_mode)
            for p in [folder, *sorted(folder.rglob("*"))]}


def _snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under ``folder``: its modification time and bytes."""
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_line(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dlmm: error: "), proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return grouped_data(n_groups=30, per_group=(4, 8), k_fe=3,
                        re_cov=[[0.8, 0.2], [0.2, 0.4]], seed=41)


@pytest.fixture(scope="module")
def sm(frame):
    _, result, _, error = statsmodels_fit("y ~ x1 + x2", frame, groups="g", re_formula="~x1")
    assert error is None
    return result


@pytest.fixture(scope="module")
def nights(tmp_path_factory, frame):
    """Three nights of the README's command in one folder: what each did."""
    cwd = tmp_path_factory.mktemp("nightly")
    (cwd / "data").mkdir()
    frame.to_parquet(cwd / "data" / "part-0.parquet", index=False)
    command = readme_nightly_command()
    out: dict = {"cwd": cwd, "data_before": _snapshot(cwd / "data")}
    fit = cwd / "fit"

    def night(name: str, *extra: str, umask: str) -> None:
        out[name] = dlmm(*command, *extra, cwd=cwd, umask=umask)
        written = (fit / "result.json").is_file()
        out[f"{name}_modes"] = _modes(fit) if written else None
        out[f"{name}_doc"] = json.loads((fit / "result.json").read_text()) if written else None
        out[f"{name}_files"] = _snapshot(fit) if written else None

    night("one", umask="022")
    night("two", umask="022")
    night("three", "--fitted", umask="002")
    out["data_after"] = _snapshot(cwd / "data")
    out["siblings"] = sorted(p.name for p in cwd.iterdir())
    return out


def test_night_one_of_the_readme_command_is_a_logged_cold_start(nights, sm):
    proc = nights["one"]
    assert proc.returncode == 0, proc.stderr
    assert "cold start: no previous output in 'fit/' yet" in proc.stderr
    doc = nights["one_doc"]
    assert doc["status"] == "converged"
    assert doc["start"] == {"path": "fit/", "used": False,
                            "reason": "no previous output in 'fit/' yet"}
    np.testing.assert_allclose(list(doc["estimates"]["fe_params"].values()),
                               sm.fe_params.to_numpy(), rtol=1e-5)
    np.testing.assert_allclose(doc["estimates"]["cov_re"]["matrix"], sm.cov_re.to_numpy(),
                               rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(doc["estimates"]["llf"], sm.llf, rtol=1e-9)
    assert nights["data_after"] == nights["data_before"]  # no input changed
    assert nights["siblings"] == ["data", "fit", "stats-cache"]  # nothing half-written


def test_night_two_of_the_readme_command_is_skipped(nights):
    proc = nights["two"]
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"unchanged: the 1 input files and the specification are those of "
                     r"fit/: no data read, nothing written\n\Z", proc.stderr), proc.stderr
    assert nights["two_files"] == nights["one_files"]  # not even touched


def test_outputs_have_the_modes_mkdir_gives_under_the_umask(nights):
    one = nights["one_modes"]  # umask 022
    assert one == {".": 0o755, "random_effects.parquet": 0o644, "result.json": 0o644,
                   "summary.txt": 0o644}
    three = nights["three_modes"]  # umask 002, with the workers' fitted.parquet/
    assert three.pop(".") == 0o775 and three.pop("fitted.parquet") == 0o775
    assert set(three) == {"random_effects.parquet", "result.json", "summary.txt",
                          "fitted.parquet/part.0.parquet"}
    assert set(three.values()) == {0o664}


def test_fitted_is_not_skipped_over_an_output_without_fitted_values(nights, frame, sm):
    proc = nights["three"]
    assert proc.returncode == 0, proc.stderr
    assert "not skipped: 'fit/' has no fitted values (--fitted)" in proc.stderr
    doc = nights["three_doc"]
    assert doc["start"] == {"path": "fit/", "used": True, "reason": None}
    assert "fitted.parquet" in doc["files"]
    fitted = pd.read_parquet(nights["cwd"] / "fit" / "fitted.parquet")["fitted"]
    # (statsmodels' optimum is looser than dlmm's: its BLUPs agree to about 1e-4)
    np.testing.assert_allclose(fitted.to_numpy(), sm.fittedvalues.to_numpy(), rtol=1e-4,
                               atol=2e-4)


def test_skipping_a_not_converged_output_passes_its_status_on(nights, tmp_path):
    cwd = nights["cwd"]  # the same data files (their fingerprint holds their paths)
    out = tmp_path / "short"
    short = [*MODEL, "--max-iter", "1", "--no-newton", "--method", "nelder-mead",
             "--workers", "1", "--threads-per-worker", "1", "-o", out]
    first = dlmm("fit", "data/", *short, "--quiet", cwd=cwd)
    assert first.returncode == 3, first.stderr
    doc = json.loads((out / "result.json").read_text())
    assert doc["status"] == "not_converged" and doc["convergence_failures"]
    before = _snapshot(out)
    again = dlmm("fit", "data/", *short, "--skip-unchanged", "--overwrite", cwd=cwd)
    assert again.returncode == 3, again.stderr
    line = again.stderr.strip().splitlines()[-1]
    assert "WARNING unchanged: the 1 input files and the specification are those of" in line
    assert f"it did not converge ({doc['convergence_failures'][0]}" in line
    assert _snapshot(out) == before


def _bad_start(nights, tmp_path: Path, name: str, edit) -> Path:
    """A copy of night one's output whose estimates ``edit`` changed."""
    start = tmp_path / name
    shutil.copytree(nights["cwd"] / "fit", start)
    doc = json.loads((start / "result.json").read_text())
    edit(doc["state"]["estimates"])
    (start / "result.json").write_text(json.dumps(doc))  # NaN as JSON's NaN
    return start


def test_start_from_estimates_that_are_no_start_point_is_one_line(nights, tmp_path,
                                                                   capsys):
    from dlmm.cli import main

    cases = [
        ("nan", lambda e: e["cov_re_unscaled"][0].__setitem__(0, float("nan")),
         "cov_re_unscaled is not finite (NaN or infinity): not a start point"),
        ("shape", lambda e: e.__setitem__("cov_re_unscaled", np.eye(3).tolist()),
         "cov_re_unscaled holds the covariance of 3 random effects but its exog_re_names "
         "lists 2: not a start point"),
        ("extra-vc", lambda e: e.__setitem__("vcomp_unscaled", [0.5]),
         "vcomp_unscaled holds 1 variance components but its vc_names lists 0: not a "
         "start point"),
    ]
    for k, (name, edit, message) in enumerate(cases):
        start = _bad_start(nights, tmp_path, name, edit)
        before = _snapshot(start)
        args = ["fit", nights["cwd"] / "data", *MODEL, "--start-from", start,
                "-o", tmp_path / "out"]
        if k == 0:  # the installed command, as a user runs it
            proc = dlmm(*args, cwd=tmp_path)
            code, line = proc.returncode, _one_line(proc)
        else:  # the same refusal comes before any work: in this process (the time)
            capsys.readouterr()
            code = main([str(a) for a in args])
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1, err
            line = err[0]
        assert code == 2
        assert line == f"dlmm: error: --start-from {str(start)!r}: result.json: {message}"
        assert not (tmp_path / "out").exists() and _snapshot(start) == before


def test_start_from_an_optimum_of_1e300_is_a_cold_start_that_says_why(nights, tmp_path,
                                                                       sm):
    start = _bad_start(nights, tmp_path, "huge", lambda e: e.__setitem__(
        "cov_re_unscaled", [[1e300, 0.0], [0.0, 1e300]]))
    proc = dlmm("fit", nights["cwd"] / "data", *MODEL, "--start-from", start,
                "--workers", "1", "--threads-per-worker", "1", "-o", tmp_path / "out",
                cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    why = (f"the likelihood cannot be evaluated at the optimum of {str(start)!r} "
           "(InfeasiblePoint: ")
    assert f"WARNING cold start: {why}" in proc.stderr
    assert "Traceback" not in proc.stderr and "ConvergenceWarning" not in proc.stderr
    out = json.loads((tmp_path / "out" / "result.json").read_text())
    assert out["start"]["used"] is False and out["start"]["reason"].startswith(why)
    np.testing.assert_allclose(out["estimates"]["cov_re"]["matrix"], sm.cov_re.to_numpy(),
                               rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(out["estimates"]["llf"], sm.llf, rtol=1e-9)
