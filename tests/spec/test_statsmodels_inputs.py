"""statsmodels' input forms: group labels as a Series, VCSpec, MixedLMParams."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from statsmodels.regression.mixed_linear_model import MixedLMParams, VCSpec

from dlmm.exceptions import InputError
from dlmm.spec.formula import GROUP_VALUES_COLUMN
from dlmm.spec.statsmodels_inputs import (
    attach_groups,
    is_params_object,
    is_vcspec,
    vcspec_column_names,
    vcspec_to_dict,
)


def test_a_column_of_the_data_is_that_column():
    data = pd.DataFrame({"g": [3, 1, 3, 2], "y": [1.0, 2, 3, 4]})
    out, column, name = attach_groups(data, data["g"], False)
    assert out is data and column == "g" and name == "g"
    # Other labels become a new column, without touching the caller's frame.
    out, column, name = attach_groups(data, data["g"] * 10, False)
    assert column == GROUP_VALUES_COLUMN and name == "g"
    assert list(out[GROUP_VALUES_COLUMN]) == [30, 10, 30, 20]
    assert GROUP_VALUES_COLUMN not in data.columns
    out, column, name = attach_groups(data, np.array([1, 1, 2, 2]), False)
    assert column == GROUP_VALUES_COLUMN and name is None
    with pytest.raises(InputError, match="one label per row"):
        attach_groups(data, [1, 2], False)
    with pytest.raises(InputError, match="Parquet"):
        attach_groups("data/", data["g"], True)


def test_vcspec_becomes_the_group_dict():
    groups = np.array(["b", "a", "b", "a", "a"])
    mats_a = np.array([[1.0, 0], [0, 1], [1, 0]])
    mats_b = np.array([[1.0], [1.0]])
    spec = VCSpec(["c"], [[["c0", "c1"], ["c0"]]], [[mats_a, mats_b]])
    assert is_vcspec(spec) and not is_vcspec({"c": {}})
    out = vcspec_to_dict(spec, groups)
    np.testing.assert_array_equal(out["c"]["a"], mats_a)
    np.testing.assert_array_equal(out["c"]["b"], mats_b)
    # Names every group agrees on are kept; otherwise the component's name and index.
    assert vcspec_column_names(spec) == [["c0", "c1"]]
    two = np.ones((2, 2))
    differ = VCSpec(["c"], [[["c0", "x"], ["c0", "y"]]], [[mats_a[:, :2], two]])
    assert vcspec_column_names(differ) == [["c0", "c[1]"]]
    named = VCSpec(["z", "c"], [[["u"], ["u"]], [["c0"], ["c0"]]], [[mats_b] * 2] * 2)
    assert vcspec_column_names(named) == [["c0"], ["u"]]  # sorted by component name
    with pytest.raises(InputError, match="2 groups"):
        vcspec_to_dict(VCSpec(["c"], [[["c0"]]], [[mats_b]]), groups)


def test_params_objects_are_recognised_by_their_attributes():
    assert is_params_object(MixedLMParams.from_components(np.ones(2), np.eye(2)))
    assert not is_params_object(np.ones(3))
