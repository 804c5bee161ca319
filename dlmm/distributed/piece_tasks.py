"""How the one pass's Parquet pieces become tasks: a run of consecutive pieces per worker,
several pieces a task, the run's tail left to whichever worker is idle.

Each task costs its worker and the scheduler a few milliseconds of CPU besides its
pieces (its messages over TLS, the worker's event loop: about 0.2-0.25 s of each
worker's event loop and 0.5 s of the driver's, scheduler included, in a pass of 50
tasks a worker on the 2-core machine, where every core is busy and that time is
taken from the reads). So a worker's own run is read :data:`TASK_PIECES` pieces a
task when the caller can merge the results of consecutive pieces, and what follows
the pieces (:meth:`~dlmm.distributed.dask_backend.DaskBackend.map_chunks_then`) is
one task per run rather than one per chunk (:func:`dlmm.distributed.base.then_list`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

#: A worker's run of this many Parquet pieces or more is read several pieces a task
#: (:data:`TASK_PIECES`), given a ``merge``.
PAIR_MIN_PIECES = 16

#: Pieces a task of a worker's own run reads (given a ``merge``): about 0.1 s of a
#: core for pieces of 10^6 rows, so that the pass's progress still moves often.
TASK_PIECES = 4

#: The part of each worker's run of Parquet pieces asked of no worker in particular:
#: the scheduler gives those pieces, one a task, in order, to the first worker idle (a
#: worker slower than the other, sharing the cores, left it idle 0.1-1 s). Small: a
#: chunk read by the other worker moves to its block's worker at the end.
FREE_TAIL = 0.1


@dataclass(frozen=True)
class PiecePlan:
    """The tasks of the one pass over ``n`` pieces.

    Attributes
    ----------
    own : list of (worker, list of list of int)
        Per worker (None: any), the pieces of each of its tasks, in order.
    free : list of list of int
        The pieces of the tasks asked of no worker, in order.
    """

    own: list[tuple[Any, list[list[int]]]]
    free: list[list[int]]

    @property
    def tasks(self) -> list[list[int]]:
        """Every task's pieces, in the pieces' order."""
        return sorted([t for _, tasks in self.own for t in tasks] + self.free,
                      key=lambda t: t[0])


def plan_pieces(n: int, workers: list[Any], merged: bool) -> PiecePlan:
    """Piece ``j`` of ``n`` goes to worker ``j * len(workers) // n`` (runs of consecutive
    pieces); the last :data:`FREE_TAIL` of each run to no worker in particular, a piece a
    task; with ``merged`` (results of consecutive pieces can be merged), a run of
    :data:`PAIR_MIN_PIECES` or more is read :data:`TASK_PIECES` pieces a task."""
    if len(workers) > 1:
        runs = [(w, [j for j in range(n) if j * len(workers) // n == i])
                for i, w in enumerate(workers)]
    else:
        runs = [(None, list(range(n)))]
    own: list[tuple[Any, list[list[int]]]] = []
    tails: list[list[int]] = []
    for i, (worker, run) in enumerate(runs):
        tail = int(len(run) * FREE_TAIL) if worker is not None else 0
        mine = run[:len(run) - tail]
        size = TASK_PIECES if merged and len(run) >= PAIR_MIN_PIECES else 1
        own.append((worker, [mine[i:i + size] for i in range(0, len(mine), size)]))
        tails.append(run[len(run) - tail:][::-1 if i % 2 else 1])
    # Asked in turns, every other run's tail from its end: two workers done at once take
    # their own tails (the first takes the first run's head, the second the second run's
    # end, and so on), and one done early reads the other's tail from the end that does
    # not meet the other's own pieces: a piece read by the other worker (to be moved to
    # its block's worker at the end) is one of a run at one end of a tail, not any.
    free = [[j] for turn in itertools.zip_longest(*tails) for j in turn if j is not None]
    return PiecePlan(own, free)
