"""``summary()`` is a ``statsmodels.iolib.summary2.Summary`` when statsmodels is installed
(issue 25, item 11), with lme4's VarCorr after statsmodels' tables; without statsmodels,
dlmm's own rendering of the same tables; ``import dlmm`` stays free of statsmodels.

The expected text is statsmodels' own summary of the same model at the same optimum
(lme4's dietox fits of statsmodels' ``test_dietox``); the checks on the tables are those
of statsmodels' ``TestMixedLMSummary`` and ``test_summary_after_remove_data``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
import statsmodels.regression.tests.results as sm_results
from statsmodels.iolib.summary2 import Summary as SMSummary

import dlmm
from dlmm.results.summary import Summary

VARCORR = "Random effects (lme4's VarCorr):"


def _small():
    """statsmodels' ``TestMixedLMSummary`` data: arrays, two groups."""
    df = pd.DataFrame({"y": range(10), "pid": np.repeat([0, 1], 5), "x0": 1,
                       "x1": [1, 5, 7, 3, 5, 1, 2, 6, 9, 8], "x2": [6, 2, 1, 0, 1, 4, 3, 8, 2, 1]})
    return (df["y"].to_numpy(dtype=float), df[["x0", "x1", "x2"]].to_numpy(dtype=float),
            df["pid"].to_numpy())


@pytest.fixture(scope="module")
def small():
    return dlmm.MixedLM(*_small()).fit()


def test_summary_is_statsmodels_summary_with_its_tables(small):
    summary = small.summary()
    assert isinstance(summary, SMSummary)
    assert list(summary.tables[1].index) == ["const", "x1", "x2", "Group Var"]
    assert len(summary.tables) == 2
    named = small.summary(xname_fe=["Constant", "Age", "Weight"], xname_re=["Random Effects"],
                          title="Custom MixedLM Summary")
    assert list(named.tables[1].index) == ["Constant", "Age", "Weight", "Random Effects"]
    assert named.title == "Custom MixedLM Summary"
    with pytest.raises(ValueError, match="xname_fe"):
        small.summary(xname_fe=["a"])


def test_summary_after_remove_data():
    result = dlmm.MixedLM(*_small()).fit()
    before = str(result.summary())
    result.remove_data()
    assert isinstance(result.summary(), SMSummary)
    assert str(result.summary()) == before


@pytest.mark.parametrize("reml", [True, False], ids=["reml", "ml"])
def test_text_is_statsmodels_then_varcorr(reml):
    data = pd.read_csv(Path(sm_results.__file__).parent / "dietox.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = smf.mixedlm("Weight ~ Time", data, groups="Pig").fit(reml=reml)
    result = dlmm.mixedlm("Weight ~ Time", data, groups="Pig").fit(reml=reml)
    assert result.llf == pytest.approx(expected.llf, rel=1e-10)  # the same optimum
    statsmodels_text = str(expected.summary()).rstrip("\n")
    text = str(result.summary())
    assert text.startswith(statsmodels_text)
    rest = text[len(statsmodels_text):].splitlines()
    assert rest[:3] == ["", "", VARCORR]
    # lme4's VarCorr of this fit (statsmodels' test_dietox: R's VarCorr 40.39395, REML)
    pig = rest[4].split()
    assert pig[:2] == ["Pig", "(Intercept)"]
    assert float(pig[2]) == pytest.approx(float(np.asarray(expected.cov_re)[0, 0]), rel=1e-3)
    html = result.summary()._repr_html_()
    assert html.startswith(expected.summary().as_html().rstrip())
    assert "VarCorr" in html


def test_dlmm_renders_the_same_tables_without_statsmodels(small):
    """The renderer ``summary()`` falls back on where statsmodels cannot be imported."""
    own = Summary(small)
    sm = small.summary()
    assert not isinstance(own, SMSummary)
    assert own.title == sm.title
    pd.testing.assert_frame_equal(own.tables[1], sm.tables[1])
    assert own.tables[0].to_numpy().tolist() == sm.tables[0].to_numpy().tolist()
    text = own.as_text()
    assert f"{small.llf:.4f}" in text and VARCORR in text
    assert "VarCorr" in own._repr_html_() and "\\begin{tabular}" in own.as_latex()


def test_summary_class_without_statsmodels_and_import_free_of_it():
    """A fresh process: ``import dlmm`` and a fit import no statsmodels, ``summary()`` does;
    where statsmodels cannot be imported, ``summary()`` is dlmm's renderer."""
    code = (
        "import json, sys\n"
        "import numpy as np, dlmm\n"
        "from dlmm.results import summary\n"
        "rs = np.random.RandomState(7)\n"
        "g = np.repeat(np.arange(6), 5)\n"
        "x = np.column_stack([np.ones(30), rs.normal(size=30)])\n"
        "y = x[:, 1] + np.repeat(rs.normal(size=6), 5) + rs.normal(size=30)\n"
        "r = dlmm.MixedLM(y, x, g).fit()\n"
        "before = 'statsmodels' in sys.modules\n"
        "installed = [c.__module__ for c in type(r.summary()).__mro__]\n"
        "after = 'statsmodels' in sys.modules\n"
        "sys.modules['statsmodels'] = None\n"
        "summary._MADE.clear()\n"
        "s = r.summary()\n"
        "print(json.dumps({'before': before, 'after': after, 'installed': installed,\n"
        "    'blocked': [c.__module__ for c in type(s).__mro__],\n"
        "    'index': list(s.tables[1].index), 'text': str(s)}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["before"] is False and out["after"] is True
    assert "statsmodels.iolib.summary2" in out["installed"]
    assert not any(m.startswith("statsmodels") for m in out["blocked"])
    assert out["index"] == ["const", "x1", "Group Var"]
    assert VARCORR in out["text"]
