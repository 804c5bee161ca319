"""Which learned specifications are crossed, and their level codes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from dlmm.exceptions import InputError
from dlmm.spec.crossed import crossed_design, crossed_layout
from dlmm.spec.formula import FormulaSpec
from dlmm.spec.indicator_text import indicator_factor


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 60
    return pd.DataFrame({
        "y": rng.normal(size=n), "x": rng.normal(size=n),
        "a": rng.choice(["p", "q", "r"], size=n), "b": rng.integers(10, 15, size=n),
        "g": np.repeat(["G1"], n), "h": rng.integers(0, 4, size=n),
    })


def _spec(frame, formula="y ~ x", groups=None, re_formula="0", vc=None):
    spec = FormulaSpec(formula, groups, re_formula=re_formula,
                       vc_formula=vc if vc is not None else {"a": "0 + C(a)", "b": "0 + C(b)"})
    columns = spec.categorical_columns(frame)
    levels = {c: sorted(frame[c].unique().tolist()) for c in columns}
    return spec.learn_levels(frame, levels)


@pytest.mark.parametrize("text, factor", [
    ("0 + C(a)", "a"), ("~0 + C(a)", "a"), ("0+C( a )", "a"), ("C(a) - 1", "a"),
    ("-1 + C(a)", "a"), ("C(a) + 0", "a"), ("0 + a", "a"), ("0 + C(a):x", None),
    ("C(a)", None), ("0 + C(a) + C(b)", None), ("0 + x", "x"), ("1", None),
])
def test_indicator_factor(text, factor):
    assert indicator_factor(text) == factor


def test_statsmodels_crossed_spelling_is_crossed(frame):
    spec = _spec(frame)
    layout = crossed_layout(spec)
    assert layout is not None
    assert layout.factors == ("a", "b")  # the components' order: vc_names, sorted
    assert layout.n_levels == (3, 5)
    assert layout.slot_offsets == (0, 3)


def test_re_formula_none_with_components_is_crossed(frame):
    assert crossed_layout(_spec(frame, re_formula=None)) is not None


@pytest.mark.parametrize("kwargs", [
    {"re_formula": "1"},  # a random intercept for the one group
    {"re_formula": "~x"},
    {"vc": {"a": "0 + C(a):x"}},  # a slope per level: not an indicator
    {"vc": {"a": "0 + C(a)", "x": "0 + x"}},  # a numeric column: no levels
    {"vc": {}, "re_formula": None},  # a random intercept, no components
])
def test_not_crossed(frame, kwargs):
    assert crossed_layout(_spec(frame, **kwargs)) is None


def test_group_column_must_be_constant(frame):
    spec = _spec(frame, groups="g")
    assert crossed_layout(spec) is None  # unknown without the data's levels
    assert crossed_layout(spec, group_levels=["G1"]) is not None
    nested = _spec(frame, groups="h")
    assert crossed_layout(nested, group_levels=[0, 1, 2, 3]) is None


def test_codes_are_global_levels(frame):
    spec = _spec(frame)
    layout = crossed_layout(spec)
    part = frame.iloc[10:30]
    codes = layout.codes(spec.design(part).w)
    a_levels, b_levels = spec.levels["a"], spec.levels["b"]
    np.testing.assert_array_equal(codes[0], [a_levels.index(v) for v in part["a"]])
    np.testing.assert_array_equal(codes[1], [b_levels.index(v) for v in part["b"]])
    assert [c.dtype for c in codes] == [np.int64, np.int64]


def test_codes_refuse_a_row_without_exactly_one_indicator(frame):
    layout = crossed_layout(_spec(frame))
    w = sp.csr_array(np.array([[1.0, 0, 0, 1, 0, 0, 0, 0], [0, 1.0, 0, 0, 0, 0, 0, 0]]))
    with pytest.raises(InputError, match="one indicator per row"):
        layout.codes(w)
    assert [c.size for c in layout.codes(sp.csr_array((0, 8)))] == [0, 0]


def test_crossed_design_matches_the_full_design(frame):
    spec = _spec(frame)
    layout = crossed_layout(spec)
    part = frame.iloc[5:40].copy()
    part.loc[part.index[3], "a"] = None  # a missing factor value: the row is left out
    design, codes = crossed_design(spec, layout, part)
    full = spec.design(part)
    assert design.w is None
    np.testing.assert_array_equal(design.kept, full.kept)
    np.testing.assert_array_equal(design.xy, full.xy)
    np.testing.assert_array_equal(design.missing_by_column, full.missing_by_column)
    for got, want in zip(codes, layout.codes(full.w)):
        np.testing.assert_array_equal(got, want)
    assert design.n_dropped == 1 and codes[0].size == len(part) - 1
