"""In-process backend: a pandas DataFrame, no cluster.

The fastest choice for data that fits in memory: no serialization, no task
overhead. The frame is cut into row chunks of ``chunk_rows`` so that the
temporary arrays of the one pass stay bounded. :class:`DriverBackend` maps and
adds handles already gathered to the driver (a copy of small statistics).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd

from .base import Backend, sorted_levels


class _InProcessSteps:
    """Map, combine, shuffle and gather for handles that are the objects themselves
    (in this process): the steps both in-process backends share."""

    def map(self, func: Callable, handles: list[Any], *args) -> list[Any]:
        return [func(h, *args) for h in handles]

    def combine(self, groups, func):
        return [func(list(g)) for g in groups]

    def regroup(self, handles, n_out, split, build):
        pieces = [split(h, n_out) for h in handles]
        return [build([p[j] for p in pieces]) for j in range(n_out)]

    def gather(self, handles: list[Any]) -> list[Any]:
        return list(handles)


class LocalBackend(_InProcessSteps, Backend):
    """Runs every step in this process, over row chunks of a pandas frame."""

    name = "local"

    def __init__(self, frame: pd.DataFrame, chunk_rows: int = 1 << 20):
        self.frame = frame
        self.chunk_rows = max(int(chunk_rows), 1)

    @property
    def columns(self) -> list[str]:
        return [str(c) for c in self.frame.columns]

    def select(self, columns: list[str]) -> LocalBackend:
        return LocalBackend(self.frame[columns], self.chunk_rows)

    def sample(self, n_rows: int) -> pd.DataFrame:
        return self.frame.head(n_rows)

    def distinct(self, columns: list[str]) -> dict[str, list]:
        return {c: sorted_levels(c, self.frame[c].dropna().unique().tolist()) for c in columns}

    @property
    def n_chunks(self) -> int:
        return max(1, -(-len(self.frame) // self.chunk_rows))

    def map_chunks(self, func: Callable[[pd.DataFrame], Any],
                   progress: Callable[[int, int], None] | None = None) -> list[Any]:
        step = self.chunk_rows
        out = []
        for i in range(self.n_chunks):
            out.append(func(self.frame.iloc[i * step:(i + 1) * step]))
            if progress is not None:
                progress(i + 1, self.n_chunks)
        return out

    def to_frame(self, handles: list[Any], meta: pd.DataFrame) -> pd.DataFrame:
        frames = [h for h in handles if len(h)]
        return pd.concat(frames) if frames else meta

    def map_frame(self, func: Callable[..., Any], meta: Any, *shared: Any) -> Any:
        return func(self.frame, *shared)


class DriverBackend(_InProcessSteps, Backend):
    """Handles already brought to the driver (statistics gathered from the workers, see
    :meth:`dlmm.structure.base.RandomEffectsStatistics.on_driver`): maps and adds them
    in this process, in handle order, as :class:`LocalBackend` does. It has no rows:
    what needs the source data (a new pass, fitted values) stays with the backend
    the statistics came from."""

    name = "driver"

    def __init__(self, source: Backend):
        self.source_name = source.name

    def _no_rows(self, *_args, **_kwargs):
        raise RuntimeError(f"statistics copied from the {self.source_name!r} backend to the "
                           "driver have no rows; use the fit's own statistics")

    columns = property(_no_rows)
    select = sample = distinct = map_chunks = to_frame = map_frame = _no_rows
    n_chunks = property(_no_rows)
