"""Every results feature on each of issue 22's five shapes, against lme4 1.1-31: what the
other tests of fits of terms leave out.

The five shapes, by their reference case (``tests/reference/nested``): children in
schools with slopes at both levels (``egsingle``), ``(x | g) + (x | g:h)``
(``sim_slopes2``), two correlated blocks on one factor (``sim_blocks``), ``(x || g)``
beside ``(1 | g:h)`` (``sim_diag``: statsmodels' shape, so ``dlmm.lmer`` fits it on the
grouped engine as a ``MixedLMResults``) and three levels (``sim_three``). Where each
feature is checked:

================  =========  ===========  ==========  ========  =========
feature           egsingle   sim_slopes2  sim_blocks  sim_diag  sim_three
================  =========  ===========  ==========  ========  =========
fit, θ, SEs       model      model        model       here      model
VarCorr           model      model        model       here      model
summary           here       here         here        here      here
Satterthwaite     model      model        model       here      model
profile CIs       here       profile      here        here      here
anova             compare    compare      here        here      compare
predict with RE   predict    predict      predict     here      predict
simulate/refit    here       simulate     simulate    here      simulate
save/load         saved      saved        saved       here      saved
CLI outputs       cli        cli          cli         cli       cli
================  =========  ===========  ==========  ========  =========

(model: ``tests/test_terms_model.py``; compare, predict, profile, saved, simulate:
``tests/results/test_terms_<that>.py``; cli: ``tests/cli/test_lme4_terms.py``.) The
numbers lme4_nested_features.R did not make come from ``lme4_nested_more.R``
(``lme4_nested_more.json``: sim_diag's predictions, sim_blocks' and sim_diag's anova,
the profiles of egsingle, sim_blocks, sim_diag and sim_three)."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import dlmm
from dlmm.results.compare import RefitWarning
from dlmm.results.terms_results import TermsResults

REFERENCE = Path(__file__).resolve().parents[1] / "reference" / "nested"
CASES = json.loads((REFERENCE / "lme4_nested.json").read_text())["cases"]
MORE = json.loads((REFERENCE / "lme4_nested_more.json").read_text())
SHAPES = ["egsingle_reml", "sim_slopes2_reml", "sim_blocks_reml", "sim_diag_reml",
          "sim_three_reml"]


def _data(key: str) -> pd.DataFrame:
    return pd.read_csv(REFERENCE / "data" / CASES[key]["data"])


@pytest.fixture(scope="module")
def fits():
    """The REML fit of each shape, made once for the module (on first use)."""
    made: dict = {}

    def fit(key: str):
        if key not in made:
            made[key] = dlmm.lmer(CASES[key]["lmer"], _data(key), REML=CASES[key]["reml"])
        return made[key]

    return fit


def _name(lme4_name: str) -> str:
    return "Intercept" if lme4_name == "(Intercept)" else lme4_name


# -- summary -----------------------------------------------------------------------


def _section(text: str, start: str, end: str) -> list[str]:
    return text.split(start, 1)[1].split(end, 1)[0].strip("\n").splitlines()


@pytest.mark.parametrize("key", SHAPES)
def test_summary_prints_lme4s_numbers(fits, key):
    """The printed summary holds lme4's log-likelihood, VarCorr (variances to their
    printed digits, correlations to 3 decimals), groups and fixed-effects table."""
    ref, fit = CASES[key], fits(key)
    text = str(fit.summary())
    variances = [r for r in ref["varcorr"] if not r["var2"]]
    if not isinstance(fit, TermsResults):  # statsmodels' layout + lme4's VarCorr
        assert f"Log-Likelihood:     {ref['llf']:.4f}" in text
        rows = _section(text, "Random effects (lme4's VarCorr):\n", "\n\n")[1:]
        assert len(rows) == len(variances)
        for line, theirs in zip(rows, variances):
            words = line.split()
            assert words[:-2] == [theirs["grp"], theirs["var1"]][:len(words) - 2]
            np.testing.assert_allclose(float(words[-2]), theirs["vcov"], rtol=1e-3)
        for name, value in ref["fe_params"].items():  # printed to 3 decimals
            line = re.search(rf"^{_name(name)} +(\S+) +(\S+) ", text, re.M)
            np.testing.assert_allclose([float(line[1]), float(line[2])],
                                       [value, ref["bse_fe"][name]], atol=6e-4)
        return
    assert f"logLik {ref['llf']:.4f}" in text
    rows = _section(text, "Std.Dev.\n", "\n   corr(" if "corr(" in text else "\nNumber")
    assert len(rows) == len(variances)
    for line, theirs in zip(rows, variances):
        words = line.split()
        if theirs["grp"] == "Residual":
            assert words[0] == "Residual"
        else:  # lme4's group (g, g.1 for a second block) and column
            assert words[:2] == [theirs["grp"].replace("g.h", "g:h"), theirs["var1"]]
        np.testing.assert_allclose([float(words[-2]), float(words[-1])],
                                   [theirs["vcov"], theirs["sdcor"]], rtol=2e-4)
    correlations = re.findall(r"corr\((\S+): (\S+), (\S+)\) = (\S+)", text)
    theirs = [r for r in ref["varcorr"] if r["var2"]]
    assert len(correlations) == len(theirs)
    for (grp, v1, v2, value), row in zip(correlations, theirs):
        assert (grp, v1, v2) == (row["grp"], row["var1"], row["var2"])
        assert float(value) == pytest.approx(row["sdcor"], abs=6e-4)
    groups = "; ".join(f"{k}, {v}" for k, v in sorted(ref["ngroups"].items(),
                                                     key=lambda kv: kv[1]))
    assert f"Number of obs: {ref['nobs']}, groups: {groups}" in text
    table = {line.split()[0]: [float(v) for v in line.split()[1:]]
             for line in _section(text, "t value\n", "\n\n")}
    for name, value in ref["fe_params"].items():
        est, se, t = table[_name(name)]
        np.testing.assert_allclose(est, value, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose([se, t], [ref["bse_fe"][name], ref["t_values"][name]],
                                   rtol=1e-3)


# -- sim_diag on the grouped engine: VarCorr, Satterthwaite --------------------------


def test_varcorr_and_satterthwaite_of_the_diagonal_shape(fits):
    """``(x || g) + (1 | g:h)``: lme4's ``as.data.frame(VarCorr(fit))`` and lmerTest's
    Satterthwaite df."""
    key = "sim_diag_reml"
    ref, fit = CASES[key], fits(key)
    np.testing.assert_allclose(fit.llf, ref["llf"], rtol=1e-8)
    for name, value in ref["fe_params"].items():
        np.testing.assert_allclose(fit.fe_params[_name(name)], value, rtol=1e-6)
        np.testing.assert_allclose(fit.bse_fe[_name(name)], ref["bse_fe"][name], rtol=1e-3)
    ours = fit.varcorr(long=True)
    assert ours[["grp", "var1"]].values.tolist() == [[r["grp"], r["var1"]]
                                                    for r in ref["varcorr"]]
    np.testing.assert_allclose(ours["vcov"], [r["vcov"] for r in ref["varcorr"]], rtol=1e-4)
    table = fit.satterthwaite()
    for name, df in ref["satterthwaite_df"].items():
        np.testing.assert_allclose(table.loc[_name(name), "df"], df, rtol=1e-3)


# -- profile intervals ---------------------------------------------------------------

#: The parameters profiled per shape (a standard deviation at each level, a
#: correlation, sigma, a fixed effect): lme4's names; sim_diag (the grouped engine's
#: profile) all of them, by dlmm's names.
PROFILED = {
    "egsingle_reml": ["sd_(Intercept)|schoolid", "cor_year.(Intercept)|childid",
                      "sd_year|childid", "sigma", "year"],
    "sim_blocks_reml": ["sd_(Intercept)|g", "cor_w.z|g", "sd_w|g", "sigma", "z"],
    "sim_three_reml": ["sd_(Intercept)|a:b:c", "cor_x.(Intercept)|a:b", "sd_(Intercept)|a",
                       "sigma", "x"],
}
SIM_DIAG_NAMES = {"g:h SD": "sd_(Intercept)|g:h", "x|g SD": "sd_x|g",
                  "g SD": "sd_(Intercept)|g", "Residual SD": "sigma",
                  "Intercept": "(Intercept)", "x": "x"}


def _profile_reference(key: str) -> pd.DataFrame:
    """lme4's intervals on its default grid, and the precision of each end: twice its
    distance to the intervals of a grid 4 times finer, plus 1e-5 relative."""
    ref = MORE["profile"][key]
    frame = pd.DataFrame({k: ref[k] for k in ("lower", "upper", "fine_lower",
                                             "fine_upper")}, index=ref["parameter"])
    for end in ("lower", "upper"):
        frame[f"tol_{end}"] = (2 * (frame[end] - frame[f"fine_{end}"]).abs()
                               + 1e-5 * frame[end].abs() + 1e-6)
    return frame


@pytest.mark.parametrize("key", [*PROFILED, "sim_diag_reml"])
def test_profile_intervals_are_lme4s(fits, key):
    fit = fits(key)
    ref = _profile_reference(key)
    if key in PROFILED:
        table = fit.profile_conf_int(parameters=PROFILED[key])
        assert sorted(table.index) == sorted(PROFILED[key])  # (in lme4's order)
        names = list(table.index)
    else:
        table = fit.profile_conf_int()
        table.index = [SIM_DIAG_NAMES[n] for n in table.index]
        names = list(table.index)
        assert sorted(names) == sorted(ref.index)
    theirs = ref.loc[[_lme4(n) for n in names]]
    for end in ("lower", "upper"):
        assert np.all(np.abs(table[end].to_numpy() - theirs[end].to_numpy())
                      <= theirs[f"tol_{end}"].to_numpy()), (table, theirs)
    assert fit.reml and np.isclose(fit.llf, CASES[key]["llf"], rtol=1e-8)  # left as it was


def _lme4(name: str) -> str:
    return "(Intercept)" if name == "Intercept" else name


# -- anova ---------------------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(MORE["anova"]))
def test_anova_is_lme4s(fits, key):
    """Two blocks against one block and a component, ``(x || g)`` against ``(x || g) +
    (1 | g:h)``: lme4's table (both REML fits refitted by ML)."""
    ref = MORE["anova"][key]
    full = fits(key)
    small = dlmm.lmer(ref["restricted"], _data(key), REML=ref["reml"])
    np.testing.assert_allclose([small.llf, full.llf], [ref["llf_given"]["restricted"],
                                                      ref["llf_given"]["full"]], rtol=1e-8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = full.anova(small, names=["full", "restricted"])
    assert any(issubclass(w.category, RefitWarning) for w in caught)
    assert list(table.index) == ["restricted", "full"]
    assert table["npar"].tolist() == ref["npar"]
    for column in ("AIC", "BIC", "logLik", "deviance"):
        np.testing.assert_allclose(table[column].to_numpy(), ref[column], rtol=1e-8)
    np.testing.assert_allclose(table["Chisq"].iloc[1], ref["Chisq"][1], rtol=1e-5)
    assert table["Df"].iloc[1] == ref["Df"][1]
    np.testing.assert_allclose(table["Pr(>Chisq)"].iloc[1], ref["p_value"][1], rtol=1e-4,
                               atol=1e-300)


# -- sim_diag: predict, save/load ----------------------------------------------------


#: sim_diag's new rows: its last row has a missing ``h``, for which lme4 leaves out the
#: ``g:h`` effect (and so does dlmm: the row is compared with the others).
DIAG_ROWS = list(range(len(MORE["predictions"]["sim_diag_reml"]["newdata"])))


def test_predict_of_the_diagonal_shape_is_lme4s(fits):
    """lme4's ``predict(fit)``, ``predict(fit, newdata, allow.new.levels = TRUE)`` (new
    ``h`` in a known ``g``, a new ``g``) and ``re.form = NA``."""
    key = "sim_diag_reml"
    ref, fit = MORE["predictions"][key], fits(key)
    got = np.asarray(fit.predict(random_effects=True))
    np.testing.assert_allclose(got[:20], ref["fitted_first"], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got.sum(), ref["fitted_sum"], rtol=1e-8)
    assert sum(row["h"] is None for row in ref["newdata"]) == 1
    new = pd.DataFrame(ref["newdata"])
    np.testing.assert_allclose(np.asarray(fit.predict(new, random_effects=True))[DIAG_ROWS],
                               np.asarray(ref["predict_new"])[DIAG_ROWS], rtol=1e-6,
                               atol=1e-6)
    np.testing.assert_allclose(np.asarray(fit.predict(new))[DIAG_ROWS],
                               np.asarray(ref["predict_fixed"])[DIAG_ROWS], rtol=1e-7,
                               atol=1e-7)


def test_save_and_load_of_the_diagonal_shape(fits, tmp_path):
    key = "sim_diag_reml"
    fit = fits(key)
    fit.save(tmp_path / "out")
    back = dlmm.load_result(tmp_path / "out")
    pd.testing.assert_frame_equal(back.varcorr(long=True), fit.varcorr(long=True))
    np.testing.assert_allclose(back.varcorr(long=True)["vcov"],
                               [r["vcov"] for r in CASES[key]["varcorr"]], rtol=1e-4)
    new = pd.DataFrame(MORE["predictions"][key]["newdata"])
    np.testing.assert_allclose(np.asarray(back.predict(new, random_effects=True))[DIAG_ROWS],
                               np.asarray(MORE["predictions"][key]["predict_new"])[DIAG_ROWS],
                               rtol=1e-6, atol=1e-6)


# -- refit ---------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["egsingle_reml", "sim_slopes2_reml", "sim_blocks_reml",
                                 "sim_diag_reml"])
def test_refit_of_the_response_from_a_fit_of_noise_is_lme4s(key):
    """A fit of noise in the response's place, refitted to the response (a column of
    the data): lme4's fit."""
    ref = CASES[key]
    data = _data(key)
    response = ref["lmer"].split("~")[0].strip()
    noise = data.assign(**{response: np.random.default_rng(3).standard_normal(len(data)),
                           "observed": data[response]})
    other = dlmm.lmer(ref["lmer"], noise, REML=ref["reml"])
    again = other.refit("observed")
    np.testing.assert_allclose(again.llf, ref["llf"], rtol=1e-8)
    for name, value in ref["fe_params"].items():
        np.testing.assert_allclose(again.fe_params[_name(name)], value, rtol=1e-6)
    assert again.converged and again.reml == ref["reml"]
