"""What a backend does: map functions over chunks and blocks, and add results.

A backend never looks inside what it maps: chunk functions, split functions
and block builders come from the caller, and results are combined only with
``+`` (in a fixed order, so that the sum does not depend on timing).
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from ..exceptions import InputError


def sorted_levels(column: str, values: list) -> list:
    """The distinct values of a column, sorted; an :class:`InputError` naming the column
    when they do not sort (text mixed with numbers, for example)."""
    try:
        return sorted(values)
    except TypeError:
        kinds = sorted({type(v).__name__ for v in values})
        examples = {type(v).__name__: v for v in values}
        shown = ", ".join(f"{examples[k]!r} ({k})" for k in kinds[:3])
        raise InputError(f"column {column!r} mixes values of types {', '.join(kinds)} "
                         f"(e.g. {shown}); make it one type") from None


def then_list(then: Callable, *results: Any) -> list[Any]:
    """``[then(r) for r in results]``: what follows several chunks, in one task
    (:meth:`Backend.map_chunks_then`)."""
    return [then(r) for r in results]


def ordered_sum(values: Sequence[Any]) -> Any:
    """``values[0] + values[1] + ...`` left to right; ``0`` for no values."""
    total = 0
    for v in values:
        total = total + v
    return total


class Backend(ABC):
    """Runs the fit's map and reduce steps, in process or on a cluster."""

    name: str = "backend"

    # -- the source data ------------------------------------------------------

    @property
    @abstractmethod
    def columns(self) -> list[str]:
        """Column names of the source data."""

    @abstractmethod
    def select(self, columns: list[str]) -> Backend:
        """The same data restricted to ``columns`` (only those are read)."""

    @abstractmethod
    def sample(self, n_rows: int) -> pd.DataFrame:
        """The first rows of the data (at most ``n_rows``), as pandas."""

    @abstractmethod
    def distinct(self, columns: list[str]) -> dict[str, list]:
        """Sorted distinct non-missing values of each column over all the data."""

    @property
    @abstractmethod
    def n_chunks(self) -> int:
        """Number of chunks (partitions) of the source data."""

    # -- the one pass and the blocks -------------------------------------------

    @abstractmethod
    def map_chunks(self, func: Callable[[pd.DataFrame], Any],
                   progress: Callable[[int, int], None] | None = None) -> list[Any]:
        """Apply ``func`` to every chunk; return handles (kept where computed).

        ``progress(done, total)`` is called as chunks finish (then the call
        returns once all are done)."""

    def map_chunks_then(self, func: Callable[[pd.DataFrame], Any], then: Callable,
                        progress: Callable[[int, int], None] | None = None,
                        merge: Callable[[list[Any]], Any] | None = None
                        ) -> tuple[list[Any], list[Any]]:
        """:meth:`map_chunks`, and ``then(h)`` for each of its handles: the chunks' handles,
        and handles of lists whose concatenation, in order, is ``then`` of each chunk in
        order (a backend may apply ``then`` to a run of chunks in one task). On a cluster
        each ``then`` runs as soon as its chunks are done, beside the chunks still read
        (not after the last one: a round trip less at the end). ``merge`` makes one
        result of the results of consecutive chunks: a backend may then apply ``func``
        to several chunks in one task, with one handle for them."""
        chunks = self.map_chunks(func, progress)
        return chunks, self.map(functools.partial(then_list, then), chunks)

    @abstractmethod
    def map(self, func: Callable, handles: list[Any], *args) -> list[Any]:
        """``func(h, *args)`` for every handle; new handles, kept where computed."""

    @property
    def parallelism(self) -> int:
        """How many tasks run at once (threads over all workers)."""
        return 1

    @abstractmethod
    def combine(self, groups: list[list[Any]], func: Callable[[list[Any]], Any]) -> list[Any]:
        """``func(results of group j)`` for each group of handles; the outputs are
        spread evenly over the workers."""

    @abstractmethod
    def regroup(
        self,
        handles: list[Any],
        n_out: int,
        split: Callable[[Any, int], list[Any]],
        build: Callable[[list[Any]], Any],
    ) -> list[Any]:
        """Shuffle: ``split(h, n_out)`` each handle; block j = ``build`` of every piece j,
        the blocks spread evenly over the workers."""

    def wait(self, handles: list[Any]) -> None:  # noqa: B027 - results here are values
        """Return when every handle's result is computed (raising a task's error)."""

    @abstractmethod
    def gather(self, handles: list[Any]) -> list[Any]:
        """Bring results to the driver, in the order of ``handles``."""

    @abstractmethod
    def to_frame(self, handles: list[Any], meta: pd.DataFrame) -> Any:
        """Handles of pandas frames as one frame: pandas here, lazy Dask on a cluster."""

    @abstractmethod
    def map_frame(self, func: Callable[..., Any], meta: Any, *shared: Any) -> Any:
        """``func(chunk, *shared)`` on every chunk of the source, as one pandas or lazy
        Dask object; ``shared`` objects are sent to each worker once, not per chunk."""

    def map_sum(self, func: Callable, handles: list[Any], *args) -> Any:
        """``func(h, *args)`` for every handle, added in handle order: one round trip."""
        return ordered_sum(self.gather(self.map(func, handles, *args)))

    def release(self, handles: list[Any]) -> None:  # noqa: B027 - optional hook
        """Forget handles that are no longer needed."""

    @property
    def dashboard_link(self) -> str | None:
        return None
