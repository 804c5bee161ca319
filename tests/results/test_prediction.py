"""Predictions on new data, fitted values and residuals, pandas and Dask.

The fixed part is recomputed here by hand (the design matrix built column by
column from the data and the coefficient names), the random part from the
group's predicted effects; statsmodels' random effects give an independent
check of the known-group predictions. Dask results are compared with the pandas
ones (the only place where dlmm is compared with itself).
"""

from __future__ import annotations

import functools
import warnings

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from formulaic.errors import FormulaicError
from statsmodels.tools.sm_exceptions import ConvergenceWarning

import dlmm
from dlmm.exceptions import InputError
from tests.simulate import grouped_data

FORMULA = "y ~ x1 + x2 + C(k)"
RE_FORMULA = "~x1"
VC_FORMULA = {"c": "0 + C(c)"}
R2 = np.array([[1.0, 0.3], [0.3, 0.5]])


@functools.cache
def _train() -> pd.DataFrame:
    """20 groups of 4..9 rows: random intercept and slope, a nested component c
    (levels c0..c2, not every group has every level) and a categorical fixed
    effect k with levels p, q, r."""
    data = grouped_data(n_groups=20, per_group=(4, 9), re_cov=R2, vc_sd={"c": 0.6}, seed=31)
    rng = np.random.default_rng(7)
    data["k"] = rng.choice(["p", "q", "r"], size=len(data))
    data["y"] += 0.5 * (data["k"] == "q") - 0.3 * (data["k"] == "r")
    return data


@functools.cache
def _fit():
    return dlmm.mixedlm(FORMULA, _train(), groups="g", re_formula=RE_FORMULA,
                        vc_formula=VC_FORMULA).fit()


@functools.cache
def _sm_fit():
    model = smf.mixedlm(FORMULA, _train(), groups="g", re_formula=RE_FORMULA,
                        vc_formula=VC_FORMULA)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(gtol=1e-10)


def _group_missing_level():
    """A training group without rows of some component level, and that level."""
    data = _train()
    for g, rows in data.groupby("g"):
        absent = sorted({"c0", "c1", "c2"} - set(rows["c"]))
        if absent:
            return g, absent[0]
    raise AssertionError("every group has every level: change the seed")


def _new_data() -> pd.DataFrame:
    """New rows: known groups (one with a level it never had in training), unseen
    groups, one row with a missing covariate; no response column; k only "r" or "q"
    (so a fresh coding of k would differ from training's); a non-default index."""
    g_gap, level_gap = _group_missing_level()
    rng = np.random.default_rng(99)
    groups = [0, 1, 1, 5, g_gap, 1000, 1001, 1001, 3, 7]
    n = len(groups)
    frame = pd.DataFrame({
        "g": groups,
        "x1": rng.normal(size=n),
        "x2": rng.normal(size=n),
        "k": ["r", "r", "q", "r", "r", "q", "r", "r", "r", "q"],
        "c": ["c0", "c1", "c2", "c2", level_gap, "c0", "c1", "c2", "c0", "c1"],
    }, index=pd.RangeIndex(100, 100 + n) * 3)
    frame.loc[frame.index[8], "x2"] = np.nan  # a known group with a missing covariate
    return frame


def _fixed_part(frame: pd.DataFrame, fe_params: pd.Series) -> np.ndarray:
    """X beta with X built column by column from the coefficient names."""
    columns = {
        "Intercept": np.ones(len(frame)),
        "C(k)[T.q]": (frame["k"] == "q").to_numpy(dtype=float),
        "C(k)[T.r]": (frame["k"] == "r").to_numpy(dtype=float),
        "x1": frame["x1"].to_numpy(dtype=float),
        "x2": frame["x2"].to_numpy(dtype=float),
    }
    assert sorted(fe_params.index) == sorted(columns)
    x = np.column_stack([columns[name] for name in fe_params.index])
    return x @ fe_params.to_numpy()


def _random_part(frame: pd.DataFrame, effects: dict) -> np.ndarray:
    """b0 + b1 x1 + v_c for known groups (0 for a level the group never had), 0 else."""
    out = np.zeros(len(frame))
    for i, (g, x1, c) in enumerate(zip(frame["g"], frame["x1"], frame["c"])):
        if g in effects:
            e = effects[g]
            out[i] = e["g"] + e["x1"] * x1 + e.get(f"c[C(c)[{c}]]", 0.0)
    return out


