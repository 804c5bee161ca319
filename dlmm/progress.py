"""A progress bar over the data pass, where someone is watching.

On a terminal the pass shows a rich progress bar (one step per partition). In
a Jupyter notebook it shows an HTML ``<progress>`` element in one IPython
display handle, updated in place: no ipywidgets needed (rich's live display
would ask for them, warning on every refresh). Elsewhere (a scheduler's log,
CI) the caller's fallback receives ``(done, total)`` instead, or nothing
happens.
"""

from __future__ import annotations

import contextlib
import html
import time
from collections.abc import Callable, Iterator

Progress = Callable[[int, int], None]


def interactive() -> bool:
    """Whether stderr is a terminal or the code runs in a Jupyter notebook."""
    from rich.console import Console

    console = Console(stderr=True)
    return bool(console.is_terminal or console.is_jupyter)


def in_notebook() -> bool:
    """Whether the code runs in a Jupyter notebook (rich's detection)."""
    from rich.console import Console

    return bool(Console(stderr=True).is_jupyter)


class HTMLBar:
    """One state of the notebook bar, displayed through its ``_repr_html_``."""

    def __init__(self, done: int, total: int | None, seconds: float, finished: bool = False):
        self.done, self.total, self.seconds, self.finished = done, total, seconds, finished

    def _repr_html_(self) -> str:
        of = "?" if self.total is None else str(self.total)
        text = (f"data pass: {self.done} partitions in {self.seconds:.1f} s" if self.finished
                else f"data pass: {self.done}/{of} partitions, {self.seconds:.1f} s")
        maximum = max(self.total or 1, 1)
        return (f"<div class='dlmm-progress'><progress value='{min(self.done, maximum)}' "
                f"max='{maximum}' style='width: 20em'></progress> "
                f"<span>{html.escape(text)}</span></div>")

    def __repr__(self) -> str:  # the plain-text fallback of a display
        return f"data pass: {self.done}/{'?' if self.total is None else self.total} partitions"


@contextlib.contextmanager
def notebook_progress(display=None) -> Iterator[Progress]:
    """A callback ``(done, total)`` that updates one HTML bar in the notebook.

    ``display`` is IPython's ``display`` (the default); it must return a handle
    with ``update`` when called with ``display_id=True``.
    """
    if display is None:
        from IPython.display import display
    start = time.perf_counter()
    handle = display(HTMLBar(0, None, 0.0), display_id=True)
    state = {"done": 0}

    def update(done: int, total: int) -> None:
        state["done"] = done
        handle.update(HTMLBar(done, total, time.perf_counter() - start))

    yield update
    handle.update(HTMLBar(state["done"], state["done"], time.perf_counter() - start,
                          finished=True))


@contextlib.contextmanager
def data_pass_progress(fallback: Progress | None = None) -> Iterator[Progress | None]:
    """A callback ``(done, total)`` for :meth:`dlmm.MixedLM.prepare`: an HTML bar in
    a notebook, a rich bar on a terminal, else ``fallback``."""
    if not interactive():
        yield fallback
        return
    if in_notebook():
        with notebook_progress() as update:
            yield update
        return
    from rich.progress import BarColumn, MofNCompleteColumn, TimeElapsedColumn
    from rich.progress import Progress as Bar

    with Bar("data pass", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
             transient=True) as bar:
        task = bar.add_task("partitions", total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def printing_evaluations(callback=None):
    """A callback that prints one line per optimizer evaluation on stderr (``step``,
    ``llf``, ``|grad|``, the stage), then calls ``callback`` (if any) with the entry."""
    import sys

    def print_entry(entry):
        print(f"step {entry.evaluation:4d}  llf {entry.llf:.8g}  "
              f"|grad| {entry.grad_norm:.3g}  [{entry.stage}]", file=sys.stderr)
        if callback is not None:
            callback(entry)

    return print_entry
