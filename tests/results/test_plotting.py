"""Plots draw what the results hold."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import dlmm  # noqa: E402
from tests.simulate import grouped_data  # noqa: E402


@pytest.fixture(scope="module")
def result():
    data = grouped_data(n_groups=300, per_group=5, re_cov=np.array([[1.0, 0.2], [0.2, 0.5]]),
                        seed=8)
    return dlmm.mixedlm("y ~ x1", data, groups="g", re_formula="~x1").fit()


def test_caterpillar_draws_sorted_effects_with_intervals(result):
    ax = result.plot_random_effects("x1", max_groups=50, alpha=0.1)
    line = ax.lines[0]
    x = line.get_xdata()
    assert len(x) == 50 and np.all(np.diff(x) >= 0)  # a sample, sorted
    table = result.random_effects_table(with_se=True)
    assert set(np.round(x, 12)) <= set(np.round(table["x1"].to_numpy(), 12))
    assert "50 of 300 groups" in ax.get_title()
    with pytest.raises(dlmm.InputError, match="no random effect named 'z'"):
        result.plot_random_effects("z")


def test_optimization_trace_has_every_evaluation(result):
    ax = result.plot_optimization()
    llf_line = ax.lines[0]
    assert len(llf_line.get_xdata()) == result.optimization_log.evaluations
    assert llf_line.get_ydata()[-1] == pytest.approx(result.optimization_log.entries[-1].llf)
