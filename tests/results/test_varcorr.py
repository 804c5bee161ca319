"""VarCorr and coef against lme4's (tests/reference/lme4_features.R)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import dlmm
from tests.results.lme4_reference import (
    FEATURES,
    FIXED_NAMES,
    fit_chickweight,
    fit_pastes,
    fit_penicillin,
    fit_sleepstudy,
    sleepstudy,
)


def lme4_table(rows: list[dict]) -> dict:
    """(Groups, Name) -> Std.Dev., and (Groups, Name1, Name2) -> Corr."""
    out = {}
    for row in rows:
        if row["var2"]:
            out[(row["grp"], row["var1"], row["var2"])] = row["sdcor"]
        else:
            out[(row["grp"], row["var1"])] = row["sdcor"]
    return out


def ours(table: pd.DataFrame) -> dict:
    out = {}
    for _, row in table.iterrows():
        out[(row["Groups"], row["Name"])] = row["Std.Dev."]
        corr_cols = [c for c in table.columns if c.startswith("Corr")]
        for j, col in enumerate(corr_cols):
            if pd.notna(row[col]):
                out[(row["Groups"], table["Name"].iloc[j], row["Name"])] = row[col]
    return out


@pytest.mark.parametrize("fit, key, rel", [
    (lambda: fit_sleepstudy(True), ("sleepstudy", "varcorr"), 1e-5),
    (lambda: fit_sleepstudy(False), ("sleepstudy", "varcorr_ml"), 1e-5),
    (fit_chickweight, ("chickweight", "varcorr"), 1e-4),
    (fit_pastes, ("pastes", "varcorr"), 1e-5),
    (fit_penicillin, ("penicillin", "varcorr"), 1e-5),
], ids=["sleepstudy", "sleepstudy-ml", "chickweight", "pastes", "penicillin"])
def test_varcorr_matches_lme4(fit, key, rel):
    result = fit()
    table = result.varcorr()
    assert list(table.columns[:4]) == ["Groups", "Name", "Variance", "Std.Dev."]
    expected = lme4_table(FEATURES[key[0]][key[1]])
    got = ours(table)
    if key[0] == "pastes":  # lme4's (1 | sample), sample = batch:cask
        expected[("cask:batch", "(Intercept)")] = expected.pop(("sample", "(Intercept)"))
    assert set(got) == set(expected)
    for k, v in expected.items():
        assert got[k] == pytest.approx(v, rel=rel, abs=1e-6), k
    assert table["Variance"].iloc[-1] == pytest.approx(result.scale, rel=1e-12)


def test_varcorr_text_and_summary_show_the_table():
    result = fit_sleepstudy()
    text = str(result.summary())
    assert "Random effects (lme4's VarCorr):" in text
    line = next(ln for ln in text.splitlines() if "(Intercept)" in ln)
    assert line.split()[:2] == ["Subject", "(Intercept)"]
    assert float(line.split()[-1]) == pytest.approx(24.74, abs=0.01)
    html = result.summary()._repr_html_()
    assert "<h5>Random effects (lme4's VarCorr)</h5>" in html and "Std.Dev." in html
    assert "Satterthwaite" not in text  # only when asked for


def test_three_correlated_effects_get_one_corr_column_each():
    data = sleepstudy().assign(Days2=lambda d: (d["Days"] - 4.5) ** 2 / 10)
    result = dlmm.mixedlm("Reaction ~ Days + Days2", data, groups="Subject",
                          re_formula="~Days + Days2").fit()
    table = result.varcorr()
    assert list(table.columns[4:]) == ["Corr", "Corr.2"]
    cov = result.cov_re.to_numpy()
    expected = cov[2, 1] / np.sqrt(cov[1, 1] * cov[2, 2])
    assert table["Corr.2"].iloc[2] == pytest.approx(expected, rel=1e-12)
    assert np.isnan(table["Corr.2"].iloc[1])


@pytest.mark.parametrize("fit, case", [(fit_sleepstudy, "sleepstudy"),
                                       (fit_chickweight, "chickweight")])
def test_coef_matches_lme4(fit, case):
    result = fit()
    coef = result.coef()
    expected = pd.DataFrame(FEATURES[case]["coef"]).set_index("level")
    expected = expected.rename(columns=FIXED_NAMES)
    assert list(coef.columns) == result.exog_names
    coef.index = coef.index.astype(str)
    assert set(coef.index) == set(expected.index)
    got = coef.loc[expected.index, expected.columns]
    np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), rtol=2e-5, atol=1e-4)


def test_coef_needs_standard_random_effects():
    with pytest.raises(dlmm.InputError, match="coef\\(\\) needs standard random effects"):
        fit_penicillin().coef()


def test_varcorr_of_a_loaded_result(tmp_path):
    result = fit_pastes()
    result.save(tmp_path / "fit")
    loaded = dlmm.load_result(tmp_path / "fit")
    pd.testing.assert_frame_equal(loaded.varcorr(), result.varcorr())
    assert "cask:batch" in str(loaded.summary())


@pytest.mark.parametrize("factors, expected", [
    (["Subject", "Subject"], ["Subject", "Subject.1"]),        # lme4's (Days || Subject)
    (["plate", "sample"], ["plate", "sample"]),                # unique: as they are
    (["cask:batch", "batch", "batch"], ["cask.batch", "batch", "batch.1"]),
    # as R's documented examples of ?make.unique and ?make.names
    (["a", "a", "a.2", "a"], ["a", "a.1", "a.2", "a.3"]),
    (["a and b", "a-and-b", "a and b"], ["a.and.b", "a.and.b.1", "a.and.b.2"]),
    (["if", "if", "1g", "élève"], ["if.", "if..1", "X1g", "élève"]),
])
def test_lme4_group_names_are_rs_make_names(factors, expected):
    from dlmm.spec.terms import lme4_group_names

    assert lme4_group_names(factors) == expected


def test_a_slope_component_is_lme4s_uncorrelated_slope():
    # statsmodels' spelling of lme4's (Days || Subject): the labels lme4 prints for it,
    # and the profile plot's axis for the slope's sd (lme4's term, not made unique)
    from dlmm.results.profile_plot import profile_labels

    result = dlmm.mixedlm("Reaction ~ Days", sleepstudy(), groups="Subject",
                          re_formula="1", vc_formula={"slope": "0 + Days"}).fit()
    table = result.varcorr()
    assert list(zip(table["Groups"], table["Name"])) == [
        ("Subject", "(Intercept)"), ("Subject.1", "Days"), ("Residual", "")]
    assert profile_labels(result, [("slope SD", "vc_sd", (0,))]) == [
        (r"$\sigma_{1}$", "sd Days | Subject")]
