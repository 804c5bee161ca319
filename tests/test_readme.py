"""The README's examples run as written: its Python block and its command-line block.

The Python block runs from the repository root (it reads the example data
shipped in ``examples/data``); the command-line block runs, line by line, in an
empty folder, each command a subprocess with a time bound. The performance
section's command, which made the table on a larger machine budget, is not
run here.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, flags=re.S)


def _command_line_block() -> list[str]:
    """The first indented block of the command-line section (the walk-through; later
    blocks show options that need a cluster of one's own, such as TLS)."""
    section = README.split("## Command line", 1)[1].split("\n## ", 1)[0]
    block = section.strip("\n").split("\n\n", 1)[0]
    return [line.strip() for line in block.splitlines() if line.startswith("    dlmm ")]


def test_the_python_example_runs(tmp_path):
    blocks = _python_blocks()
    assert blocks, "the README has no Python example"
    for code in blocks:
        proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        # statsmodels' summary, or lme4's for a model beyond statsmodels' shape
        assert "Mixed Linear Model Regression Results" in proc.stdout or \
            "Linear mixed model fit by REML" in proc.stdout


def test_the_command_line_example_runs(tmp_path):
    commands = _command_line_block()
    assert [c.split()[1] for c in commands] == ["simulate", "fit", "summary", "predict",
                                                "bench"]
    dlmm = [sys.executable, "-m", "dlmm.cli"]
    for command in commands:
        proc = subprocess.run(dlmm + shlex.split(command)[1:], cwd=tmp_path,
                              capture_output=True, text=True, timeout=400)
        assert proc.returncode == 0, f"{command}: {proc.stderr[-2000:]}"
    assert (tmp_path / "fit" / "result.json").exists()
    assert (tmp_path / "predictions").is_dir() and (tmp_path / "bench").is_dir()
