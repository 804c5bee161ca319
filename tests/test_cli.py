"""The ``dlmm`` command end to end: real Dask processes, exit codes, outputs, logs.

A module fixture starts a ``dask scheduler`` and two ``dask worker`` processes
on 127.0.0.1 (random ports, no dashboard) and always stops them. ``dlmm`` runs
as a subprocess (``python -m dlmm.cli``) with a timeout.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import dlmm
from dlmm import cli
from tests.conftest import REFERENCE

TIMEOUT = 120
FORMULA = "y ~ x1 + x2"


def run_dlmm(*args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    """``python -m dlmm.cli ARGS`` in a subprocess, time-bounded."""
    return subprocess.run([sys.executable, "-m", "dlmm.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def _dask_command(*args: str) -> list[str]:
    script = Path(sys.executable).with_name("dask")
    return [str(script), *args] if script.exists() else [sys.executable, "-m", "dask", *args]


def _stop(proc: subprocess.Popen) -> None:
    """Stop a process we started (and its children, in its own session)."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory):
    """Address of a real scheduler with two worker processes, all on 127.0.0.1."""
    from distributed import Client

    folder = tmp_path_factory.mktemp("dask")
    info = folder / "scheduler.json"
    procs: list[subprocess.Popen] = []
    logs = []

    def start(args: list[str], name: str) -> None:
        log = open(folder / f"{name}.log", "w")  # noqa: SIM115 - closed in finally
        logs.append(log)
        procs.append(subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True))

    try:
        start(_dask_command("scheduler", "--host", "127.0.0.1", "--port", "0",
                            "--no-dashboard", "--dashboard-address", "127.0.0.1:0",
                            "--scheduler-file", str(info)), "scheduler")
        deadline = time.monotonic() + 60
        while not info.exists() or not info.read_text().strip():
            if procs[0].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("dask scheduler did not start: "
                                   + (folder / "scheduler.log").read_text())
            time.sleep(0.1)
        time.sleep(0.1)
        address = json.loads(info.read_text())["address"]
        for k in range(2):
            start(_dask_command("worker", address, "--host", "127.0.0.1", "--no-dashboard",
                                "--dashboard-address", "127.0.0.1:0", "--nthreads", "1",
                                "--memory-limit", "2GiB",
                                "--death-timeout", "60"), f"worker{k}")
        with Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for proc in reversed(procs):
            _stop(proc)
        for log in logs:
            log.close()


@pytest.fixture(scope="module")
def simulated(tmp_path_factory) -> Path:
    """A data set written by ``dlmm simulate`` (4 files, a slope and a component)."""
    out = tmp_path_factory.mktemp("sim") / "data"
    proc = run_dlmm("simulate", "--groups", "150", "--per-group", "12", "--re-formula", "~x1",
                    "--vc", "c=0.6", "--partitions", "4", "--seed", "20", "--output", out)
    assert proc.returncode == 0, proc.stderr
    return out


def _fit_args(data, *extra):
    return ["fit", data, "--formula", FORMULA, "--groups", "g", "--re-formula", "~x1",
            "--vc", "c=0 + C(c)", *extra]


def _error_line(proc) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("dlmm: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def _no_output(tmp_path: Path, name: str = "out") -> None:
    assert not (tmp_path / name).exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(f".{name}.")]


# -- real cluster -------------------------------------------------------------------


