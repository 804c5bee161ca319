"""Random-effects tables (pandas and Dask) and writing them to Parquet.

Expected values: statsmodels' ``random_effects`` and ``random_effects_cov`` at
the same optimum for small generated data, and for the many-group case the
closed form of a random intercept's conditional mode,
``b_g = n_g s_b^2 / (s^2 + n_g s_b^2) * mean_g(y - X beta)``, computed by hand.
Dask tables are compared with the pandas ones.
"""

from __future__ import annotations

import functools
import warnings

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from dask.sizeof import sizeof
from statsmodels.tools.sm_exceptions import ConvergenceWarning

import dlmm
from tests.simulate import grouped_data

FORMULA = "y ~ x1 + x2"
R2 = np.array([[1.0, 0.3], [0.3, 0.5]])

# name -> (data keywords, re_formula, vc_formula, index name of the table)
CASES = {
    # The random intercept is named after the group column "g": the index is "group".
    "slope": (dict(n_groups=25, per_group=(4, 9), re_cov=R2, seed=41), "~x1", None, "group"),
    # No effect is named "g": the index is named after the group column.
    "slope_only": (dict(n_groups=25, per_group=(4, 9), re_cov=[[0.6]], seed=42),
                   "0 + x1", None, "g"),
    "vc": (dict(n_groups=25, per_group=(4, 9), re_cov=[[0.8]], vc_sd={"c": 0.7}, seed=43),
           "1", {"c": "0 + C(c)"}, "group"),
}


@functools.cache
def _data(name: str) -> pd.DataFrame:
    data = grouped_data(**CASES[name][0])
    if name == "slope_only":  # a slope without intercept: give x1 something to carry
        rng = np.random.default_rng(0)
        u = rng.normal(scale=0.8, size=data["g"].max() + 1)
        data["y"] += u[data["g"]] * data["x1"]
    return data


def _model(name: str, data):
    _, re_formula, vc_formula, _ = CASES[name]
    return dlmm.mixedlm(FORMULA, data, groups="g", re_formula=re_formula, vc_formula=vc_formula)


@functools.cache
def _fit(name: str):
    return _model(name, _data(name)).fit()


@functools.cache
def _dask_fit(name: str, client):
    return _model(name, dd.from_pandas(_data(name), npartitions=3, sort=False)).fit(
        client=client)


@functools.cache
def _sm_fit(name: str):
    _, re_formula, vc_formula, _ = CASES[name]
    model = smf.mixedlm(FORMULA, _data(name), groups="g", re_formula=re_formula,
                        vc_formula=vc_formula)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sm = model.fit(gtol=1e-10)
    assert sm.llf == pytest.approx(_fit(name).llf, rel=1e-8)  # the same optimum
    return sm


def _re_names(sm) -> list[str]:
    """statsmodels' names of the standard random effects (first in every group's Series)."""
    return list(next(iter(sm.random_effects.values())).index[: sm.k_re])


@pytest.mark.parametrize("name", sorted(CASES))
def test_random_effects_table_pandas(name):
    result, sm = _fit(name), _sm_fit(name)
    table = result.random_effects_table()
    assert isinstance(table, pd.DataFrame)
    assert table.index.name == CASES[name][3]
    names = _re_names(sm)
    assert list(table.columns) == names
    assert sorted(table.index) == sorted(sm.random_effects)
    assert table.index.is_unique
    expected = np.array([sm.random_effects[g][names].to_numpy() for g in table.index])
    scale = np.max(np.abs(expected))
    np.testing.assert_allclose(table.to_numpy(), expected, rtol=1e-5, atol=1e-7 * scale)


def test_vc_effects_table_pandas():
    result, sm = _fit("vc"), _sm_fit("vc")
    table = result.vc_effects_table()
    assert isinstance(table, pd.DataFrame)
    assert list(table.columns) == ["g", "component", "column", "effect", "variance"]
    expected = {}
    for g, series in sm.random_effects.items():
        cov = pd.DataFrame(sm.random_effects_cov[g])
        for effect in series.index:
            if effect.startswith("c["):
                expected[(g, effect)] = (series[effect], cov.loc[effect, effect])
    got = {(g, f"{comp}[{col}]"): (eff, var) for g, comp, col, eff, var in
           table.itertuples(index=False)}
    assert sorted(got) == sorted(expected)  # every (group, level) the group has
    assert set(table["component"]) == {"c"}
    for key, (eff, var) in expected.items():
        assert got[key][0] == pytest.approx(eff, rel=1e-5, abs=1e-7), key
        assert got[key][1] == pytest.approx(var, rel=1e-5), key


