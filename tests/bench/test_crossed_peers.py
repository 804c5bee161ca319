"""The crossed benchmark's gpboost peer and its three-factor case (issue 23): gpboost
runs in a child of a Python the user names and is skipped in one line without one
(these tests need no gpboost: a stand-in script plays it); ``d3`` is three crossed
factors with slopes, fitted by ``dlmm.lmer`` and lme4's same formula."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from dlmm.bench.cases import _ratios, case_line, format_case_table, gpboost_skipped
from dlmm.bench.crossed import D3_FORMULA, _case, _kind, check_cases, d3_like
from dlmm.bench.peers import gpboost_fit, gpboost_python

#: A stand-in for gpboost's child: echoes what it was asked in gpboost's report shape.
FAKE = """
import json, sys
a = json.loads(sys.argv[1])
print("noise before the result")
print("GPBOOST-FIT " + json.dumps({"seconds": 1.5, "llf": -100.25, "cov_pars": [1.0, 0.2],
      "coef": [3.5, 0.3], "asked": a}))
"""


def test_gpboost_is_skipped_in_one_line_without_a_python_that_has_it(tmp_path):
    missing = str(tmp_path / "no-such-python")
    # the suite's Python never has gpboost (it is no dependency of dlmm)
    assert gpboost_python(missing) is None
    note = gpboost_skipped(missing)
    assert note == (f"gpboost: not importable by {missing} (--gpboost-python PYTHON "
                    "names one that has it); skipped")
    # a Python whose 'import gpboost' succeeds is the one used
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    assert gpboost_python(str(fake)) == str(fake)


def test_gpboost_fit_reads_its_childs_report(tmp_path):
    out = gpboost_fit(sys.executable, tmp_path / "data", "y", ["x"], ["user", "item"],
                      timeout=60, script=FAKE)
    assert out["seconds"] == 1.5 and out["llf"] == -100.25
    assert out["asked"] == {"path": str(tmp_path / "data"), "response": "y",
                            "covariates": ["x"], "factors": ["user", "item"]}
    with pytest.raises(RuntimeError, match="boom"):
        gpboost_fit(sys.executable, tmp_path, "y", [], ["g"], timeout=60,
                    script="raise SystemExit('boom')")


def test_a_row_with_gpboost_has_its_ratio_line_and_column():
    row = {"case": "1000x50x20:ml", "rows": 1000, "levels": {"user": 50, "item": 20},
           "dlmm_pandas": {"seconds": 0.5, "llf": -100.0, "factorizations": 9,
                           "evaluations": 7},
           "dlmm_parquet": {"seconds": 1.0, "llf": -100.0},
           "gpboost": {"seconds": 1.5, "llf": -100.25}}
    _ratios(row)
    assert row["gpboost"]["ratio"] == 3.0
    np.testing.assert_allclose(row["gpboost"]["llf_rel_diff"], 0.25 / 100.25)
    assert "gpboost 1.50 s (3.0x dlmm, llf rel diff 2.5e-03)" in case_line(row)
    table = format_case_table({"results": [row]}).splitlines()
    assert table[0].split()[-2:] == ["gpboost", "x"]
    assert table[2].split()[-2:] == ["1.50", "3.0"]


def test_cases_name_their_fit_and_gpboosts_spelling():
    check_cases(["d3", "d3x6000", "insteval:ml", "1000x50x20:ml"])
    with pytest.raises(ValueError, match="after ':' comes 'ml' or 'reml'"):
        check_cases(["insteval:mle"])
    kind = _kind(Path("unused"))
    d3 = _case("d3")
    assert d3["rows"] == 60_000 and d3["reml"] and d3["lmer"] == D3_FORMULA
    assert kind.lme4_formula(d3) == D3_FORMULA
    assert "no correlated random slopes" in kind.gpboost(d3)
    ratings = _case("1000x50x20:ml")
    assert not ratings["reml"] and ratings["base"] == "1000x50x20"
    assert kind.gpboost(ratings) == {"response": "y", "covariates": ["x"],
                                     "factors": ["user", "item"]}
    assert kind.lme4_formula(ratings) == "y ~ x + (1 | user) + (1 | item)"
    assert kind.gpboost(_case("1000x50x20")) == \
        "gpboost fits ML only (name the case with ':ml')"


def test_d3_like_has_the_promised_shape_and_moments():
    frame = d3_like(30_000, seed=2)
    assert list(frame.columns) == ["g", "h", "i", "u", "y"] and len(frame) == 30_000
    assert [frame[c].nunique() for c in "ghi"] == [1000, 300, 300]
    # Var(y | u) = 1 + sum of the intercept variances + u^2 (sum of slope variances)
    # + 2 u (sum of covariances): at u ~ 0 about 1 + 0.36 + 0.16 + 0.09
    resid = frame["y"] - 1.0 - 0.5 * frame["u"]
    near = resid[np.abs(frame["u"]) < 0.2]
    np.testing.assert_allclose(near.var(), 1.61, rtol=0.1)
    assert json.dumps(_case("d3x30000")["factors"]) == '["g", "h", "i"]'


def test_kb07_is_the_maximal_model_on_the_reference_data(tmp_path, capsys):
    """``kb07``: lme4's maximal model on the kb07-shaped data of the lme4 reference fits,
    written to Parquet as it is; dlmm's fit of it in the benchmark's child is lme4's
    (bobyqa's optimum, committed in tests/reference/crossed_terms)."""
    import pandas as pd

    from dlmm.bench.crossed import KB07_DATA, KB07_FORMULA, _child, _write_data

    check_cases(["kb07", "kb07:ml"])
    case = _case("kb07")
    assert case["lmer"] == KB07_FORMULA == (
        "rt ~ spkr * prec * load + (1 + spkr + prec + load | subj) "
        "+ (1 + spkr + prec + load | item)")
    assert _kind(Path("unused")).lme4_formula(case) == KB07_FORMULA
    assert "no correlated random slopes" in _kind(Path("unused")).gpboost(case)
    path = _write_data(case, tmp_path, tmp_path / "unused.csv", 2, 0)
    written = pd.concat(pd.read_parquet(p) for p in sorted(path.glob("*.parquet")))
    pd.testing.assert_frame_equal(written.reset_index(drop=True), pd.read_csv(KB07_DATA))
    _child(json.dumps({"mode": "pandas", "path": str(path), "formula": case["formula"],
                       "factors": case["factors"], "lmer": case["lmer"], "reml": True,
                       "workers": 1}))
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("DLMM-BENCH ")]
    out = json.loads(line[0][len("DLMM-BENCH "):])
    reference = json.loads((Path(__file__).parents[1] / "reference" / "crossed_terms"
                            / "lme4_crossed_terms.json").read_text())["cases"]["kb07_reml"]
    assert out["converged"]
    assert out["llf"] == pytest.approx(reference["llf"], rel=1e-8)
