"""Formula specification: statsmodels' names, levels learned over all the data."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

import dlmm
from dlmm.spec.formula import FormulaSpec


@pytest.fixture(scope="module")
def people() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    n = 500
    g = rng.integers(0, 25, n)
    age = rng.normal(40, 10, n)
    sex = rng.choice(["Female", "Male"], n)
    c = rng.choice(["a", "b", "c"], n)
    cask = rng.choice(["k1", "k2"], n)
    y = 2 + 0.05 * age + (sex == "Male") + rng.normal(size=g.max() + 1)[g] + rng.normal(size=n)
    return pd.DataFrame({"y": y, "age": age, "Sex": sex, "c": c, "cask": cask, "g": g,
                         "Days": rng.integers(0, 10, n).astype(float)})


def _sm_fit(formula, data, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return smf.mixedlm(formula, data, **kw).fit()


@pytest.mark.parametrize(
    "formula",
    [
        "y ~ age * Sex",
        "y ~ age:Sex + C(c)",
        "y ~ age + C(c) + age:Sex + Sex",
        "y ~ C(c):age + Days",
        "y ~ 0 + C(c) + age",
    ],
)
def test_fixed_effect_names_and_order_match_statsmodels(people, formula):
    expected = _sm_fit(formula, people, groups="g").params.index.tolist()
    got = dlmm.mixedlm(formula, people, groups="g").fit().params.index.tolist()
    assert got == expected


@pytest.mark.parametrize(
    ("re_formula", "vc_formula"),
    [
        (None, None),
        ("1", None),
        ("~Days", None),
        ("~age + Days", None),
        (None, {"cask": "0 + C(cask)"}),
        ("1", {"cask": "0 + C(cask)", "c": "0 + C(c)"}),
    ],
)
def test_covariance_parameter_names_match_statsmodels(people, re_formula, vc_formula):
    kw = {"groups": "g", "re_formula": re_formula, "vc_formula": vc_formula}
    expected = _sm_fit("y ~ age", people, **kw).params.index.tolist()
    got = dlmm.mixedlm("y ~ age", people, **kw).fit().params.index.tolist()
    assert got == expected


def test_levels_learned_once_are_applied_to_every_chunk(people):
    spec = FormulaSpec("y ~ C(c)", "g")
    spec.learn(people)
    only_a = people[people["c"] == "a"].head(5)
    design = spec.design(only_a)
    # Intercept, C(c)[T.b], C(c)[T.c], then y: all columns although 'b' and 'c' are absent.
    assert design.xy.shape == (5, 4)
    np.testing.assert_array_equal(design.xy[:, 1:3], 0.0)
    np.testing.assert_allclose(design.xy[:, 3], only_a["y"].to_numpy())


def test_level_seen_only_in_a_later_partition_is_a_column(people, dask_client):
    import dask.dataframe as dd

    frame = people.sort_values("c").reset_index(drop=True)  # 'c' level only at the end
    ddf = dd.from_pandas(frame, npartitions=4, sort=False)
    got = dlmm.mixedlm("y ~ C(c)", ddf, groups="g").fit(client=dask_client)
    expected = _sm_fit("y ~ C(c)", people, groups="g")
    assert got.fe_params.index.tolist() == expected.fe_params.index.tolist()
    np.testing.assert_allclose(got.fe_params.to_numpy(), expected.fe_params.to_numpy(),
                               rtol=1e-5)


def test_required_columns_read_only_what_the_model_uses(people):
    spec = FormulaSpec("y ~ age + C(c)", "g", re_formula="~Days",
                       vc_formula={"k": "0 + C(cask)"})
    assert spec.required_columns(people.columns) == ["y", "age", "c", "cask", "g", "Days"]


def test_random_slope_and_component_design_columns(people):
    spec = FormulaSpec("y ~ age", "g", re_formula="~Days", vc_formula={"k": "0 + C(cask)"})
    spec.learn(people)
    design = spec.design(people)
    np.testing.assert_array_equal(design.z[:, 0], 1.0)
    np.testing.assert_array_equal(design.z[:, 1], people["Days"].to_numpy())
    w = design.w.toarray()
    assert w.shape == (len(people), 2)
    np.testing.assert_array_equal(w[:, 0], (people["cask"] == "k1").to_numpy())
    assert spec.exog_re_names == ["g", "Days"]
    assert spec.vc_column_names == [["C(cask)[k1]", "C(cask)[k2]"]]
