"""A map-reduce over persisted handles as one task per worker that holds them.

A step of the optimizer maps a kernel over every block and adds the results. As one
task per block (20 blocks at 10^8 rows), the scheduler and each worker handled 20 tasks
and 20 results a step; here each worker gets one task that maps the kernel over the
blocks it holds and returns their results as a list, and the driver adds them in the
handles' order, as :meth:`dlmm.distributed.base.Backend.map_sum` does: the same sum,
bit for bit, whatever the number of workers. Where each handle's result is comes from
the scheduler once per set of handles (:func:`group_by_holder`); a placement that has
changed since (a lost worker's blocks rebuilt elsewhere) only costs a transfer, as a
task may run on another worker than the one named.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .watch import _ask


def map_each(func: Callable, values: Sequence[Any], *args: Any) -> list[Any]:
    """``[func(v, *args) for v in values]``: one worker's share of a map, in one task."""
    return [func(v, *args) for v in values]


def group_by_holder(keys: Sequence[Any],
                    holders: Mapping[Any, Sequence[str]]) -> list[tuple[str | None, list[int]]]:
    """The positions of ``keys`` grouped by the first worker that holds each (``None``
    for a key no worker holds yet), groups in order of their first position."""
    groups: dict[str | None, list[int]] = {}
    for i, key in enumerate(keys):
        where = holders.get(key) or (None,)
        groups.setdefault(sorted(where)[0], []).append(i)
    return list(groups.items())


def in_handle_order(groups: Sequence[tuple[Any, Sequence[int]]],
                    lists: Sequence[Sequence[Any]], n: int) -> list[Any]:
    """The results of each group's task (:func:`map_each`) put back at their handles'
    positions."""
    out: list[Any] = [None] * n
    for (_, positions), values in zip(groups, lists):
        for i, value in zip(positions, values):
            out[i] = value
    return out


def who_holds(client, handles: Sequence[Any]) -> dict:
    """Where each handle's result is (one question to the scheduler; empty if it does
    not answer)."""
    keys = [h.key for h in handles if hasattr(h, "key")]
    if not keys:
        return {}
    try:
        return dict(_ask(client, "who_has", keys=keys))
    except Exception:  # noqa: BLE001 - a placement hint only
        return {}


def submit_by_worker(client, func: Callable, handles: Sequence[Any],
                     groups: Sequence[tuple[str | None, Sequence[int]]],
                     args: Sequence[Any]) -> list[Any]:
    """One :func:`map_each` task per group of :func:`group_by_holder`, on its worker
    (another may run it, as a hint); their futures."""
    return [client.submit(map_each, func, [handles[i] for i in positions], *args, pure=False,
                          **({"workers": [worker], "allow_other_workers": True}
                             if worker else {}))
            for worker, positions in groups]