def test_predict_new_data():
    result = _fit()
    new = _new_data()
    assert "y" not in new.columns
    pred = result.predict(new, random_effects=True)
    assert isinstance(pred, pd.Series)
    assert pred.index.equals(new.index)
    fixed = _fixed_part(new, result.fe_params)
    expected = fixed + _random_part(new, result.random_effects)
    missing = new["x2"].isna().to_numpy()
    known = new["g"].isin(list(result.random_effects)).to_numpy()
    assert missing.sum() == 1 and known.sum() == 7 and (~known).sum() == 3
    # Rows with a missing covariate predict NaN, and only those.
    np.testing.assert_array_equal(pred.isna().to_numpy(), missing)
    # Known groups: the fixed part plus Z b + W v of the group.
    ok = ~missing
    np.testing.assert_allclose(pred.to_numpy()[ok], expected[ok], rtol=1e-12, atol=1e-12)
    assert np.all(np.abs(pred.to_numpy() - fixed)[known & ok] > 1e-3)  # effects were added
    # Unseen groups: the fixed part exactly (a 1e-15 relative floor for a different
    # BLAS summation order of the same product).
    unseen = ~known
    np.testing.assert_allclose(pred.to_numpy()[unseen], fixed[unseen], rtol=1e-15, atol=0)


def test_known_groups_agree_with_statsmodels_effects():
    """The same known-group predictions from statsmodels' estimates and random effects."""
    result, sm = _fit(), _sm_fit()
    assert result.llf == pytest.approx(sm.llf, rel=1e-8)
    new = _new_data()
    known = new["g"].isin(list(sm.random_effects)).to_numpy() & new["x2"].notna().to_numpy()
    expected = _fixed_part(new, sm.fe_params) + _random_part(new, sm.random_effects)
    np.testing.assert_allclose(result.predict(new, random_effects=True).to_numpy()[known],
                               expected[known],
                               rtol=1e-5)


def test_level_of_a_group_not_seen_in_training_adds_nothing():
    result = _fit()
    g_gap, level_gap = _group_missing_level()
    assert f"c[C(c)[{level_gap}]]" not in result.random_effects[g_gap].index
    new = pd.DataFrame({"g": [g_gap], "x1": [0.4], "x2": [-0.2], "k": ["p"], "c": [level_gap]})
    e = result.random_effects[g_gap]
    expected = _fixed_part(new, result.fe_params) + e["g"] + 0.4 * e["x1"]
    np.testing.assert_allclose(result.predict(new, random_effects=True).to_numpy(), expected,
                               rtol=1e-12)


def test_random_effects_false_gives_fixed_part():
    result = _fit()
    new = _new_data()
    pred = result.predict(new, random_effects=False)
    fixed = _fixed_part(new, result.fe_params)
    np.testing.assert_array_equal(pred.isna().to_numpy(), np.isnan(fixed))
    np.testing.assert_allclose(pred.to_numpy(), fixed, rtol=1e-15, atol=0)
    # Without the group column too (no random effects are needed).
    no_groups = result.predict(new.drop(columns=["g"]), random_effects=False)
    np.testing.assert_allclose(no_groups.to_numpy(), fixed, rtol=1e-15, atol=0)


def test_response_column_is_ignored():
    result = _fit()
    new = _new_data()
    with_y = new.assign(y=np.arange(len(new), dtype=float) * 100.0)
    np.testing.assert_array_equal(result.predict(with_y, random_effects=True).to_numpy(),
                                  result.predict(new, random_effects=True).to_numpy())


def test_categorical_level_coded_as_in_training():
    """New data holding one level of k is coded with training's levels (p the base)."""
    result = _fit()
    for level in ("p", "q", "r"):
        new = pd.DataFrame({"g": [1000, 1000], "x1": [0.5, -1.0], "x2": [1.0, 2.0],
                            "k": [level, level], "c": ["c0", "c1"]})
        fe = result.fe_params
        shift = {"p": 0.0, "q": fe["C(k)[T.q]"], "r": fe["C(k)[T.r]"]}[level]
        expected = fe["Intercept"] + shift + fe["x1"] * new["x1"] + fe["x2"] * new["x2"]
        np.testing.assert_allclose(result.predict(new, random_effects=True).to_numpy(),
                                   expected.to_numpy(),
                                   rtol=1e-13)
    # And as a pandas Categorical column with training's categories.
    new = pd.DataFrame({"g": [1000], "x1": [0.5], "x2": [1.0],
                        "k": pd.Categorical(["q"], categories=["p", "q", "r"]), "c": ["c0"]})
    fe = result.fe_params
    expected = fe["Intercept"] + fe["C(k)[T.q]"] + 0.5 * fe["x1"] + fe["x2"]
    assert result.predict(new, random_effects=True).iloc[0] == pytest.approx(expected, rel=1e-13)