def test_vc_effects_table_empty_without_components():
    table = _fit("slope").vc_effects_table()
    assert len(table) == 0
    assert list(table.columns) == ["g", "component", "column", "effect", "variance"]


def test_write_random_effects_pandas(tmp_path):
    result, sm = _fit("slope"), _sm_fit("slope")
    path = tmp_path / "re.parquet"
    result.write_random_effects(path)
    back = pd.read_parquet(path)
    assert back.index.name == "group"
    assert list(back.columns) == _re_names(sm)
    assert sorted(back.index) == sorted(sm.random_effects)
    expected = np.array([sm.random_effects[g].to_numpy() for g in back.index])
    np.testing.assert_allclose(back.to_numpy(), expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", sorted(CASES))
def test_tables_dask_equal_pandas(name, dask_client, tmp_path):
    local = _fit(name)
    result = _dask_fit(name, dask_client)
    table = result.random_effects_table()
    assert isinstance(table, dd.DataFrame)
    got = dask_client.compute(table, sync=True).sort_index()
    expected = local.random_effects_table().sort_index()
    assert got.index.name == expected.index.name == CASES[name][3]
    assert list(got.columns) == list(expected.columns)
    assert got.index.equals(expected.index)
    np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), rtol=1e-8, atol=1e-10)

    vc = result.vc_effects_table()
    assert isinstance(vc, dd.DataFrame)
    keys = ["g", "component", "column"]
    vc_got = dask_client.compute(vc, sync=True).sort_values(keys).reset_index(drop=True)
    vc_exp = local.vc_effects_table().sort_values(keys).reset_index(drop=True)
    pd.testing.assert_frame_equal(vc_got[keys], vc_exp[keys], check_dtype=False)
    np.testing.assert_allclose(vc_got[["effect", "variance"]].to_numpy(dtype=float),
                               vc_exp[["effect", "variance"]].to_numpy(dtype=float),
                               rtol=1e-8, atol=1e-10)

    out = tmp_path / "re"
    result.write_random_effects(out)
    back = pd.read_parquet(out).sort_index()
    assert back.index.name == CASES[name][3]
    np.testing.assert_allclose(back.to_numpy(), expected.to_numpy(), rtol=1e-8, atol=1e-10)


def _kind(dtype) -> str:
    """int, float, str or other: what a Parquet schema cares about."""
    if pd.api.types.is_integer_dtype(dtype):
        return "int"
    if pd.api.types.is_float_dtype(dtype):
        return "float"
    if pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype):
        return "str"
    return str(dtype)


