"""Progress over the data pass: a bar where someone watches, the fallback elsewhere."""

from __future__ import annotations

import contextlib

import numpy as np

import dlmm
from dlmm import progress
from tests.simulate import grouped_data


def test_fallback_when_not_interactive(monkeypatch):
    monkeypatch.setattr(progress, "interactive", lambda: False)
    seen = []
    with progress.data_pass_progress(lambda d, t: seen.append((d, t))) as callback:
        callback(1, 2)
    assert seen == [(1, 2)]
    with progress.data_pass_progress() as callback:
        assert callback is None


def test_bar_when_interactive_counts_partitions(monkeypatch, capsys):
    monkeypatch.setattr(progress, "interactive", lambda: True)
    calls = []
    data = grouped_data(n_groups=30, per_group=5, re_cov=np.eye(1), seed=2)
    model = dlmm.mixedlm("y ~ x1", data, groups="g")
    with progress.data_pass_progress() as bar:
        assert callable(bar)

        def spy(done, total):
            calls.append((done, total))
            bar(done, total)

        model.prepare(progress=spy)
    assert calls == [(1, 1)]  # one in-process chunk
    assert model.nobs == 150


def test_fit_progress_prints_each_evaluation(capsys):
    data = grouped_data(n_groups=30, per_group=5, re_cov=np.eye(1), seed=2)
    result = dlmm.mixedlm("y ~ x1", data, groups="g").fit(progress=True)
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("step")]
    assert len(lines) == result.optimization_log.evaluations
    assert f"{result.optimization_log.entries[-1].llf:.8g}" in lines[-1]


class FakeHandle:
    def __init__(self, shown):
        self.shown = shown

    def update(self, obj):
        self.shown.append(obj._repr_html_())


def test_notebook_bar_needs_no_widgets(monkeypatch):
    import warnings

    shown = []

    def display(obj, display_id=False):
        assert display_id is True
        shown.append(obj._repr_html_())
        return FakeHandle(shown)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "install ipywidgets" warning, or any other
        with progress.notebook_progress(display) as update:
            update(1, 3)
            update(3, 3)
    assert len(shown) == 4  # one display, updated in place three times
    assert "<progress value='1' max='3'" in shown[1] and "1/3 partitions" in shown[1]
    assert "data pass: 3 partitions in" in shown[-1]


def test_data_pass_uses_the_notebook_bar_in_jupyter(monkeypatch):
    monkeypatch.setattr(progress, "interactive", lambda: True)
    monkeypatch.setattr(progress, "in_notebook", lambda: True)
    calls = []

    @contextlib.contextmanager
    def fake(display=None):
        calls.append("notebook")
        yield lambda done, total: calls.append((done, total))

    monkeypatch.setattr(progress, "notebook_progress", fake)
    data = grouped_data(n_groups=30, per_group=5, re_cov=np.eye(1), seed=2)
    dlmm.mixedlm("y ~ x1", data, groups="g").fit(progress=True)
    assert calls == ["notebook", (1, 1)]