def test_unseen_fixed_effect_level_is_not_predicted_as_the_base_level():
    """A level of k that training never saw has no coefficient: refusing (as patsy,
    hence statsmodels, and lme4 do) or NaN are both honest; the base level's
    prediction is silently wrong."""
    result = _fit()
    new = pd.DataFrame({"g": [1000, 1000], "x1": [0.5, 0.5], "x2": [1.0, 1.0],
                        "k": ["p", "zz"], "c": ["c0", "c0"]})
    try:
        pred = result.predict(new, random_effects=True)
    except (InputError, ValueError, FormulaicError):
        return
    fe = result.fe_params
    base = fe["Intercept"] + 0.5 * fe["x1"] + fe["x2"]
    assert pred.iloc[0] == pytest.approx(base, rel=1e-13)
    assert np.isnan(pred.iloc[1]), (
        f"level 'zz' of k was never seen in training, yet predicted {pred.iloc[1]!r} "
        f"(the base level 'p' gives {base!r})")


K_CODES = {"p": 1, "q": 2, "r": 3}


@functools.cache
def _numeric_levels_fit():
    """The model of ``_fit`` on data whose factors hold integers: c 0..2, k 1..3."""
    data = _train().assign(c=lambda f: f["c"].str[1:].astype(int),
                           k=lambda f: f["k"].map(K_CODES))
    return dlmm.mixedlm(FORMULA, data, groups="g", re_formula=RE_FORMULA,
                        vc_formula=VC_FORMULA).fit()


def test_labels_and_levels_of_the_other_type_match_by_value():
    """Groups and factor levels the fit had as integers, given as text ("7", "2"):
    every effect and coefficient applies as for the integers (issue 21, item 1)."""
    result = _numeric_levels_fit()
    new = _new_data()
    as_text = new.assign(g=new["g"].astype(str), c=new["c"].str[1:],
                         k=new["k"].map({k: str(v) for k, v in K_CODES.items()}))
    pred = result.predict(as_text, random_effects=True).to_numpy()
    # By hand, in the text coding of _new_data: X beta + Z b + W v of each known group.
    fe = result.fe_params.rename({f"C(k)[T.{v}]": f"C(k)[T.{k}]" for k, v in K_CODES.items()})
    effects = {g: e.rename(lambda name: name.replace("C(c)[", "C(c)[c"))
               for g, e in result.random_effects.items()}
    expected = _fixed_part(new, fe) + _random_part(new, effects)
    ok = new["x2"].notna().to_numpy()
    known = new["g"].isin(list(effects)).to_numpy()
    assert known.sum() == 7 and np.all(np.abs(_random_part(new, effects))[known] > 1e-3)
    np.testing.assert_allclose(pred[ok], expected[ok], rtol=1e-12, atol=1e-12)
    assert np.isnan(pred[~ok]).all()


def test_a_number_matching_several_text_labels_is_refused():
    """The fit's groups "7" and "07" both read as 7: the number 7 names neither."""
    data = _train().assign(g=lambda f: f["g"].astype(str).where(f["g"] != 19, "07"))
    result = dlmm.mixedlm("y ~ x1", data, groups="g").fit()
    new = pd.DataFrame({"g": [3, 7], "x1": [0.5, 0.5]})
    with pytest.raises(InputError, match=r"group label 7 of column 'g' in the new data "
                                         r"matches the fit's labels '07', '7'|"
                                         r"matches the fit's labels '7', '07'"):
        result.predict(new, random_effects=True)
    # A number that only one text label reads as is that label.
    fe = result.fe_params
    b = result.random_effects["3"].iloc[0]
    assert result.predict(new.head(1), random_effects=True).iloc[0] == pytest.approx(
        fe["Intercept"] + 0.5 * fe["x1"] + b, rel=1e-12)


