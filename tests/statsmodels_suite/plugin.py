"""A pytest plugin: statsmodels' ``test_lme.py`` with dlmm in place of statsmodels' MixedLM.

Run it as a new user would try dlmm on statsmodels' own tests, without copying them::

    python -m pytest --pyargs statsmodels.regression.tests.test_lme \\
        -p tests.statsmodels_suite.plugin

Loaded before collection, the plugin sets four names to dlmm's:
``statsmodels.regression.mixed_linear_model.MixedLM`` and ``.MixedLMParams``
(what ``test_lme.py`` imports), ``statsmodels.api.MixedLM`` and
``statsmodels.formula.api.mixedlm``. Everything else (``_smw_*``, ``VCSpec``,
the results' data) stays statsmodels'.

Tests that never reach dlmm are skipped with the reason, so that the counts
measure dlmm: the ``_smw_*`` helpers' tests (statsmodels' private linear
algebra), and the ``test_r`` cases that return before fitting (independent
random effects on data sets with one of them).

With ``DLMM_SM_SUITE_REPORT=path`` set, each test's outcome is written to that
file, one JSON object a line: ``{"test": "TestMixedLM::test_x[...]",
"outcome": "passed" | "failed" | "skipped", "message": "..."}`` (the test's name
without the file part; ``message`` the failure's or skip's one line).
"""

from __future__ import annotations

import json
import os

import pytest

#: the environment variable naming the outcome file
REPORT_ENV = "DLMM_SM_SUITE_REPORT"


def substitute() -> None:
    """Put dlmm's names where statsmodels' test file and users import them from."""
    import statsmodels.api as sm_api
    import statsmodels.formula.api as sm_formula
    import statsmodels.regression.mixed_linear_model as sm_mixed

    import dlmm

    sm_mixed.MixedLM = dlmm.MixedLM
    sm_mixed.MixedLMParams = dlmm.MixedLMParams
    sm_api.MixedLM = dlmm.MixedLM
    sm_formula.mixedlm = dlmm.mixedlm


def pytest_configure(config) -> None:
    substitute()
    config._dlmm_outcomes = {}


def _test_name(nodeid: str) -> str:
    return nodeid.split("::", 1)[1] if "::" in nodeid else nodeid


def _never_reaches_dlmm(item) -> str | None:
    if item.name.startswith(("test_smw_solver", "test_smw_logdet")):
        return "tests statsmodels' private _smw_* helpers, not MixedLM"
    params = getattr(getattr(item, "callspec", None), "params", {})
    if item.originalname == "test_r" and params.get("irf") \
            and int(str(params["fname"])[3:5]) < 6:
        return "test_r returns before fitting (independent effects, one random effect)"
    return None


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        reason = _never_reaches_dlmm(item)
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))


def _message(report) -> str:
    longrepr = report.longrepr
    if report.skipped and isinstance(longrepr, tuple):
        return str(longrepr[2])
    crash = getattr(longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(longrepr)
    return text.strip().splitlines()[0][:300] if text.strip() else ""


def pytest_runtest_logreport(report) -> None:
    path = os.environ.get(REPORT_ENV)
    if not path:
        return
    if report.when == "call" or report.failed or report.skipped:
        outcome = "failed" if report.failed else "skipped" if report.skipped else "passed"
        line = {"test": _test_name(report.nodeid), "outcome": outcome, "when": report.when,
                "message": _message(report) if outcome != "passed" else ""}
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(line) + "\n")
