"""The fast indicator columns of ``0 + C(f)`` equal formulaic's, names and values."""

import numpy as np
import pandas as pd
import pytest
from formulaic import model_matrix

from dlmm.spec.formula import FormulaSpec
from dlmm.spec.indicator_text import indicator_factor
from dlmm.spec.indicators import IndicatorSpec, indicator_spec


@pytest.mark.parametrize("text, levels", [
    ("0 + C(s)", [3, 10, 7, 1]),
    ("C(s) - 1", ["b", "a b", "c"]),
    ("0 + s", ["x", "y", "z"]),
    ("-1 + C(s)", [1.5, 2.0, -3.25]),
])
def test_same_columns_and_matrix_as_formulaic(text, levels):
    rng = np.random.default_rng(1)
    values = [levels[i] for i in rng.integers(0, len(levels), 40)]
    frame = pd.DataFrame({"s": pd.Categorical(values, categories=levels)})
    fast = indicator_spec(text, indicator_factor(text), frame)
    assert isinstance(fast, IndicatorSpec)
    slow = model_matrix("~ " + text, frame, output="sparse")
    assert list(fast.column_names) == list(slow.model_spec.column_names)
    np.testing.assert_array_equal(fast.get_model_matrix(frame).toarray(), slow.toarray())
    # new data with a level the fit never saw: a row of zeros, as formulaic gives
    new = pd.DataFrame({"s": [values[0], "never seen" if isinstance(levels[0], str) else 999]})
    w = fast.get_model_matrix(new).toarray()
    assert w[1].sum() == 0 and w[0].sum() == 1


def test_not_taken_for_a_numeric_column_or_another_formula():
    frame = pd.DataFrame({"s": [1.0, 2.0], "c": pd.Categorical(["a", "b"])})
    assert indicator_spec("0 + s", "s", frame) is None          # numeric: one column
    assert indicator_spec("0 + C(c):s", None, frame) is None    # not plain indicators


def test_learned_spec_uses_it_and_keeps_its_names():
    rng = np.random.default_rng(0)
    data = pd.DataFrame({"y": rng.normal(size=30), "a": rng.integers(0, 5, 30),
                         "b": rng.choice(["p", "q", "r"], 30)})
    spec = FormulaSpec("y ~ 1", None, re_formula="0",
                       vc_formula={"a": "0 + C(a)", "b": "0 + C(b)"})
    spec.learn_levels(data, {"a": sorted(data.a.unique()), "b": sorted(data.b.unique())})
    assert all(isinstance(s, IndicatorSpec) for s in spec._vc_specs)
    assert spec.vc_column_names == [[f"C(a)[{v}]" for v in sorted(data.a.unique())],
                                    ["C(b)[p]", "C(b)[q]", "C(b)[r]"]]
    w = spec.design(data).w.toarray()
    assert w.shape == (30, 5 + 3)
    np.testing.assert_array_equal(w.sum(axis=1), 2.0)
