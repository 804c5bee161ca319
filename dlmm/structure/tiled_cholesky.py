"""Scheduling a tiled Cholesky factorization, its solves and its inverse as tasks.

A symmetric positive definite matrix is given by the handles of the tiles of its
lower triangle (``tiles[i, j]``, ``i >= j``; a handle is whatever the runner's
``submit`` returns: a ``distributed`` future on a cluster, the value itself in
process). Every task is one kernel of :mod:`dlmm.kernels.dense_tiles` on at most
three tiles, so a task moves at most two tiles to the worker that runs it; the
tiles stay on the workers and only what the caller gathers (vectors, scalars)
comes back. The order of the tasks is right-looking (each tile column of the
factor updates the tiles right of it), the inverse ``W = L^{-1}`` column by column,
then ``A^{-1}`` tile by tile (:mod:`dlmm.kernels.dense_tiles` has the formulas).

Knows nothing of mixed models: the caller makes the tiles and contracts them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..kernels import dense_tiles as kt


class InlineRunner:
    """Runs each task at once, in process (for checks and small systems)."""

    def submit(self, func: Callable, *args: Any) -> Any:
        return func(*args)

    def scatter(self, value: Any) -> Any:
        return value

    def gather(self, handles: list) -> list:
        return list(handles)


class ClientRunner:
    """Submits each task to a Dask cluster; results stay on the workers.

    ``gather`` is the backend's (its waits are watched: :mod:`.faults`).
    """

    def __init__(self, client, gather: Callable[[list], list] | None = None):
        self.client = client
        self._gather = gather

    def submit(self, func: Callable, *args: Any) -> Any:
        return self.client.submit(func, *args, pure=False)

    def scatter(self, value: Any) -> Any:
        return self.client.scatter(value, hash=False)

    def gather(self, handles: list) -> list:
        if self._gather is not None:
            return self._gather(list(handles))
        return self.client.gather(list(handles))


def factor(runner, tiles: dict, n: int) -> dict:
    """Handles of the tiles ``L[i, j]`` (``i >= j``) of the Cholesky factor of the
    matrix whose lower tiles are ``tiles`` (consumed: the dict is emptied)."""
    low: dict = {}
    for k in range(n):
        low[k, k] = runner.submit(kt.potrf_tile, tiles.pop((k, k)))
        for i in range(k + 1, n):
            low[i, k] = runner.submit(kt.trsm_tile, tiles.pop((i, k)), low[k, k])
        for j in range(k + 1, n):
            for i in range(j, n):
                tiles[i, j] = runner.submit(kt.minus_product, tiles[i, j], low[i, k], low[j, k])
    return low


def logdet_parts(runner, low: dict, n: int) -> list:
    """Handles of each diagonal tile's share of ``log|A|`` (add them in this order)."""
    return [runner.submit(kt.tile_logdet, low[k, k]) for k in range(n)]


def logdet(runner, low: dict, n: int) -> float:
    """``log|A| = 2 sum log diag L`` (one scalar per diagonal tile gathered)."""
    return float(np.sum(runner.gather(logdet_parts(runner, low, n))))


def forward(runner, low: dict, n: int, u: list) -> list:
    """Handles of ``c = L^{-1} u`` by tile rows (``u``: the driver's pieces of the
    right-hand side, or handles)."""
    c: list = []
    for i in range(n):
        parts = [runner.submit(kt.tile_times, low[i, p], c[p]) for p in range(i)]
        c.append(runner.submit(kt.forward_tile, u[i], low[i, i], *parts))
    return c


def backward(runner, low: dict, n: int, c: list) -> list:
    """Handles of ``b = L^{-T} c`` by tile rows."""
    b: list = [None] * n
    for i in reversed(range(n)):
        parts = [runner.submit(kt.tile_times, low[p, i], b[p], True) for p in range(i + 1, n)]
        b[i] = runner.submit(kt.backward_tile, c[i], low[i, i], *parts)
    return b


def inverse(runner, low: dict, n: int) -> dict:
    """Handles of the tiles ``A^{-1}[i, j]`` (``i >= j``) from the factor's tiles; a
    diagonal tile is whole (symmetric).

    ``low`` is consumed (emptied once ``W = L^{-1}`` is submitted: submit the solves
    that need the factor before), and the tiles of ``A^{-1}`` are submitted only once
    ``W`` is done, so that the workers hold ``L`` and ``W``, then ``W`` and ``A^{-1}``,
    never the three (measured: 2.6 dense parts at the peak of a gradient without
    this wait, four tile rows).
    """
    w: dict = {}
    for k in range(n):
        w[k, k] = runner.submit(kt.inverse_diagonal_tile, low[k, k])
    for k in range(n):
        for i in range(k + 1, n):
            acc = runner.submit(kt.plus_triangular, None, low[i, k], w[k, k])  # W[K, K]: lower
            for p in range(k + 1, i):
                acc = runner.submit(kt.plus_product, acc, low[i, p], w[p, k])
            w[i, k] = runner.submit(kt.inverse_below_tile, w[i, i], acc)
    low.clear()  # the factor's tiles go once W (and the solves submitted before) are done
    runner.gather([runner.submit(kt.tile_ready, tile) for tile in w.values()])
    out: dict = {}
    for i in range(n):
        for j in range(i + 1):
            acc = runner.submit(kt.plus_triangular, None, w[i, j], w[i, i], True)  # W[I, I]'
            for p in range(i + 1, n):
                acc = runner.submit(kt.plus_product, acc, w[p, i], w[p, j], True)
            out[i, j] = acc
    return out
