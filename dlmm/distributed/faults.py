"""Faults of a cluster, in words: what the Dask backend raises when the cluster fails.

A backend turns Dask's own failures (``KilledWorker``, paused workers that never
resume, ``FutureCancelledError`` after the scheduler went away) into these
exceptions, each with a one-line message that says what happened and what to
do; and the probes run on the workers and the scheduler for the sizes a memory
error names (:func:`_held_sizes`, :func:`_task_nbytes`). Nothing here knows about
mixed models.
"""

from __future__ import annotations

from ..exceptions import InputError


class ClusterError(RuntimeError):
    """The cluster failed the run (its message is one line, without Dask's traceback)."""


class SchedulerLost(ClusterError):
    """The connection to the Dask scheduler was lost while work was outstanding."""


class WorkersLost(ClusterError):
    """Workers died while running a task, for a reason other than their memory limit."""


class WorkerMemoryError(InputError, ClusterError):
    """A partition (or a task on it) does not fit the workers' memory limit, or
    (``partition=False``) the limit is below what a worker running dlmm needs whatever
    the partitions (its libraries alone exceed it).

    An :class:`~dlmm.InputError`: the remedy is in the input (more, smaller
    partitions) or the options (more memory per worker). ``fact`` says what did not
    fit; ``advice`` what to do (a command line names its own option)."""

    def __init__(self, fact: str, advice: str | None = None, partition: bool = True):
        if advice is None:
            advice = ("use more partitions or more memory per worker" if partition
                      else "give the workers more memory")
        super().__init__(f"{fact}; {advice}")
        self.fact, self.advice, self.partition = fact, advice, partition


def format_size(n_bytes: float | None) -> str:
    """``n_bytes`` as text such as ``32.0 MB`` or ``381.47 MiB`` (Dask's style)."""
    if n_bytes is None:
        return "unknown"
    from dask.utils import format_bytes

    return format_bytes(int(n_bytes))


def _held_sizes(keys: list | None, dask_worker=None) -> dict:
    """Rows and bytes of the results of ``keys`` (default: of the largest object with a
    length) held in this worker's memory."""
    from dask.sizeof import sizeof

    data = getattr(dask_worker, "data", {})
    fast = getattr(data, "fast", data)  # in memory, not spilled
    out = {}
    for key in list(fast) if keys is None else keys:
        if key in fast:
            value = fast[key]
            try:
                out[key] = (len(value), float(sizeof(value)))
            except TypeError:
                continue
    if keys is None and out:
        key = max(out, key=lambda k: out[k][1])
        return {key: out[key]}
    return out


def _task_nbytes(key, dask_scheduler=None) -> float | None:
    """The bytes of a task's result as its worker reported them (run on the scheduler)."""
    ts = dask_scheduler.tasks.get(key)
    nbytes = getattr(ts, "nbytes", -1) if ts is not None else -1
    return float(nbytes) if nbytes and nbytes > 0 else None