def test_fit_on_scheduler_equals_python_api(scheduler, simulated, tmp_path):
    from distributed import Client

    out = tmp_path / "out"
    proc = run_dlmm(*_fit_args(simulated, "--scheduler", scheduler, "--output", out,
                               "--log-format", "json", "--fitted"))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((out / "result.json").read_text())
    assert doc["schema"] == "dlmm.result/1" and doc["status"] == "converged"
    assert doc["cluster"]["kind"] == "scheduler" and doc["cluster"]["workers"] == 2
    assert doc["nobs"] == 1800 and doc["n_groups"] == 150

    with Client(scheduler, timeout=30) as client:
        model = dlmm.mixedlm(FORMULA, str(simulated), groups="g", re_formula="~x1",
                             vc_formula={"c": "0 + C(c)"}, client=client)
        api = model.fit(client=client)
        expected = client.compute(api.random_effects_table(with_se=True)).result()
        fitted = client.compute(api.fittedvalues).result()
    est = doc["estimates"]
    rel = {"rtol": 1e-6, "atol": 0}
    np.testing.assert_allclose(list(est["fe_params"].values()), api.fe_params, **rel)
    assert list(est["fe_params"]) == list(api.fe_params.index)
    np.testing.assert_allclose(est["cov_re"]["matrix"], api.cov_re.to_numpy(), **rel)
    np.testing.assert_allclose(list(est["vcomp"].values()), api.vcomp, **rel)
    np.testing.assert_allclose(est["scale"], api.scale, **rel)
    np.testing.assert_allclose(est["llf"], api.llf, **rel)
    np.testing.assert_allclose(list(est["params"].values()), api.params, **rel)
    summary = (out / "summary.txt").read_text()
    assert "Mixed Linear Model Regression Results" in summary and "c Var" in summary
    effects = pd.read_parquet(out / "random_effects.parquet")
    pd.testing.assert_frame_equal(effects, expected, rtol=1e-6)
    # fitted.parquet: written by the workers, in the input's row order.
    written = pd.read_parquet(out / "fitted.parquet")["fitted"]
    np.testing.assert_allclose(written, np.asarray(fitted), rtol=1e-6)
    assert doc["files"] == ["summary.txt", "random_effects.parquet", "vc_effects.parquet",
                            "fitted.parquet", "model"]
    assert dlmm.load_result(out / "model").llf == pytest.approx(api.llf, rel=1e-6)

    # --log-format json: every stderr line is an object; the data pass and every
    # optimizer evaluation are reported.
    records = [json.loads(line) for line in proc.stderr.strip().splitlines()]
    events = [r.get("event") for r in records]
    passes = [r["stage"] for r in records if r.get("event") == "data_pass"]
    assert passes[0] == "start" and passes[-1] == "end"
    progress = [r for r in records if r.get("event") == "data_pass"
                and r["stage"] == "progress"]
    assert progress and progress[-1]["done"] == progress[-1]["total"] == 4  # 4 files
    steps = [r for r in records if r.get("event") == "evaluation"]
    assert len(steps) == doc["optimizer"]["evaluations"] > 0
    assert {"step", "llf", "grad_norm", "stage"} <= set(steps[0])
    assert events[-1] == "output"


def test_not_converged_exits_3_with_outputs_marked(scheduler, simulated, tmp_path):
    out = tmp_path / "out"
    proc = run_dlmm(*_fit_args(simulated, "--scheduler", scheduler, "--output", out,
                               "--max-iter", "1", "--method", "cg", "--no-newton"))
    assert proc.returncode == 3, proc.stderr
    doc = json.loads((out / "result.json").read_text())
    assert doc["status"] == "not_converged" and doc["converged"] is False
    assert doc["optimizer"]["converged"] is False
    assert doc["options"]["method"] == ["cg"] and doc["options"]["newton_steps"] == 0
    assert "Converged:" in (out / "summary.txt").read_text()
    assert "ConvergenceWarning" in proc.stderr and "not converged" in proc.stderr


