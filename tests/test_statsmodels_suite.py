"""statsmodels' own MixedLM test file (``statsmodels/regression/tests/test_lme.py``,
installed with statsmodels) run against dlmm, judged by the allow-list
``tests/statsmodels_suite/allowed_failures.txt`` (issue 25).

The run is one subprocess (``tests/statsmodels_suite/runner.py``), so that
dlmm stands in for statsmodels' ``MixedLM`` there only: the rest of the suite
compares dlmm with the real statsmodels.
"""

from __future__ import annotations

import pytest

from tests.statsmodels_suite.runner import Outcome, counts, judge, read_allow_list, run_suite


def test_statsmodels_test_lme_passes_but_for_the_allow_list(tmp_path):
    proc, outcomes = run_suite(tmp_path)
    tail = "\n".join(proc.stdout.splitlines()[-15:] + proc.stderr.splitlines()[-15:])
    # 0: all passed, 1: some failed; anything else (collection errors, usage) is no run
    assert proc.returncode in (0, 1), tail
    assert outcomes, tail
    problems = judge(outcomes, read_allow_list())
    assert not problems, f"{counts(outcomes)}\n" + "\n".join(problems)


def test_allow_list_has_a_reason_per_line_and_no_duplicates():
    allowed = read_allow_list()
    assert all(reason for reason in allowed.values())


@pytest.mark.parametrize(("outcome", "listed", "expected"), [
    ("failed", False, "FAILS, not on the allow-list"),
    ("passed", True, "PASSES, so it leaves the allow-list"),
    ("skipped", True, "LISTED but skipped"),
    ("failed", True, None),
    ("passed", False, None),
    ("skipped", False, None),
])
def test_judge_rejects_unlisted_failures_and_listed_passes(outcome, listed, expected):
    allowed = {"t": "a reason"} if listed else {}
    problems = judge({"t": Outcome(outcome, "msg")}, allowed)
    if expected is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problems[0].startswith(expected)


def test_judge_rejects_a_listed_test_that_did_not_run():
    assert judge({}, {"gone": "a reason"}) == ["LISTED but not run: gone"]