@pytest.mark.parametrize("labels", ["int", "str"])
def test_dask_tables_declare_their_dtypes_and_write(labels, dask_client, tmp_path):
    """The lazy tables' declared dtypes (Dask meta) are those of their partitions, so
    that ``to_parquet`` (which writes the declared schema) works for integer and
    string group labels alike."""
    data = _data("vc").copy()
    if labels == "str":
        data["g"] = "grp" + data["g"].astype(str)
    local = _model("vc", data).fit()
    result = _model("vc", dd.from_pandas(data, npartitions=3, sort=False)).fit(
        client=dask_client)
    re_table, vc_table = result.random_effects_table(), result.vc_effects_table()
    re_local, vc_local = local.random_effects_table(), local.vc_effects_table()
    problems = []
    for what, lazy in (("random_effects_table", re_table), ("vc_effects_table", vc_table)):
        computed = dask_client.compute(lazy, sync=True)
        if _kind(lazy.index.dtype) != _kind(computed.index.dtype):
            problems.append(f"{what} index: declared {lazy.index.dtype}, "
                            f"holds {computed.index.dtype}")
        for col in computed.columns:
            if _kind(lazy[col].dtype) != _kind(computed[col].dtype):
                problems.append(f"{what}[{col!r}]: declared {lazy[col].dtype}, "
                                f"holds {computed[col].dtype}")
    errors = []
    try:
        result.write_random_effects(tmp_path / "re")
        back = pd.read_parquet(tmp_path / "re").sort_index()
        assert back.index.tolist() == sorted(re_local.index)
        np.testing.assert_allclose(back.to_numpy(), re_local.sort_index().to_numpy(),
                                   rtol=1e-8, atol=1e-10)
    except ValueError as exc:  # pyarrow: partition does not match the declared schema
        errors.append(f"write_random_effects: {str(exc).splitlines()[0]}")
    try:
        vc_table.to_parquet(str(tmp_path / "vc"))
        keys = ["g", "component", "column"]
        back = pd.read_parquet(tmp_path / "vc").sort_values(keys)
        expected = vc_local.sort_values(keys)
        assert back["g"].tolist() == expected["g"].tolist()
        np.testing.assert_allclose(back["effect"].to_numpy(), expected["effect"].to_numpy(),
                                   rtol=1e-8, atol=1e-10)
    except ValueError as exc:
        errors.append(f"vc_effects_table().to_parquet: {str(exc).splitlines()[0]}")
    assert not problems and not errors, "\n".join(problems + errors)


# -- many groups, never collected on the driver ------------------------------------------

N_GROUPS = 20_000


@functools.cache
def _many_groups() -> pd.DataFrame:
    rng = np.random.default_rng(2024)
    g = np.repeat(np.arange(N_GROUPS), 2)
    x1 = rng.normal(size=g.size)
    y = 1.0 + 0.5 * x1 + rng.normal(scale=0.9, size=N_GROUPS)[g] + rng.normal(size=g.size)
    return pd.DataFrame({"g": g, "x1": x1, "y": y})


def _closed_form_intercepts(data: pd.DataFrame, result) -> pd.Series:
    """Conditional modes of a random intercept from the estimates, by hand."""
    resid = data["y"] - result.fe_params["Intercept"] - result.fe_params["x1"] * data["x1"]
    by_group = resid.groupby(data["g"])
    n, mean = by_group.size(), by_group.mean()
    s_b2 = float(result.cov_re.iloc[0, 0])
    return n * s_b2 / (result.scale + n * s_b2) * mean


def test_many_groups_table_written_without_collecting(dask_client, tmp_path, monkeypatch):
    data = _many_groups()
    frame = dd.from_pandas(data, npartitions=4, sort=False)
    result = dlmm.mixedlm("y ~ x1", frame, groups="g").fit(client=dask_client)
    assert result.n_groups == N_GROUPS

    # From here on: dlmm's backend may not gather at all, and nothing the client
    # gathers to this process may be larger than a small fraction of the table.
    def refuse(handles):
        raise AssertionError("the random-effects table was gathered on the driver")

    monkeypatch.setattr(result._stats.backend, "gather", refuse)
    gathered: list[int] = []
    original = dask_client._gather

    async def watched(futures, *args, **kwargs):
        out = await original(futures, *args, **kwargs)
        gathered.append(sizeof(out))
        return out

    monkeypatch.setattr(dask_client, "_gather", watched)

    table = result.random_effects_table()
    assert isinstance(table, dd.DataFrame)
    assert table.npartitions > 1
    # Building the table brings only its schema (an empty slice of the first
    # partition, for the real dtypes of the group labels), never rows.
    assert all(size < 4096 for size in gathered), gathered
    out = tmp_path / "re_many"
    result.write_random_effects(out)
    assert gathered, "the write did not go through the client (the check saw nothing)"
    table_bytes = N_GROUPS * 2 * 8
    assert max(gathered) < table_bytes / 20, gathered
    monkeypatch.undo()

    files = sorted(out.glob("*.parquet"))
    assert len(files) == table.npartitions > 1
    back = pd.read_parquet(out)
    assert len(back) == N_GROUPS and back.index.is_unique
    assert back.index.name == "group"
    expected = _closed_form_intercepts(data, result)
    np.testing.assert_allclose(back["g"].to_numpy(), expected.loc[back.index].to_numpy(),
                               rtol=1e-8, atol=1e-12)
