"""``summary()`` in statsmodels' layout, text and HTML.

The expected text is statsmodels' own ``summary()`` of the same model at the
same optimum (checked on the log-likelihood first): the model facts and every
coefficient line must show the same formatted numbers. Group counts and sizes
are also checked against ``value_counts`` of the data.
"""

from __future__ import annotations

import functools
import re
import warnings

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from statsmodels.tools.sm_exceptions import ConvergenceWarning

import dlmm
from tests.simulate import grouped_data

FORMULA = "y ~ x1 + x2"
R2 = np.array([[1.0, 0.3], [0.3, 0.5]])
FACT_LABELS = [
    "Model:", "No. Observations:", "No. Groups:", "Min. group size:", "Max. group size:",
    "Mean group size:", "Dependent Variable:", "Method:", "Scale:", "Log-Likelihood:",
    "Converged:",
]

CASES = {
    "slope": (dict(n_groups=25, per_group=(4, 10), re_cov=R2, seed=51), "~x1", None),
    "vc": (dict(n_groups=25, per_group=(4, 10), re_cov=[[0.8]], vc_sd={"c": 0.7}, seed=52),
           "1", {"c": "0 + C(c)"}),
}


def _sm_fit(formula, data, groups, reml=True, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return smf.mixedlm(formula, data, groups=groups, **kwargs).fit(reml=reml, gtol=1e-10)


@functools.cache
def _pair(name: str, reml: bool):
    kwargs, re_formula, vc_formula = CASES[name]
    data = grouped_data(**kwargs)
    result = dlmm.mixedlm(FORMULA, data, groups="g", re_formula=re_formula,
                          vc_formula=vc_formula).fit(reml=reml)
    sm = _sm_fit(FORMULA, data, "g", reml, re_formula=re_formula, vc_formula=vc_formula)
    assert result.llf == pytest.approx(sm.llf, rel=1e-9)  # the same optimum
    return result, sm


def _fact(text: str, label: str) -> str:
    match = re.search(re.escape(label) + r"\s+(\S+)", text)
    assert match, f"{label!r} not in\n{text}"
    return match.group(1)


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _coef_tokens(text: str, name: str) -> list[str]:
    """The numbers on the coefficient line of ``name`` (names may contain spaces and
    prefix other names: "x1" and "x1 Var")."""
    lines = [line[len(name):].split() for line in text.splitlines()
             if line.startswith(name + " ")]
    lines = [tokens for tokens in lines if tokens and all(map(_is_number, tokens))]
    assert len(lines) == 1, f"{name!r}: {len(lines)} coefficient lines in\n{text}"
    return lines[0]


def _table_header(text: str) -> list[str]:
    (line,) = [line for line in text.splitlines() if "Coef." in line]
    return line.split()


def _assert_same_summary(result, sm, alpha=0.05):
    text = str(result.summary(alpha=alpha))
    expected = str(sm.summary(alpha=alpha))
    assert "Mixed Linear Model Regression Results" in text
    for label in FACT_LABELS:
        assert _fact(text, label) == _fact(expected, label), label
    assert _table_header(text) == _table_header(expected)
    for name in sm.params.index:
        assert _coef_tokens(text, name) == _coef_tokens(expected, name), name
    return text


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("reml", [True, False], ids=["reml", "ml"])
def test_summary_matches_statsmodels(name, reml):
    result, sm = _pair(name, reml)
    text = _assert_same_summary(result, sm)
    assert _fact(text, "Method:") == ("REML" if reml else "ML")
    assert "Rows dropped" not in text  # nothing was dropped


def test_summary_alpha():
    result, sm = _pair("slope", True)
    text = _assert_same_summary(result, sm, alpha=0.1)
    assert "[0.05" in text and "0.95]" in text


def test_summary_repr_is_text():
    result, _ = _pair("slope", True)
    summary = result.summary()
    assert repr(summary) == str(summary)


def _label_data() -> pd.DataFrame:
    data = grouped_data(n_groups=15, per_group=(3, 8), re_cov=[[1.0]], seed=53)
    labels = np.array([f"grp{i:02d}" for i in range(15)])
    data["s"] = labels[data["g"]]
    # Categories in another order than the labels sort, plus one no row uses.
    data["cat"] = pd.Categorical(labels[data["g"]],
                                 categories=[*labels[::-1], "unused"])
    data["g"] = data["g"] * 7 + 100  # integers that are not 0..n-1
    return data


def _assert_group_facts(text: str, column: pd.Series) -> None:
    counts = column.value_counts()
    counts = counts[counts > 0]
    assert _fact(text, "No. Groups:") == str(len(counts))
    assert _fact(text, "No. Observations:") == str(len(column))
    assert _fact(text, "Min. group size:") == str(counts.min())
    assert _fact(text, "Max. group size:") == str(counts.max())
    assert _fact(text, "Mean group size:") == f"{len(column) / len(counts):.1f}"


@pytest.mark.parametrize("groups", ["g", "s", "cat"], ids=["int", "str", "categorical"])
def test_summary_group_label_types(groups):
    data = _label_data()
    result = dlmm.mixedlm("y ~ x1", data, groups=groups).fit()
    sm = _sm_fit("y ~ x1", data, groups)
    assert result.llf == pytest.approx(sm.llf, rel=1e-9)
    text = _assert_same_summary(result, sm)
    _assert_group_facts(text, data[groups])
    assert f"{groups} Var" in text
    assert sorted(map(str, result.random_effects)) == sorted(map(str, sm.random_effects))


def test_summary_categorical_groups_on_dask(dask_client):
    data = _label_data()
    frame = dd.from_pandas(data, npartitions=3, sort=False)
    result = dlmm.mixedlm("y ~ x1", frame, groups="cat").fit(client=dask_client)
    sm = _sm_fit("y ~ x1", data, "cat")
    assert result.llf == pytest.approx(sm.llf, rel=1e-9)
    text = _assert_same_summary(result, sm)
    _assert_group_facts(text, data["cat"])


def test_repr_html():
    result, sm = _pair("vc", False)
    page = result._repr_html_()
    assert page.count("<table") >= 1 and "</table>" in page
    assert f"{sm.llf:.4f}" in page
    assert "Log-Likelihood" in page
    for name in sm.params.index:
        assert f">{name}<" in page, name
    # The fixed-effect numbers of statsmodels' table, formatted as there.
    for name in sm.fe_params.index:
        for token in _coef_tokens(str(sm.summary()), name):
            assert f">{token}<" in page, (name, token)
    assert result.summary()._repr_html_() == page


def test_summary_shows_dropped_rows():
    data = _label_data()
    data.loc[[2, 11, 30], "x1"] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = dlmm.mixedlm("y ~ x1", data, groups="s", missing="drop").fit()
    kept = data.dropna(subset=["x1"])
    sm = _sm_fit("y ~ x1", kept, "s")
    assert result.n_dropped == 3
    text = _assert_same_summary(result, sm)
    match = re.search(r"Rows dropped[^:]*:\s+(\S+)", text)
    assert match and match.group(1) == "3"
    _assert_group_facts(text, kept["s"])
    page_text = re.sub(r"<[^>]+>", " ", result._repr_html_())
    match = re.search(r"Rows dropped[^:]*:\s+(\S+)", page_text)
    assert match and match.group(1) == "3"


def test_statsmodels_summary_arguments_and_tables():
    """``summary(yname, xname_fe, xname_re, title)`` as statsmodels': the same tables."""
    result, sm = _pair("slope", True)
    kwargs = dict(yname="response", xname_fe=["a", "b", "c"], xname_re=["v1", "c12", "v2"],
                  title="My model")
    got, expected = result.summary(**kwargs), sm.summary(**kwargs)
    assert list(got.tables[1].index) == list(expected.tables[1].index)
    assert "My model" in str(got) and "My model" in str(expected)
    assert _fact(str(got), "Dependent Variable:") == "response"
    assert got.tables[0].iloc[0, 3] == expected.tables[0].iloc[0, 3] == "response"
    with pytest.raises(dlmm.InputError, match="xname_fe has 2 names; expected 3"):
        result.summary(xname_fe=["a", "b"])
