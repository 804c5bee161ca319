"""Plots draw what the results hold: caterpillar and optimization trace, each
written to PNG."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import dlmm  # noqa: E402
from dlmm.results.plotting import accepted_path  # noqa: E402
from tests.results.lme4_reference import fit_penicillin, fit_sleepstudy  # noqa: E402
from tests.simulate import grouped_data  # noqa: E402


@pytest.fixture(scope="module")
def result():
    data = grouped_data(n_groups=300, per_group=5, re_cov=np.array([[1.0, 0.2], [0.2, 0.5]]),
                        seed=8)
    return dlmm.mixedlm("y ~ x1", data, groups="g", re_formula="~x1").fit()


def test_caterpillar_panels_share_one_order(tmp_path):
    result = fit_sleepstudy()
    fig = result.plot_random_effects()
    fig.savefig(tmp_path / "caterpillar.png")
    assert (tmp_path / "caterpillar.png").stat().st_size > 1000
    left, right = fig.axes
    assert [left.get_title(), right.get_title()] == ["(Intercept)", "Days"]
    table = result.random_effects_table()
    x_left = left.lines[0].get_xdata()
    assert np.all(np.diff(x_left) >= 0)  # sorted by the intercept...
    labels = [t.get_text() for t in left.get_yticklabels()]
    assert len(labels) == 18 and left.get_shared_y_axes().joined(left, right)
    np.testing.assert_array_equal(right.lines[0].get_ydata(), left.lines[0].get_ydata())
    # ...and each row of the slope panel is the same subject's slope
    np.testing.assert_allclose(right.lines[0].get_xdata(), table.loc[labels, "Days"])
    np.testing.assert_allclose(x_left, table.loc[labels, "Subject"])
    assert "18 groups" in fig._suptitle.get_text()


def test_caterpillar_samples_many_groups_without_labels(result, tmp_path):
    fig = result.plot_random_effects("x1", max_groups=50, alpha=0.1)
    fig.savefig(tmp_path / "one.png")
    (ax,) = fig.axes
    assert ax.get_title() == "x1"
    x = ax.lines[0].get_xdata()
    table = result.random_effects_table(with_se=True)
    assert len(x) == 50 and set(np.round(x, 12)) <= set(np.round(table["x1"].to_numpy(), 12))
    assert "50 of 300 groups" in fig._suptitle.get_text()
    assert len(result.plot_random_effects(max_groups=300).axes[0].get_yticklabels()) == 0
    assert result.plot_random_effects("(Intercept)").axes[0].get_title() == "(Intercept)"
    with pytest.raises(dlmm.InputError, match="no random effect named 'z'"):
        result.plot_random_effects("z")


def test_caterpillar_of_crossed_factors(tmp_path):
    fig = fit_penicillin().plot_random_effects()
    fig.savefig(tmp_path / "crossed.png")
    plate, sample = fig.axes
    assert (plate.get_title(), sample.get_title()) == ("plate", "sample")
    assert len(plate.lines[0].get_xdata()) == 24 and len(sample.lines[0].get_xdata()) == 6
    assert sorted(t.get_text() for t in sample.get_yticklabels()) == list("ABCDEF")


def test_accepted_path_is_the_running_best():
    llf = np.array([-10.0, -5.0, -7.0, -4.0, -np.inf, -4.0, -3.0])
    assert accepted_path(llf).tolist() == [True, True, False, True, False, False, True]


def test_optimization_trace_has_every_evaluation_and_a_legend(result, tmp_path):
    ax = result.plot_optimization()
    ax.figure.savefig(tmp_path / "trace.png")
    accepted, rejected = ax.lines[0], ax.lines[1]
    entries = result.optimization_log.entries
    assert len(accepted.get_xdata()) + len(rejected.get_xdata()) == len(entries)
    assert accepted.get_ydata()[-1] == pytest.approx(max(e.llf for e in entries))
    assert np.all(np.diff(accepted.get_ydata()) > 0)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["llf, accepted path", "llf, rejected trial points", "|gradient|"]
