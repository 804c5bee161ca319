"""Plots draw what the results hold: caterpillar and optimization trace, each
written to PNG; and the conventions every plot follows (a Figure, lme4's grid and
labels, nothing cut off at the figure's edge)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import dlmm  # noqa: E402
from dlmm.results.plotting import accepted_path  # noqa: E402
from tests.results.lme4_reference import fit_penicillin, fit_sleepstudy  # noqa: E402
from tests.simulate import grouped_data  # noqa: E402

#: every plot method of a result, called with its defaults
PLOTS = ["plot_random_effects", "plot_residuals", "plot_qq", "plot_random_effects_qq",
         "plot_profile", "plot_optimization"]


@pytest.fixture(scope="module")
def result():
    data = grouped_data(n_groups=300, per_group=5, re_cov=np.array([[1.0, 0.2], [0.2, 0.5]]),
                        seed=8)
    return dlmm.mixedlm("y ~ x1", data, groups="g", re_formula="~x1").fit()


@pytest.fixture(scope="module")
def sleepstudy():
    return fit_sleepstudy()


@pytest.fixture(scope="module")
def plots(sleepstudy):
    """What each plot method of the sleepstudy fit returns (drawn once)."""
    drawn = {name: getattr(sleepstudy, name)() for name in PLOTS}
    yield drawn
    for value in drawn.values():
        plt.close(value.figure)


def drawn_texts(fig) -> list[tuple[str, object]]:
    """(text, extent in pixels) of every text the renderer draws in ``fig``."""
    fig.canvas.draw()  # the layout
    renderer = fig.canvas.get_renderer()
    drawn, draw_text = [], renderer.draw_text

    def record(gc, x, y, s, prop, angle, ismath=False, mtext=None):
        drawn.append(mtext)
        return draw_text(gc, x, y, s, prop, angle, ismath=ismath, mtext=mtext)

    renderer.draw_text = record
    try:
        fig.draw(renderer)
    finally:
        del renderer.draw_text
    return [(t.get_text(), t.get_window_extent(renderer)) for t in drawn if t is not None]


def test_every_plot_method_returns_a_figure(sleepstudy, plots, tmp_path):
    assert sorted(n for n in dir(sleepstudy) if n.startswith("plot_")) == sorted(PLOTS)
    for name, fig in plots.items():
        assert isinstance(fig, Figure), name
        fig.figure.savefig(tmp_path / f"{name}.png")  # an Axes' idiom still works
        assert (tmp_path / f"{name}.png").stat().st_size > 5000
    fig, ax = plt.subplots()  # drawn into the caller's Axes: its Figure
    assert sleepstudy.plot_residuals(ax=ax) is fig and sleepstudy.plot_qq(ax=ax) is fig
    plt.close(fig)


@pytest.mark.parametrize("name", PLOTS)
def test_no_text_is_cut_off(plots, name):
    fig = plots[name].figure
    width, height = fig.bbox.width, fig.bbox.height
    texts = drawn_texts(fig)
    assert len(texts) > 5
    outside = [text for text, box in texts
               if box.x0 < -1 or box.y0 < -1 or box.x1 > width + 1 or box.y1 > height + 1]
    assert outside == [], f"{name}: {outside} reach past the {width:g}x{height:g} figure"


def test_profile_of_crossed_factors_keeps_lme4s_numbers(penicillin, tmp_path):
    # lme4: (1 | plate) + (1 | sample) profiles .sig01 (plate), .sig02 (sample), .sigma
    fig = penicillin.plot_profile(parameters=["sample SD"])
    fig.savefig(tmp_path / "sample.png")
    (ax,) = fig.axes
    assert (ax.get_title(), ax.get_xlabel()) == (r"$\sigma_{2}$", "sd (Intercept) | sample")
    width, height = fig.get_size_inches()
    assert width / height < 1.5
    assert [text for text, box in drawn_texts(fig)
            if box.x0 < -1 or box.x1 > fig.bbox.width + 1] == []


def test_grid_shape():
    from dlmm.results.plotting import grid_shape

    assert [grid_shape(n) for n in (1, 2, 3, 4, 5, 6, 7, 9, 10)] == [
        (1, 1), (1, 2), (2, 2), (2, 2), (2, 3), (2, 3), (3, 3), (3, 3), (3, 4)]


def test_profile_panels_in_lme4s_grid_with_its_names(plots):
    fig = plots["plot_profile"]
    boxes = [ax.get_position() for ax in fig.axes]
    rows = sorted({round(b.y0, 3) for b in boxes}, reverse=True)
    columns = sorted({round(b.x0, 3) for b in boxes})
    assert (len(rows), len(columns)) == (2, 3)
    # read row by row from the top left
    assert [(rows.index(round(b.y0, 3)), columns.index(round(b.x0, 3))) for b in boxes] == [
        (0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    # lme4's xyplot(profile(fit)) strips: .sig01 .sig02 .sig03 .sigma (Intercept) Days
    assert [ax.get_title() for ax in fig.axes] == [
        r"$\sigma_{1}$", r"$\sigma_{2}$", r"$\sigma_{3}$", r"$\sigma$", "(Intercept)", "Days"]
    assert [ax.get_xlabel() for ax in fig.axes] == [
        "sd (Intercept) | Subject", "cor (Intercept), Days | Subject", "sd Days | Subject",
        "residual sd", "fixed effect", "fixed effect"]
    width, height = fig.get_size_inches()
    assert 0.8 < width / height <= 2.0
    assert [ax.get_ylabel() for ax in fig.axes] == ["$\\zeta$", "", "", "$\\zeta$", "", ""]
    assert fig.axes[0].get_shared_y_axes().joined(fig.axes[0], fig.axes[5])


def test_caterpillar_names_the_grouping_factor(plots):
    fig = plots["plot_random_effects"]
    assert fig._suptitle.get_text().startswith("Subject: predicted random effects")
    assert fig.axes[0].get_ylabel() == "Subject"
    assert [ax.get_title() for ax in fig.axes] == ["(Intercept)", "Days"]


def test_caterpillar_panels_share_one_order(sleepstudy, tmp_path):
    result = sleepstudy
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


@pytest.fixture(scope="module")
def penicillin():
    return fit_penicillin()


def test_caterpillar_of_crossed_factors(penicillin, tmp_path):
    fig = penicillin.plot_random_effects()
    fig.savefig(tmp_path / "crossed.png")
    plate, sample = fig.axes
    assert (plate.get_title(), sample.get_title()) == ("plate", "sample")
    assert len(plate.lines[0].get_xdata()) == 24 and len(sample.lines[0].get_xdata()) == 6
    assert sorted(t.get_text() for t in sample.get_yticklabels()) == list("ABCDEF")


def test_accepted_path_is_the_running_best():
    llf = np.array([-10.0, -5.0, -7.0, -4.0, -np.inf, -4.0, -3.0])
    assert accepted_path(llf).tolist() == [True, True, False, True, False, False, True]


def test_optimization_trace_has_every_evaluation_and_a_legend(result, tmp_path):
    fig = result.plot_optimization()
    fig.savefig(tmp_path / "trace.png")
    ax, right = fig.axes
    assert right.get_ylabel() == "|gradient|" and right.get_yscale() == "log"
    accepted, rejected = ax.lines[0], ax.lines[1]
    entries = result.optimization_log.entries
    assert len(accepted.get_xdata()) + len(rejected.get_xdata()) == len(entries)
    assert accepted.get_ydata()[-1] == pytest.approx(max(e.llf for e in entries))
    assert np.all(np.diff(accepted.get_ydata()) > 0)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["llf, accepted path", "llf, rejected trial points", "|gradient|"]