def test_predict_without_data_is_the_fixed_part_or_fitted_values():
    result = _fit()
    data = _train()
    fixed = result.predict()  # statsmodels' meaning: X beta, an ndarray
    assert isinstance(fixed, np.ndarray)
    np.testing.assert_allclose(fixed, _fixed_part(data, result.fe_params), rtol=1e-12,
                               atol=1e-12)
    fitted = result.predict(random_effects=True)
    expected = _fixed_part(data, result.fe_params) + _random_part(data, result.random_effects)
    np.testing.assert_allclose(fitted, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(result.fittedvalues.to_numpy(), expected, rtol=1e-12,
                               atol=1e-12)


def test_fitted_and_resid_with_dropped_rows():
    data = _train().copy()
    data.loc[[3, 17, 40], "x2"] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = dlmm.mixedlm(FORMULA, data, groups="g", re_formula=RE_FORMULA,
                              vc_formula=VC_FORMULA, missing="drop").fit()
    kept = data.dropna()
    assert result.fittedvalues.index.equals(kept.index)
    assert result.resid.index.equals(kept.index)
    expected = _fixed_part(kept, result.fe_params) + _random_part(kept, result.random_effects)
    np.testing.assert_allclose(result.fittedvalues.to_numpy(), expected, rtol=1e-12,
                               atol=1e-12)
    np.testing.assert_allclose(result.resid.to_numpy(), kept["y"].to_numpy() - expected,
                               rtol=1e-10, atol=1e-12)


# -- Dask ------------------------------------------------------------------------------------


def test_predict_dask_is_lazy_and_equal(dask_client, tmp_path):
    result = _fit()
    new = _new_data()
    expected = result.predict(new, random_effects=True)
    lazy = result.predict(dd.from_pandas(new, npartitions=2, sort=False), client=dask_client,
                          random_effects=True)
    assert isinstance(lazy, dd.Series)
    assert lazy.npartitions == 2
    got = dask_client.compute(lazy).result()
    assert got.index.equals(new.index)
    np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), rtol=1e-15, atol=0)
    # Written to Parquet from the workers, read back by pandas.
    out = tmp_path / "pred"
    lazy.to_frame().to_parquet(str(out))
    back = pd.read_parquet(out).sort_index()
    assert len(list(out.glob("*.parquet"))) == 2
    np.testing.assert_allclose(back.iloc[:, 0].to_numpy(), expected.sort_index().to_numpy(),
                               rtol=1e-15, atol=0)


def test_predict_parquet_path(dask_client, tmp_path):
    result = _fit()
    new = _new_data()
    path = tmp_path / "new.parquet"
    new.to_parquet(path)
    lazy = result.predict(str(path), client=dask_client, random_effects=True)
    assert isinstance(lazy, dd.Series)
    got = dask_client.compute(lazy).result()
    np.testing.assert_allclose(got.to_numpy(), result.predict(new,
                               random_effects=True).to_numpy(), rtol=1e-15)


@functools.cache
def _dask_fit(client):
    frame = dd.from_pandas(_train(), npartitions=3, sort=False)
    return dlmm.mixedlm(FORMULA, frame, groups="g", re_formula=RE_FORMULA,
                        vc_formula=VC_FORMULA).fit(client=client)


def test_dask_fitted_and_resid_are_lazy_and_equal(dask_client):
    local = _fit()
    result = _dask_fit(dask_client)
    assert result.llf == pytest.approx(local.llf, rel=1e-10)
    fitted, resid = result.fittedvalues, result.resid
    assert isinstance(fitted, dd.Series) and isinstance(resid, dd.Series)
    fitted_c, resid_c = dask_client.compute([fitted, resid], sync=True)
    assert fitted_c.index.equals(local.fittedvalues.index)
    assert resid_c.index.equals(local.resid.index)
    # Same data, other partitioning: the same estimates to 1e-8 relative.
    scale = np.max(np.abs(local.fittedvalues.to_numpy()))
    np.testing.assert_allclose(fitted_c.to_numpy(), local.fittedvalues.to_numpy(), rtol=1e-8,
                               atol=1e-8 * scale)
    np.testing.assert_allclose(resid_c.to_numpy(), local.resid.to_numpy(), rtol=1e-8,
                               atol=1e-8 * scale)


def test_dask_fit_predicts_new_data(dask_client):
    local = _fit()
    result = _dask_fit(dask_client)
    new = _new_data()
    lazy = result.predict(dd.from_pandas(new, npartitions=2, sort=False), client=dask_client,
                          random_effects=True)
    assert isinstance(lazy, dd.Series)
    got = dask_client.compute(lazy).result()
    expected = local.predict(new, random_effects=True)
    np.testing.assert_array_equal(got.isna().to_numpy(), expected.isna().to_numpy())
    np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), rtol=1e-8, atol=1e-10)
    # And pandas new data with a Dask fit: pandas out.
    pandas_out = result.predict(new, random_effects=True)
    assert isinstance(pandas_out, pd.Series)
    np.testing.assert_allclose(pandas_out.to_numpy(), expected.to_numpy(), rtol=1e-8,
                               atol=1e-10)