def test_existing_output_refused_without_overwrite(scheduler, simulated, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    proc = run_dlmm(*_fit_args(simulated, "--scheduler", scheduler, "--output", out))
    assert proc.returncode == 2
    assert "exists; pass --overwrite" in _error_line(proc)
    assert [p.name for p in out.iterdir()] == ["old.txt"]
    proc = run_dlmm(*_fit_args(simulated, "--scheduler", scheduler, "--output", out,
                               "--overwrite", "--quiet"))
    assert proc.returncode == 0 and proc.stderr == ""
    assert sorted(p.name for p in out.iterdir()) == [
        "model", "random_effects.parquet", "result.json", "summary.txt", "vc_effects.parquet"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


@pytest.mark.parametrize(
    ("case", "fault"),
    [
        ("unknown column", "column 'nope'"),
        ("missing file", "does not exist"),
        ("unreadable parquet", "broken.parquet"),
        ("bad option", "--missing"),
        ("bad vc", "--vc 'c'"),
        ("bad config key", "unknown option 'colour'"),
    ],
)
def test_bad_input_exits_2_with_one_line(scheduler, simulated, tmp_path, case, fault):
    out = tmp_path / "out"
    common = ["--scheduler", scheduler, "--output", out, "--quiet"]
    if case == "unknown column":
        args = ["fit", simulated, "--formula", "y ~ x1 + nope", "--groups", "g", *common]
    elif case == "missing file":
        args = _fit_args(tmp_path / "nowhere", *common)
    elif case == "unreadable parquet":
        (tmp_path / "bad").mkdir()
        (tmp_path / "bad" / "broken.parquet").write_bytes(b"PAR1 this is not parquet")
        args = _fit_args(tmp_path / "bad", *common)
    elif case == "bad option":
        args = _fit_args(simulated, "--missing", "sometimes", *common)
    elif case == "bad vc":
        args = ["fit", simulated, "--formula", FORMULA, "--vc", "c", *common]
    else:
        config = tmp_path / "fit.toml"
        config.write_text('formula = "y ~ x1"\ncolour = "blue"\n')
        args = ["fit", simulated, "--config", config, *common]
    proc = run_dlmm(*args)
    assert proc.returncode == 2, proc.stderr
    assert fault in _error_line(proc)
    _no_output(tmp_path)


def test_sleepstudy_on_embedded_cluster_gives_lme4_llf(tmp_path, reference_cases):
    case = reference_cases["sleepstudy_reml"]
    frame = pd.read_csv(REFERENCE / "data" / case["model"]["data"])
    data = tmp_path / "sleepstudy"
    data.mkdir()
    subjects = sorted(frame["Subject"].unique())
    for k, part in enumerate((subjects[:9], subjects[9:])):  # two files of whole subjects
        frame[frame["Subject"].isin(part)].to_parquet(data / f"part-{k}.parquet", index=False)
    out = tmp_path / "out"
    proc = run_dlmm("fit", data, "--formula", "Reaction ~ Days", "--groups", "Subject",
                    "--re-formula", "~Days", "--workers", "2", "--threads-per-worker", "1",
                    "--memory-limit", "1GiB", "--output", out)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((out / "result.json").read_text())
    expected = case["expected"]
    assert doc["estimates"]["llf"] == pytest.approx(expected["llf"], abs=1e-4)
    assert doc["estimates"]["fe_params"] == pytest.approx(expected["fe_params"], rel=1e-5)
    assert doc["nobs"] == expected["nobs"] and doc["cluster"]["kind"] == "embedded"
    assert doc["cluster"]["workers"] == 2
    assert "data pass: done" in proc.stderr and "step 1 " in proc.stderr

    shown = run_dlmm("summary", out, timeout=60)
    assert shown.returncode == 0
    assert shown.stdout == (out / "summary.txt").read_text()
    assert "Reaction" in shown.stdout


# -- in process: parser, config, exit code 1 ------------------------------------------


def test_parser_has_every_fit_option():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    fit = sub.choices["fit"]
    flags = {s for a in fit._actions for s in a.option_strings}
    for flag in ("--formula", "--groups", "--re-formula", "--vc", "--ml", "--reml", "--missing",
                 "--scheduler", "--workers", "--threads-per-worker", "--memory-limit",
                 "--output", "--overwrite", "--config", "--quiet", "--verbose", "--log-format",
                 "--max-iter", "--method", "--no-newton", "--newton-steps",
                 "--drop-collinear", "--no-drop-collinear"):
        assert flag in flags
    assert {"fit", "summary", "simulate", "predict", "bench"} <= set(sub.choices)


def test_config_file_then_flags(tmp_path):
    config = tmp_path / "fit.toml"
    config.write_text(
        'data = "from/config"\nformula = "y ~ x1"\ngroups = "g"\nre-formula = "~x1"\n'
        'reml = false\nmissing = "drop"\nworkers = 3\noutput = "cfg-out"\n'
        'method = ["lbfgs", "bfgs"]\nlog_format = "json"\n'
        '[vc]\nc = "0 + C(c)"\nb = "0 + C(b)"\n'
    )
    parser = cli.build_parser()
    opts = cli.fit_options(parser.parse_args(["fit", "--config", str(config)]))
    assert opts["data"] == "from/config" and opts["re_formula"] == "~x1"
    assert opts["ml"] is True and opts["missing"] == "drop" and opts["workers"] == 3
    assert opts["vc"] == {"c": "0 + C(c)", "b": "0 + C(b)"}
    assert opts["method"] == ["lbfgs", "bfgs"] and opts["log_format"] == "json"
    opts = cli.fit_options(parser.parse_args(
        ["fit", "other/data", "--config", str(config), "--reml", "--vc", "a=0 + C(a)",
         "--workers", "1", "--output", "cli-out", "--log-format", "text"]))
    assert opts["data"] == "other/data" and opts["ml"] is False
    assert opts["vc"] == {"a": "0 + C(a)"} and opts["workers"] == 1
    assert opts["output"] == "cli-out" and opts["log_format"] == "text"
    assert opts["formula"] == "y ~ x1" and opts["config"] == str(config)


@pytest.mark.parametrize(
    ("text", "args", "message"),
    [
        ('workers = "two"', [], "workers must be int"),
        ("ml = 1", [], "ml must be bool"),
        ('formula = "y ~ x1"\nscheduler = "tcp://s:8786"', ["--workers", "2"],
         "give one or the other"),
        ('formula = "y ~ x1"\nmethod = "simplex"', [], "--method 'simplex' is not one of"),
        ('formula = "y ~ x1"', ["--quiet", "--verbose"], "exclude each other"),
        ("formula = ", [], "is not valid TOML"),
        ('groups = "g"', [], "--formula is required"),
    ],
)
def test_bad_config(tmp_path, text, args, message):
    config = tmp_path / "fit.toml"
    config.write_text(text + "\n")
    parser = cli.build_parser()
    with pytest.raises(cli.UsageError, match=message):
        cli.fit_options(parser.parse_args(["fit", "d/", "--config", str(config), *args]))


def test_drop_collinear_flag_reaches_the_model(simulated, tmp_path):
    data = pd.read_parquet(simulated)
    data["x3"] = 2.0 * data["x1"]
    path = tmp_path / "collinear.parquet"
    data.to_parquet(path)
    refused = run_dlmm("fit", path, "--formula", "y ~ x1 + x2 + x3", "--groups", "g",
                       "--workers", "1", "--output", tmp_path / "no", "--quiet")
    assert refused.returncode == 2 and "collinear" in _error_line(refused)
    _no_output(tmp_path, "no")
    done = run_dlmm("fit", path, "--formula", "y ~ x1 + x2 + x3", "--groups", "g",
                    "--workers", "1", "--drop-collinear", "--output", tmp_path / "yes")
    assert done.returncode == 0, done.stderr
    doc = json.loads((tmp_path / "yes" / "result.json").read_text())
    assert list(doc["estimates"]["fe_params"]) == ["Intercept", "x1", "x2"]
    assert "dropped 1 column(s) 'x3'" in done.stderr


def test_unexpected_error_exits_1(simulated, tmp_path, monkeypatch, capsys):
    def boom(opts):
        raise RuntimeError("the network fell over")

    monkeypatch.setattr(cli, "connect", boom)
    code = cli.main(_fit_args(str(simulated), "--output", str(tmp_path / "out")))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err[-1] == ("dlmm: error: unexpected RuntimeError: the network fell over "
                       "(run with --verbose for the traceback)")
    _no_output(tmp_path)
    code = cli.main(_fit_args(str(simulated), "--verbose", "--output", str(tmp_path / "out")))
    assert code == 1 and "Traceback" in capsys.readouterr().err


def test_usage_errors_exit_2(tmp_path, capsys):
    def one_line(code):
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and err[0].startswith("dlmm: error: "), err
        return err[0]

    assert "--workers" in one_line(cli.main(["fit", "--workers", "zero"]))
    assert "invalid choice: 'train'" in one_line(cli.main(["train", str(tmp_path)]))
    assert "required: DATA, -o/--output" in one_line(cli.main(["predict", str(tmp_path)]))
    assert "is not a folder" in one_line(cli.main(["summary", str(tmp_path / "none")]))
    assert "no DATA" in one_line(cli.main(["fit", "--formula", "y ~ x"]))
    assert "required: --groups" in one_line(cli.main(["simulate", "--per-group", "2"]))
    proc = run_dlmm("--version", timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == f"dlmm {dlmm.__version__}"


# -- predict and bench ----------------------------------------------------------------


def test_predict_writes_what_the_python_api_predicts(scheduler, simulated, tmp_path):
    out = tmp_path / "out"
    fit = run_dlmm(*_fit_args(simulated, "--scheduler", scheduler, "--output", out, "--quiet"))
    assert fit.returncode == 0, fit.stderr
    # New data: the fitted groups plus rows of a group the fit never saw.
    data = pd.read_parquet(simulated).drop(columns="y")
    unseen = data.head(5).assign(g=10_000)
    new = tmp_path / "new.parquet"
    pd.concat([data, unseen], ignore_index=True).to_parquet(new)
    pred = tmp_path / "pred"
    proc = run_dlmm("predict", out, new, "--output", pred, "--scheduler", scheduler, "--quiet")
    assert proc.returncode == 0, proc.stderr
    written = pd.read_parquet(pred)
    assert sorted(written.columns) == ["c", "g", "predicted", "x1", "x2"]
    result = dlmm.load_result(out / "model")
    expected = result.predict(pd.concat([data, unseen], ignore_index=True))
    np.testing.assert_allclose(written["predicted"].to_numpy(), expected.to_numpy(),
                               rtol=1e-12, atol=1e-12)
    # Unseen group: exactly the fixed part.
    fe = result.fe_params
    tail = written[written["g"] == 10_000]
    fixed = fe["Intercept"] + fe["x1"] * tail["x1"] + fe["x2"] * tail["x2"]
    np.testing.assert_allclose(tail["predicted"].to_numpy(), fixed.to_numpy(), rtol=1e-13)

    again = run_dlmm("predict", out, new, "--output", pred, "--scheduler", scheduler)
    assert again.returncode == 2 and "exists" in _error_line(again)
    gone = run_dlmm("predict", out, tmp_path / "missing.parquet", "--output",
                    tmp_path / "p2", "--scheduler", scheduler)
    assert gone.returncode == 2 and "does not exist" in _error_line(gone)
    _no_output(tmp_path, "p2")


def test_bench_runs_at_a_tiny_size_and_writes_valid_json(tmp_path):
    proc = run_dlmm("bench", "--sizes", "200,400", "--per-group", "6", "--fe", "3",
                    "--workers", "1", "--peer-budget", "30", "--data-dir", tmp_path / "data",
                    "--output", tmp_path / "bench", "--quiet", timeout=240)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "bench" / "bench.json").read_text())
    assert doc["schema"] == "dlmm.bench/1"
    rows = doc["results"]
    assert [r["n_groups"] for r in rows] == [200, 400]
    assert [r["rows"] for r in rows] == [1200, 2400]
    for r in rows:
        assert r["converged"] is True and r["evaluations"] > 0
        parts = (r["data_pass_seconds"] + r["optimizer_seconds"] + r["hessian_seconds"])
        assert 0 < parts <= r["fit_seconds"]
        # statsmodels ran in the same run on the same data: same llf.
        assert abs(r["statsmodels"]["llf_rel_diff"]) < 1e-6
        assert r["statsmodels"]["ratio"] > 0
    assert "groups" in (tmp_path / "bench" / "bench.txt").read_text()
    assert (tmp_path / "bench" / "bench.png").stat().st_size > 1000
    assert "200" in proc.stdout  # the table is printed
