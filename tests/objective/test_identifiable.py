"""Unidentifiable fits (issue 10, item 2): designs lme4 refuses are refused before the
optimizer runs, and a fit whose lme4-style checks fail is never reported as converged.

lme4 (``lmer`` with its default controls) stops on each design refused here:
``(1 | g)`` with one row per level ("number of levels of each grouping factor must be <
number of observations"), a factor with one level ("grouping factors must have > 1
sampled level"), and ``(1 + x1 + x2 | g)`` on pairs of rows ("number of observations (=n)
<= number of random effects (=q)").
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

import dlmm
from dlmm.exceptions import ConvergenceWarning, InputError
from dlmm.objective.identifiable import check_identifiable
from tests.simulate import grouped_data


def _fit(df, formula="y ~ x1", **kwargs):
    return dlmm.mixedlm(formula, df, **kwargs).fit()


def test_one_row_per_group_is_refused():
    df = grouped_data(n_groups=80, per_group=1, k_fe=2, re_cov=np.array([[1.0]]), seed=3)
    with pytest.raises(InputError, match="group column 'g' has 80 levels for 80 rows"):
        _fit(df, groups="g")


def test_the_arrays_api_names_its_groups_as_statsmodels():
    rng = np.random.default_rng(9)
    with pytest.raises(InputError, match="group column 'Group' has 30 levels for 30 rows"):
        dlmm.MixedLM(rng.normal(size=30), np.ones((30, 1)), np.arange(30)).fit()


@pytest.mark.parametrize("reml", [True, False])
def test_one_group_with_a_random_intercept_is_refused(reml):
    """statsmodels fits it and reports the start value as the variance; lme4 refuses it."""
    df = grouped_data(n_groups=1, per_group=50, k_fe=2, seed=4)
    model = dlmm.mixedlm("y ~ x1", df, groups="g")
    with pytest.raises(InputError, match=r"has 1 level: .*re_formula='0'"):
        model.fit(reml=reml)


def test_one_group_of_crossed_factors_needs_re_formula_0():
    """statsmodels' crossed spelling with the default ``re_formula`` adds a random
    intercept for the one group: refused, saying what to change."""
    df = grouped_data(n_groups=20, per_group=10, k_fe=2, vc_sd={"site": 1.0}, seed=5)
    with pytest.raises(InputError, match=r"the one group \(groups=None\) has 1 level"):
        _fit(df, groups=None, re_formula="1", vc_formula={"site": "0 + C(site)"})


def test_as_many_random_effects_as_rows_is_refused():
    df = grouped_data(n_groups=40, per_group=2, k_fe=3, re_cov=np.eye(3), seed=6)
    with pytest.raises(InputError, match=r"120 random effects \(3 per group x 40 groups\) "
                                         r"for 80 rows"):
        _fit(df, "y ~ x1 + x2", groups="g", re_formula="~x1 + x2")


def test_a_variance_component_with_a_level_per_row_is_refused():
    df = grouped_data(n_groups=30, per_group=4, k_fe=2, re_cov=np.array([[1.0]]), seed=7)
    df["obs"] = np.arange(len(df))
    with pytest.raises(InputError, match="variance component 'obs' has 120 random effects "
                                         "for 120 rows"):
        _fit(df, groups="g", vc_formula={"obs": "0 + C(obs)"})


def test_the_counts_a_pass_gives_for_nested_components():
    """(group, level) pairs with rows, as lme4 counts the levels of ``g:site``."""
    df = grouped_data(n_groups=12, per_group=9, k_fe=2, vc_sd={"site": 1.0}, vc_levels=3,
                      seed=8)
    df = df[~((df["g"] == 0) & (df["site"] == df["site"].iloc[0]))]  # one pair gone
    model = dlmm.mixedlm("y ~ x1", df, groups="g", vc_formula={"site": "0 + C(site)"})
    model.prepare()
    pairs = df.groupby(["g", "site"], observed=True).ngroups
    assert model._stats.vc_effect_counts().tolist() == [pairs]


def test_fewer_levels_than_rows_pass():
    check_identifiable(10, "g", 9, ["g"], ["c"], np.array([9]))
    with pytest.raises(InputError, match="variance component 'c' has 1 random effect"):
        check_identifiable(10, "g", 9, ["g"], ["c"], np.array([1]))


def _duplicated_components() -> pd.DataFrame:
    """Two variance components with the same indicator columns: only their sum is
    identified, so the Hessian is singular in the direction of their difference."""
    rng = np.random.default_rng(1)
    n_groups, n_sites, per_site = 30, 3, 8
    g = np.repeat(np.arange(n_groups), n_sites * per_site)
    site = np.tile(np.repeat(np.arange(n_sites), per_site), n_groups)
    effect = rng.normal(size=(n_groups, n_sites))
    y = 1 + effect[g, site] + rng.normal(size=g.size)
    return pd.DataFrame({"y": y, "x1": rng.normal(size=g.size), "g": g, "site": site,
                         "site_copy": site})


@pytest.mark.parametrize("partitions", [None, 2, 3])
def test_a_fit_with_unidentified_variances_is_not_converged(partitions):
    """From pandas and from 2 and 3 Dask partitions (whose rounding once made the
    singular Hessian pass a plain Cholesky test)."""
    data = _duplicated_components()
    if partitions:
        import dask.dataframe as dd

        data = dd.from_pandas(data, npartitions=partitions)
    model = dlmm.mixedlm("y ~ x1", data, groups="g", re_formula="0",
                         vc_formula={"a": "0 + C(site)", "b": "0 + C(site_copy)"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = model.fit()
    assert result.converged is False
    assert result.mle_retvals["convergence_failures"] == [
        "the Hessian is not negative definite at the estimate: the variance parameters "
        "are not identified by the data"]
    assert any(issubclass(w.category, ConvergenceWarning) for w in caught)
    # the sum of the two variances is identified: statsmodels' one-component fit
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        single = smf.mixedlm("y ~ x1", _duplicated_components(), groups="g", re_formula="0",
                             vc_formula={"a": "0 + C(site)"}).fit(reml=True)
    assert result.vcomp.sum() == pytest.approx(single.vcomp[0], rel=1e-4)
    assert result.llf == pytest.approx(single.llf, rel=1e-8)
