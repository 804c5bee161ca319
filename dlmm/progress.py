"""A progress bar over the data pass, where someone is watching.

On a terminal or in a notebook the pass shows a rich progress bar (one step
per partition); elsewhere (a scheduler's log, CI) the caller's fallback
receives ``(done, total)`` instead, or nothing happens.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

Progress = Callable[[int, int], None]


def interactive() -> bool:
    """Whether stderr is a terminal or the code runs in a Jupyter notebook."""
    from rich.console import Console

    console = Console(stderr=True)
    return bool(console.is_terminal or console.is_jupyter)


@contextlib.contextmanager
def data_pass_progress(fallback: Progress | None = None) -> Iterator[Progress | None]:
    """A callback ``(done, total)`` for :meth:`dlmm.MixedLM.prepare`: a rich bar
    when :func:`interactive`, else ``fallback``."""
    if not interactive():
        yield fallback
        return
    from rich.progress import BarColumn, MofNCompleteColumn, TimeElapsedColumn
    from rich.progress import Progress as Bar

    with Bar("data pass", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
             transient=True) as bar:
        task = bar.add_task("partitions", total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update
