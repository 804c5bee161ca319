"""Run statsmodels' ``test_lme.py`` against dlmm in a subprocess and judge it by the allow-list.

The subprocess is a plain pytest run of the installed statsmodels test module with
``tests.statsmodels_suite.plugin`` (the substitution happens only there, never in
the process that runs dlmm's own suite); the plugin writes one outcome a line.
:func:`judge` compares the outcomes with ``allowed_failures.txt``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .plugin import REPORT_ENV

REPO = Path(__file__).resolve().parents[2]
ALLOW_LIST = Path(__file__).resolve().parent / "allowed_failures.txt"
MODULE = "statsmodels.regression.tests.test_lme"
#: a bound on the subprocess, far above its run time (about 20 s on 2 busy cores)
TIMEOUT = 600


@dataclass(frozen=True)
class Outcome:
    """One test's outcome: ``passed``, ``failed`` or ``skipped``, and its one-line message."""

    outcome: str
    message: str = ""


def read_allow_list(path: Path = ALLOW_LIST) -> dict[str, str]:
    """``{test name: reason}`` from the allow-list (``#`` lines and blank lines ignored).

    Raises ValueError on a line without a reason or a name listed twice.
    """
    allowed: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, reason = line.strip().partition(" ")
        if not reason.strip():
            raise ValueError(f"{path.name}:{number}: {name} has no reason")
        if name in allowed:
            raise ValueError(f"{path.name}:{number}: {name} is listed twice")
        allowed[name] = reason.strip()
    return allowed


def read_outcomes(path: Path) -> dict[str, Outcome]:
    """The plugin's report: a test failed if any phase failed, else its call's outcome."""
    outcomes: dict[str, Outcome] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        seen = outcomes.get(row["test"])
        if seen is not None and seen.outcome == "failed":
            continue
        outcomes[row["test"]] = Outcome(row["outcome"], row["message"])
    return outcomes


def run_suite(workdir: Path, *extra: str) -> tuple[subprocess.CompletedProcess, dict[str, Outcome]]:
    """statsmodels' MixedLM tests with dlmm substituted, in a fresh Python process.

    ``workdir`` is the subprocess's working directory (its pytest rootdir: no
    configuration of dlmm's applies there); ``extra`` are more pytest arguments.
    """
    report = workdir / "outcomes.jsonl"
    report.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DLMM_SM"))}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    env[REPORT_ENV] = str(report)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "-p", "tests.statsmodels_suite.plugin", "--pyargs", MODULE, *extra],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    return proc, (read_outcomes(report) if report.exists() else {})


def counts(outcomes: dict[str, Outcome]) -> dict[str, int]:
    """How many tests passed, failed and were skipped."""
    out = {"passed": 0, "failed": 0, "skipped": 0}
    for o in outcomes.values():
        out[o.outcome] += 1
    return out


def judge(outcomes: dict[str, Outcome], allowed: dict[str, str]) -> list[str]:
    """What is wrong, one line each: a failure not listed, a listed test that passes (it
    leaves the list), a listed test that was skipped or not run at all."""
    problems = []
    for name, o in sorted(outcomes.items()):
        if o.outcome == "failed" and name not in allowed:
            problems.append(f"FAILS, not on the allow-list: {name}: {o.message}")
        elif o.outcome == "passed" and name in allowed:
            problems.append(f"PASSES, so it leaves the allow-list: {name}")
    for name in sorted(allowed):
        o = outcomes.get(name)
        if o is None:
            problems.append(f"LISTED but not run: {name}")
        elif o.outcome == "skipped":
            problems.append(f"LISTED but skipped ({o.message}): {name}")
    return problems
