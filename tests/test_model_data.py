"""``model.data`` is statsmodels' model-data object (issue 25 item 2), checked against
statsmodels' own ``model.data`` for the same inputs; without statsmodels it has the
same attributes."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from statsmodels.iolib.summary2 import summary_col

import dlmm

NAMES = ("xnames", "ynames", "param_names", "cov_names", "exog_re_names",
         "exog_re_names_full", "k_constant", "const_idx")


def _data():
    rs = np.random.RandomState(2410)
    n, g = 60, np.repeat(np.arange(12), 5)
    frame = pd.DataFrame({"y": rs.normal(size=n) + rs.normal(size=12)[g],
                          "x1": rs.normal(size=n), "x2": rs.normal(size=n),
                          "z": rs.normal(size=n), "v": rs.normal(size=n), "g": g})
    return frame


def _cases():
    frame = _data()
    y, g = frame["y"].to_numpy(), frame["g"].to_numpy()
    x = frame[["x1", "x2"]].to_numpy()
    x1 = np.column_stack([np.ones(len(y)), x])
    z = frame["z"].to_numpy()
    return {
        "arrays": ((y, x, g), {}),
        "arrays, const": ((y, x1, g), {}),
        "arrays, exog_re 1-d": ((y, x, g, z), {}),
        "arrays, exog_re 2 columns": ((y, x, g, np.column_stack([np.ones(len(y)), z])), {}),
        "pandas arrays": ((frame["y"], frame[["x1", "x2"]], g), {}),
        "formula": (("y ~ x1 + x2", frame), {"groups": "g"}),
        "formula, slope": (("y ~ x1 + x2", frame), {"groups": "g", "re_formula": "~z"}),
        "formula, component": (("y ~ 0 + x1", frame), {"groups": "g", "re_formula": "0 + z",
                                                        "vc_formula": {"a": "0 + v"}}),
        "formula, group labels": (("y ~ x1", frame), {"groups": frame["g"]}),
    }


@pytest.mark.parametrize("case", list(_cases()))
def test_model_data_is_statsmodels(case):
    args, kwargs = _cases()[case]
    if case.startswith("formula"):
        want = sm.MixedLM.from_formula(*args, **kwargs).data
        got = dlmm.MixedLM.from_formula(*args, **kwargs).data
        assert got.frame is args[1] and got.formula == want.formula
        pd.testing.assert_index_equal(got.row_labels, want.row_labels)
        pd.testing.assert_frame_equal(got.orig_exog, want.orig_exog, check_dtype=False)
    else:
        want = sm.MixedLM(*args, **kwargs).data
        got = dlmm.MixedLM(*args, **kwargs).data
        assert (got.row_labels is None) == (want.row_labels is None)
    assert type(got).__mro__[1:].count(type(want)) == 1  # statsmodels' own class
    for name in NAMES:
        assert getattr(got, name) == getattr(want, name), name
    np.testing.assert_array_equal(got.exog, want.exog)
    np.testing.assert_array_equal(got.endog, np.asarray(want.endog).ravel())
    if hasattr(want, "vcomp_names"):
        assert got.vcomp_names == list(want.vcomp_names)


def test_summary_col_of_dlmm_results_is_statsmodels():
    frame = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = [sm.MixedLM.from_formula(f, frame, groups="g").fit(reml=False)
                for f in ("y ~ x1", "y ~ x1 + x2")]
    got = [dlmm.mixedlm(f, frame, groups="g").fit(reml=False) for f in ("y ~ x1", "y ~ x1 + x2")]
    order = ["Intercept", "x1", "x2", "Group Var"]
    got = summary_col(got, stars=True, regressor_order=order).tables[0]
    want = summary_col(want, stars=True, regressor_order=order).tables[0]
    assert got.index.tolist() == want.index.tolist()  # the rows are named by param_names
    assert got.columns.tolist() == want.columns.tolist()

    def numbers(table):
        text = table.to_numpy().ravel().astype(str)
        return np.array([float(t.strip("()* ") or "nan") for t in text])

    # statsmodels stops near, not at, the optimum: its fourth decimals may differ by one
    np.testing.assert_allclose(numbers(got), numbers(want), atol=2e-4)


def test_param_names_can_be_set_as_in_statsmodels():
    data = dlmm.mixedlm("y ~ x1", _data(), groups="g").data
    data.param_names = ["a", "b", "c"]
    assert data.param_names == ["a", "b", "c"] and data.cov_names == ["a", "b", "c"]


def test_model_data_without_statsmodels():
    """A fresh process where statsmodels cannot be imported: the same names."""
    code = (
        "import sys; sys.modules['statsmodels'] = None\n"
        "import numpy as np, pandas as pd, dlmm\n"
        "from dlmm.model_data import ModelDataView\n"
        "df = pd.DataFrame({'y': [1., 2, 4, 3, 5, 7], 'x': [0., 1, 2, 3, 4, 6],"
        " 'g': [0, 0, 1, 1, 2, 2]})\n"
        "d = dlmm.mixedlm('y ~ x', df, groups='g', re_formula='~x').data\n"
        "assert type(d) is ModelDataView and d.frame is df, type(d)\n"
        "print(d.xnames, d.ynames, d.param_names, d.exog_re_names_full, d.wraps_pandas)\n"
        "a = dlmm.MixedLM(df.y.to_numpy(), df[['x']].to_numpy(), df.g.to_numpy()).data\n"
        "print(a.xnames, a.exog_re_names, a.wraps_pandas, a.row_labels)\n"
        "assert 'statsmodels' not in [m.split('.')[0] for m in sys.modules if sys.modules[m]]\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "['Intercept', 'x'] y ['Intercept', 'x', 'g Var', 'g x x Cov', 'x Var'] "
        "['g Var', 'g x x Cov', 'x Var'] True",
        "['x1'] ['Group Var'] False None",
    ]


def test_model_data_of_parquet_input_names_without_a_pass(tmp_path):
    """Parquet (and Dask) input: statsmodels' PandasData, the names of the pandas model,
    learned from a sample; the rows are not brought to the driver for it."""
    frame = _data()
    path = tmp_path / "data.parquet"
    frame.to_parquet(path)
    want = sm.MixedLM.from_formula("y ~ x1", frame, groups="g", re_formula="~z").data
    model = dlmm.mixedlm("y ~ x1", str(path), groups="g", re_formula="~z")
    got = model.data
    assert isinstance(got, type(want)) and got.frame == str(path)
    for name in NAMES:
        assert getattr(got, name) == getattr(want, name), name
    assert model._stats is None  # names only: no pass over the rows
