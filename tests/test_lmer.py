"""``dlmm.lmer``: lme4's spelling fits lme4's model, checked against lme4's own fits.

``tests/reference/lmer_cases.json`` (made by ``tests/reference/lmer_reference.R``)
holds lme4 1.1-31's fits of each lme4 formula below, with its ``VarCorr`` table;
``tests/reference/cases.json`` the older cases, whose lme4 formula is in
``source``. Tolerances as the README of ``tests/reference`` says: llf 1e-6
relative (or higher than lme4's: a better optimum), variances 1e-4 relative,
fixed effects 1e-6, conditional modes 1e-3.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

import dlmm
from dlmm.exceptions import InputError
from tests.conftest import REFERENCE, reference_data

LMER_CASES = json.loads((REFERENCE / "lmer_cases.json").read_text())
#: insteval_small's id columns are labels, as lme4 read them
_DTYPES = {"insteval_small.csv": {"s": str, "d": str, "dept": str}}


def _data(name: str) -> pd.DataFrame:
    return pd.read_csv(REFERENCE / "data" / name, dtype=_DTYPES.get(name))


@pytest.fixture(scope="module")
def fits() -> dict:
    return {name: dlmm.lmer(case["lmer"], _data(case["data"]), REML=case["reml"])
            for name, case in LMER_CASES.items()}


def _check_llf(result, expected: float) -> None:
    # at least lme4's optimum: a higher llf is a better fit, within 1e-6 of lme4's
    assert result.llf >= expected - 1e-6 * abs(expected)
    assert result.llf == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("name", sorted(LMER_CASES))
def test_fit_matches_lme4(fits, name):
    case, result = LMER_CASES[name], fits[name]
    assert result.converged and result.method == ("REML" if case["reml"] else "ML")
    assert result.nobs == case["nobs"]
    _check_llf(result, case["llf"])
    assert result.scale == pytest.approx(case["scale"], rel=1e-4)
    fe = {("Intercept" if k == "(Intercept)" else k): v for k, v in case["fe_params"].items()}
    assert result.fe_params.to_dict() == pytest.approx(fe, rel=1e-6)


@pytest.mark.parametrize("name", sorted(LMER_CASES))
def test_varcorr_is_lme4s_table(fits, name):
    # lme4's rows in lme4's order, with its names ("Subject.1" for a factor's second term)
    expected = [(row["grp"], row["var1"] or "", row["var2"] or "", row["vcov"])
                for row in LMER_CASES[name]["varcorr"]]
    table = fits[name].varcorr(long=True)
    got = list(table[["grp", "var1", "var2", "vcov"]].itertuples(index=False, name=None))
    assert [g[:3] for g in got] == [e[:3] for e in expected]
    for g, e in zip(got, expected):
        assert g[3] == pytest.approx(e[3], rel=1e-4), e
    resid = table.set_index("grp").loc["Residual"]
    assert resid["sdcor"] == pytest.approx(np.sqrt(resid["vcov"]), rel=1e-12)
    wide = fits[name].varcorr()
    assert list(zip(wide["Groups"], wide["Name"])) == [(e[0], e[1]) for e in expected]


def test_an_uncorrelated_slope_is_labelled_as_lme4_prints_it(fits):
    # lme4 1.1-31, print(VarCorr(lmer(Reaction ~ Days + (Days || Subject), sleepstudy))):
    #  Groups    Name        Std.Dev.
    #  Subject   (Intercept) 25.051
    #  Subject.1 Days         5.988
    #  Residual              25.565
    result = fits["sleepstudy_uncorrelated_reml"]
    table = result.varcorr()
    assert table["Groups"].tolist() == ["Subject", "Subject.1", "Residual"]
    assert table["Name"].tolist() == ["(Intercept)", "Days", ""]
    np.testing.assert_allclose(table["Std.Dev."], [25.051, 5.988, 25.565], atol=6e-4)
    lines = str(result.summary()).split("Random effects (lme4's VarCorr):\n")[1].splitlines()
    assert [line.split()[:2] for line in lines[1:4]] == [
        ["Subject", "(Intercept)"], ["Subject.1", "Days"], ["Residual", "653.6"]]
    html = result.summary()._repr_html_()
    assert "<td>Subject.1</td>" in html and "Days:Subject" not in html
    assert result.varcorr(long=True)["grp"].tolist() == ["Subject", "Subject.1", "Residual"]


@pytest.mark.parametrize("name, vc_names", [
    ("insteval_small_reml", ["d", "dept:service", "s"]),
    ("insteval_small_nested_crossed_reml", ["d", "s", "service:s"]),  # (1 | s/service)
])
def test_crossed_fit_takes_the_crossed_engine_with_lme4s_modes(fits, name, vc_names):
    result = fits[name]
    assert result.engine == "crossed"
    assert result.vc_names == vc_names
    (modes,) = result.random_effects.values()
    pattern = re.compile(r"^(.+)\[C\((\w+)\)\[(.+)\]\]$")
    got = {}
    for label, value in modes.items():
        factor, _, level = pattern.match(label).groups()
        got[(factor, level)] = value
    lme4 = LMER_CASES[name]["random_effects"]
    expected = {(f, level): v for f in lme4 for level, v in lme4[f]["(Intercept)"].items()}
    assert set(got) == set(expected)  # every level, with lme4's labels ("15:0", "0:1002")
    diff = max(abs(got[k] - expected[k]) for k in expected)
    assert diff < 1e-3


def test_nested_and_uncorrelated_fits_name_their_effects_as_lme4(fits):
    pastes = fits["pastes_slash_reml"]
    assert pastes.engine == "grouped" and pastes.vc_names == ["cask:batch"]
    lme4 = LMER_CASES["pastes_slash_reml"]["random_effects"]
    for batch, effects in pastes.random_effects.items():
        assert effects["batch"] == pytest.approx(lme4["batch"]["(Intercept)"][batch], abs=1e-3)
        for cask in "abc":
            assert effects[f"cask:batch[C(cask)[{cask}]]"] == pytest.approx(
                lme4["cask:batch"]["(Intercept)"][f"{cask}:{batch}"], abs=1e-3)
    sleep = fits["sleepstudy_uncorrelated_reml"]
    assert sleep.vc_names == ["Days|Subject"] and sleep.cov_re.shape == (1, 1)
    lme4 = LMER_CASES["sleepstudy_uncorrelated_reml"]["random_effects"]["Subject"]
    for subject, effects in sleep.random_effects.items():
        assert effects["Subject"] == pytest.approx(lme4["(Intercept)"][str(subject)], abs=1e-3)
        assert effects["Days|Subject[Days]"] == pytest.approx(lme4["Days"][str(subject)],
                                                              abs=1e-3)


#: the older reference cases: their lme4 formula, and dlmm's name for each lme4 group
OLD_NAMES = {"cask": "cask:batch", "plate": "plate", "sample": "sample"}


@pytest.mark.parametrize("name", ["sleepstudy_reml", "sleepstudy_ml",
                                  "sleepstudy_intercept_reml", "dyestuff_ml",
                                  "pastes_nested_ml", "penicillin_crossed_reml"])
def test_the_older_reference_cases_in_lme4s_spelling(reference_cases, name):
    case = reference_cases[name]
    formula = case["source"].split("lmer formula: ")[1]
    expected = case["expected"]
    result = dlmm.lmer(formula, reference_data(case["model"]["data"]),
                       REML=case["model"]["reml"])
    _check_llf(result, expected["llf"])
    assert result.scale == pytest.approx(expected["scale"], rel=1e-4)
    np.testing.assert_allclose(result.cov_re.to_numpy(),
                               np.array(expected["cov_re"]).reshape(result.cov_re.shape),
                               rtol=1e-4)
    vcomp = dict(zip(result.vc_names, result.vcomp))
    assert vcomp == pytest.approx({OLD_NAMES[k]: v for k, v in expected["vcomp"].items()},
                                  rel=1e-4)


def test_fit_false_gives_the_model_and_options_reach_model_and_fit():
    data = reference_data("sleepstudy.csv")
    model = dlmm.lmer("Reaction ~ Days + (Days || Subject)", data, fit=False)
    assert isinstance(model, dlmm.MixedLM)
    assert (model.spec.groups, model.spec.re_formula) == ("Subject", "1")
    assert model.spec.vc_formula == {"Days|Subject": "0 + Days"}
    ml = model.fit(reml=False)
    _check_llf(ml, LMER_CASES["sleepstudy_uncorrelated_ml"]["llf"])
    # model options (missing) and fit options (method) go where they belong
    holed = data.astype({"Reaction": float})
    holed.loc[3, "Reaction"] = np.nan
    with pytest.warns(dlmm.MissingDataWarning):
        result = dlmm.lmer("Reaction ~ Days + (Days | Subject)", holed, missing="drop",
                           method="lbfgs")
    assert result.nobs == 179 and holed["Reaction"].isna().sum() == 1


def test_a_categorical_term_under_double_bar_is_one_block_as_in_lme4():
    data = reference_data("sleepstudy.csv").assign(
        half=lambda f: np.where(f["Days"] < 5, "early", "late"))
    before = data.copy()
    model = dlmm.lmer("Reaction ~ Days + (half || Subject)", data, fit=False)
    # lme4: (1 | Subject) + (0 + half | Subject), the latter correlated across levels
    assert model.spec.re_formula == "0 + half" and model.spec.vc_formula == {"Subject": "1"}
    assert model.exog_re_names == ["half[early]", "half[late]"]
    pd.testing.assert_frame_equal(data, before)


def test_interaction_columns_are_added_to_a_copy():
    data = _data("insteval_small.csv")
    before = data.copy()
    model = dlmm.lmer("y ~ service + (1 | s) + (1 | dept:service)", data, fit=False)
    pd.testing.assert_frame_equal(data, before)
    added = model.data.frame["dept_service"]
    assert added.iloc[0] == f"{data['dept'].iloc[0]}:{data['service'].iloc[0]}"
    holed = data.copy()
    holed.loc[0, "dept"] = None
    assert dlmm.lmer("y ~ service + (1 | s) + (1 | dept:service)", holed, fit=False,
                     missing="drop").data.frame["dept_service"].isna().tolist()[:2] == [True, False]


def test_parquet_input_with_an_interaction_factor(tmp_path, dask_client):
    # the interaction column is added to the lazy frame, on the workers
    data = _data("insteval_small.csv")
    path = tmp_path / "insteval.parquet"
    data.to_parquet(path)
    formula = "y ~ service + (1 | s) + (1 | dept:service)"
    result = dlmm.lmer(formula, str(path), client=dask_client)
    local = dlmm.lmer(formula, data)
    assert result.engine == local.engine == "crossed"
    assert result.llf == pytest.approx(local.llf, rel=1e-10)
    np.testing.assert_allclose(result.vcomp, local.vcomp, rtol=1e-6)


@pytest.mark.parametrize("kwargs, words", [
    ({"reml": False}, "REML=True/False, not reml="),
    ({"REML": "yes"}, "REML must be True or False"),
])
def test_bad_options(kwargs, words):
    with pytest.raises(InputError, match=re.escape(words)):
        dlmm.lmer("Reaction ~ Days + (1 | Subject)", reference_data("sleepstudy.csv"),
                  **kwargs)


def test_a_missing_grouping_column_is_refused_in_one_line_naming_it():
    """(A slope on a factor crossed with another, once refused here, is fitted on the
    crossed engine since issue 23: tests/test_crossed_terms_model.py.)"""
    data = _data("insteval_small.csv")
    with pytest.raises(InputError, match="grouping column 'lecturer' is not in the data"):
        dlmm.lmer("y ~ service + (1 | s) + (1 | lecturer)", data)


# -- grouping columns by any name, offsets, R's arithmetic (issue 21 item 11) ----------

#: a column name each: another alphabet, another script, one with a space (backticks)
ODD_NAMES = [("élève", "élève"), ("グループ", "グループ"), ("my g", "`my g`"), ("class", "class")]


@pytest.mark.parametrize("column, written", ODD_NAMES)
def test_a_grouping_column_of_any_name_fits_as_mixedlm_and_statsmodels(column, written):
    import statsmodels.formula.api as smf

    data = reference_data("sleepstudy.csv").rename(columns={"Subject": column})
    result = dlmm.lmer(f"Reaction ~ Days + (Days | {written})", data)
    same = dlmm.mixedlm("Reaction ~ Days", data, groups=column, re_formula="~Days").fit()
    sm = smf.mixedlm("Reaction ~ Days", data, groups=data[column], re_formula="~Days").fit(
        reml=True, method=["lbfgs"])
    assert result.converged and result.group_name == column
    for other in (same, sm):
        assert result.llf == pytest.approx(other.llf, rel=1e-8)
        np.testing.assert_allclose(result.fe_params.to_numpy(), other.fe_params.to_numpy(),
                                   rtol=1e-5)
        np.testing.assert_allclose(result.cov_re.to_numpy(), np.asarray(other.cov_re),
                                   rtol=1e-4)
    assert list(result.varcorr()["Groups"]) == [column, column, "Residual"]


@pytest.mark.parametrize("column, written", ODD_NAMES)
def test_crossed_and_nested_factors_of_any_name_match_lme4(column, written):
    # lme4's own fits of the same models, with the columns under their usual names
    penicillin = reference_data("penicillin.csv").rename(columns={"plate": column})
    crossed = dlmm.lmer(f"diameter ~ 1 + (1 | {written}) + (1 | sample)", penicillin,
                        REML=False)
    lme4 = LMER_CASES["penicillin_ml"]
    _check_llf(crossed, lme4["llf"])
    assert crossed.engine == "crossed"
    assert dict(zip(crossed.vc_names, crossed.vcomp)) == pytest.approx(
        {column: _vcov(lme4, "plate"), "sample": _vcov(lme4, "sample")}, rel=1e-4)
    pastes = reference_data("pastes.csv").rename(columns={"cask": column})
    nested = dlmm.lmer(f"strength ~ 1 + (1 | batch/{written})", pastes)
    lme4 = LMER_CASES["pastes_slash_reml"]
    _check_llf(nested, lme4["llf"])
    assert dict(zip(nested.vc_names, nested.vcomp)) == pytest.approx(
        {f"{column}:batch": _vcov(lme4, "cask:batch")}, rel=1e-4)
    assert nested.cov_re.iloc[0, 0] == pytest.approx(_vcov(lme4, "batch"), rel=1e-4)


def _vcov(case: dict, group: str) -> float:
    return next(row["vcov"] for row in case["varcorr"] if row["grp"] == group)


@pytest.mark.parametrize("formula, kwargs", [
    ("Reaction ~ Days + offset(Days) + (1 | Subject)", {}),
    ("Reaction ~ Days + (1 + offset(Days) | Subject)", {}),
    ("Reaction ~ Days + (1 | Subject)", {"offset": "Days"}),
])
def test_an_offset_is_refused_in_one_line(formula, kwargs):
    with pytest.raises(InputError) as info:
        dlmm.lmer(formula, reference_data("sleepstudy.csv"), **kwargs)
    message = str(info.value)
    assert "\n" not in message and "offset" in message and "not supported" in message
    assert "response minus the offset" in message


def test_r_powers_inside_a_call_are_powers_as_in_lme4():
    # R's I(Days^2) is Days squared (Python's ^ is exclusive or): checked against
    # statsmodels given the squared column itself
    import statsmodels.formula.api as smf

    data = reference_data("sleepstudy.csv")
    result = dlmm.lmer("Reaction ~ Days + I(Days^2) + (1 | Subject)", data)
    squared = data.assign(Days2=data["Days"] ** 2)
    sm = smf.mixedlm("Reaction ~ Days + Days2", squared, groups=squared["Subject"]).fit(
        reml=True)
    assert list(result.fe_params.index) == ["Intercept", "Days", "I(Days ** 2)"]
    np.testing.assert_allclose(result.fe_params.to_numpy(), sm.fe_params.to_numpy(),
                               rtol=1e-5)
    assert result.llf == pytest.approx(sm.llf, rel=1e-8)
