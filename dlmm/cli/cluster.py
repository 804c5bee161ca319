"""The Dask cluster of a run: its options, connecting and disconnecting, what it is."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from .errors import UsageError, one_line
from .log import dask_worker_logging, event, logger

#: The options sizing an embedded cluster (``--workers`` and friends).
SIZING = ("workers", "threads_per_worker", "memory_limit")
#: The cluster options of ``fit`` and ``predict``.
OPTIONS = ("scheduler", "scheduler_timeout", *SIZING)


def cluster_options(opts: Mapping[str, Any]) -> dict[str, Any]:
    """The cluster options of a run, checked.

    Parameters
    ----------
    opts : mapping
        The run's options (at least :data:`OPTIONS`; others are ignored).

    Returns
    -------
    dict
        :data:`OPTIONS` and their values.

    Raises
    ------
    UsageError
        ``scheduler`` (a running cluster) together with an option sizing an embedded one.
    """
    out = {k: opts[k] for k in OPTIONS}
    sizing = [k for k in SIZING if out[k] is not None]
    if out["scheduler"] and sizing:
        raise UsageError(
            f"--scheduler connects to a running cluster; --{sizing[0].replace('_', '-')} "
            "sizes an embedded one: give one or the other"
        )
    return out


def cluster_info(client, kind: str) -> dict[str, Any]:
    """``kind``, ``address``, ``workers``, ``threads`` and ``dashboard`` of a client's
    cluster, as far as they can be found out (informational only)."""
    info: dict[str, Any] = {"kind": kind}
    try:
        info["address"] = client.scheduler.address
        nthreads = client.nthreads()
        info["workers"] = len(nthreads)
        info["threads"] = int(sum(nthreads.values()))
    except Exception:  # informational only
        pass
    try:
        info["dashboard"] = client.dashboard_link
    except Exception:  # no dashboard service
        info["dashboard"] = None
    return info


def connect(opts: Mapping[str, Any]):
    """A ``distributed.Client`` for the run and a description of its cluster.

    Parameters
    ----------
    opts : mapping
        ``scheduler`` (an address to connect to, within ``scheduler_timeout``
        seconds) or the embedded cluster's ``workers``, ``threads_per_worker``,
        ``memory_limit``.

    Returns
    -------
    client : distributed.Client
    info : dict
        ``kind`` (``"scheduler"`` or ``"embedded"``), ``address``, ``workers``,
        ``threads``, ``dashboard``.

    Raises
    ------
    UsageError
        The scheduler cannot be reached.
    """
    if opts["scheduler"]:
        from distributed import Client

        address = opts["scheduler"]
        event("cluster", "connecting to Dask scheduler %s", address, address=address)
        try:
            client = Client(address, timeout=opts["scheduler_timeout"], set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise UsageError(
                f"--scheduler {address!r}: cannot connect within "
                f"{opts['scheduler_timeout']:g} s ({one_line(str(exc)) or type(exc).__name__})"
            ) from None
        return client, cluster_info(client, "scheduler")
    from ..distributed.dask_backend import embedded_client

    event("cluster", "starting an embedded Dask cluster on 127.0.0.1")
    memory = opts["memory_limit"] if opts["memory_limit"] is not None else "auto"
    with dask_worker_logging():
        client = embedded_client(n_workers=opts["workers"],
                                 threads_per_worker=opts["threads_per_worker"],
                                 memory_limit=memory)
    return client, cluster_info(client, "embedded")


def disconnect(client, kind: str) -> None:
    """Close a client from :func:`connect` (and the embedded cluster); never raises."""
    try:
        if kind == "embedded":
            from ..distributed.dask_backend import close_embedded

            close_embedded()
        else:
            client.close()
    except Exception as exc:  # closing must not hide the run's outcome
        logger.debug("closing the Dask client failed: %s", exc)


@contextmanager
def connected(opts: Mapping[str, Any]) -> Iterator[tuple[Any, dict[str, Any]]]:
    """``with connected(opts) as (client, info):`` :func:`connect`, then
    :func:`disconnect` however the block ends."""
    client, info = connect(opts)
    try:
        yield client, info
    finally:
        disconnect(client, info["kind"])
