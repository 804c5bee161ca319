"""What ``help()`` and an install show: the public functions' parameters, the
license files and the changelog (issue 20 item 10).

That ``pip install -e .`` prints no license deprecation was checked by hand in a
scratch virtualenv (setuptools 84 in pip's build isolation); the suite's own
environment has setuptools 65, older than the package's build requirement.
"""

from __future__ import annotations

import inspect
import pydoc
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_help_documents_every_parameter_of_each_public_function():
    # help()'s text (pydoc's rendering) of every public function of dlmm
    import dlmm

    names = [n for n in dlmm.__all__ if inspect.isfunction(getattr(dlmm, n))]
    assert {"mixedlm", "lmer", "lrtest", "load_result"} <= set(names)
    for name in names:
        text = pydoc.render_doc(getattr(dlmm, name), renderer=pydoc.plaintext)
        params = [p for p in inspect.signature(getattr(dlmm, name)).parameters.values()
                  if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        assert "Parameters\n" in text and "Returns\n" in text, name
        for p in params:
            assert re.search(rf"^\s+{re.escape(p.name)} :", text, flags=re.M), (name, p.name)


def test_license_and_changelog_files():
    license_text = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert license_text.startswith("BSD 3-Clause License")
    assert "Redistributions in binary form must reproduce" in license_text
    assert "Neither the name of the copyright holder" in license_text
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'^license = "BSD-3-Clause"$', pyproject, flags=re.M)
    assert re.search(r'^license-files = \["LICENSE"\]$', pyproject, flags=re.M)
    # setuptools reads that form from 77 on (older ones refuse it, newer ones warn
    # about the table form on every install)
    assert re.search(r'^requires = \["setuptools>=77"', pyproject, flags=re.M)
    changelog = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    assert changelog.startswith("# Changelog")
    assert "keepachangelog.com" in changelog
    sections = re.findall(r"^## \[([^\]]+)\]", changelog, flags=re.M)
    assert sections[0] == "Unreleased" and "0.1.0" in sections
