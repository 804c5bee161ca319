"""The Dask cluster of a run: its options, connecting and disconnecting, what it is."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from .errors import Terminated, UsageError, one_line
from .log import dask_worker_logging, event, logger

#: The options sizing an embedded cluster (``--workers`` and friends).
SIZING = ("workers", "threads_per_worker", "memory_limit")
#: The TLS options of a ``tls://`` scheduler: the CA, the client's certificate and key.
TLS = ("tls_ca_file", "tls_cert", "tls_key")
#: The cluster options of ``fit`` and ``predict``.
OPTIONS = ("scheduler", "scheduler_timeout", *SIZING, *TLS)


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
        ``scheduler`` (a running cluster) together with an option sizing an embedded one;
        a TLS option without a ``tls://`` scheduler, or naming a file that cannot be read.
    """
    out = {k: opts.get(k) for k in OPTIONS}
    sizing = [k for k in SIZING if out[k] is not None]
    if out["scheduler"] and sizing:
        raise UsageError(
            f"--scheduler connects to a running cluster; --{sizing[0].replace('_', '-')} "
            "sizes an embedded one: give one or the other"
        )
    tls = [k for k in TLS if out[k] is not None]
    if tls:
        flag = f"--{tls[0].replace('_', '-')}"
        address = out["scheduler"]
        if not address:
            raise UsageError(f"{flag} is for --scheduler tls://...; the embedded cluster "
                             "makes its own certificate")
        if "://" not in address:
            out["scheduler"] = address = f"tls://{address}"
        if not address.startswith("tls://"):
            raise UsageError(f"{flag} is for a tls:// scheduler, not {address!r}")
        for k in tls:
            path = os.path.expanduser(str(out[k]))
            if not os.path.isfile(path) or not os.access(path, os.R_OK):
                raise UsageError(f"--{k.replace('_', '-')} {str(out[k])!r}: no such "
                                 "readable file")
            out[k] = path
    return out


def security(opts: Mapping[str, Any]):
    """The ``distributed.security.Security`` of a connection to ``opts["scheduler"]``:
    Dask's own configuration (``distributed.comm.tls``: its config file or
    ``DASK_DISTRIBUTED__COMM__TLS__...`` variables) with the ``--tls-*`` options
    given on top; TLS required when any is given.

    Raises
    ------
    UsageError
        A ``tls://`` scheduler and no CA or certificate from either.
    """
    import dask
    from distributed.security import Security

    given = {"tls_ca_file": opts.get("tls_ca_file"),
             "tls_client_cert": opts.get("tls_cert"),
             "tls_client_key": opts.get("tls_key")}
    given = {k: v for k, v in given.items() if v is not None}
    if given:
        given["require_encryption"] = True
    sec = Security(**given)
    if str(opts.get("scheduler") or "").startswith("tls://"):
        missing = [flag for flag, field, key in (
            ("--tls-ca-file", "tls_ca_file", "distributed.comm.tls.ca-file"),
            ("--tls-cert", "tls_client_cert", "distributed.comm.tls.client.cert"))
            if not getattr(sec, field, None) and not dask.config.get(key, None)]
        if missing:
            raise UsageError(
                f"--scheduler {opts['scheduler']!r} speaks TLS: give {' and '.join(missing)}"
                " (and --tls-key unless the certificate file holds the key), or set Dask's "
                "distributed.comm.tls configuration")
    return sec


def cluster_info(client, kind: str, timeout: float = 30.0) -> dict[str, Any]:
    """``kind``, ``address``, ``workers``, ``threads`` and ``dashboard`` of a client's
    cluster, as far as the scheduler says within ``timeout`` seconds (informational
    only)."""
    info: dict[str, Any] = {"kind": kind}
    try:
        info["address"] = client.scheduler.address
        identity = client.sync(client.scheduler.identity, n_workers=-1,
                               callback_timeout=timeout)
        workers = identity.get("workers", {})
        info["workers"] = len(workers)
        info["threads"] = int(sum(w.get("nthreads", 0) for w in workers.values()))
    except Exception:  # informational only
        pass
    try:
        info["dashboard"] = client.dashboard_link
    except Exception:  # no dashboard service
        info["dashboard"] = None
    return info


def runs_in_process(opts: Mapping[str, Any], columns: list[str]) -> bool:
    """Whether ``dlmm fit`` fits in this process, with no cluster: no option asks for
    one (``--scheduler``, ``--workers``, ``--threads-per-worker``, ``--memory-limit``),
    no statistics cache, and the model's ``columns`` of local Parquet data are small
    (:func:`dlmm.distributed.sources.fits_in_process`), as ``dlmm.mixedlm`` decides
    without a client."""
    from ..distributed.sources import fits_in_process

    if opts.get("scheduler") or any(opts.get(k) is not None for k in SIZING):
        return False
    return opts.get("cache") is None and fits_in_process(opts["data"], columns)


@contextmanager
def in_process() -> Iterator[tuple[None, dict[str, Any]]]:
    """``with in_process() as (client, info):`` no cluster: ``client`` is None and
    ``info`` says so (``kind`` ``"none"``)."""
    yield None, {"kind": "none"}


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
        The scheduler cannot be reached, does not answer within ``scheduler_timeout``
        seconds (a stopped or hung scheduler, or a server that is not Dask), or what
        answers is not a Dask scheduler.
    """
    opts = {**opts, **cluster_options(opts)}  # checked, TLS files resolved
    if opts["scheduler"]:
        from distributed import Client

        address = opts["scheduler"]
        timeout = float(opts["scheduler_timeout"])
        sec = security(opts)
        event("cluster", "connecting to Dask scheduler %s", address, address=address)
        # Dask's client waits for the scheduler's handshake without a time limit: a
        # bounded question first, so that only a scheduler that answers gets a client.
        _check_scheduler(address, timeout, sec)
        try:
            client = Client(address, timeout=timeout, set_as_default=False, security=sec)
        except (OSError, TimeoutError, ValueError, TypeError) as exc:
            raise UsageError(
                f"--scheduler {address!r}: cannot connect within "
                f"{timeout:g} s ({one_line(str(exc)) or type(exc).__name__})"
            ) from None
        return client, cluster_info(client, "scheduler", timeout)
    from ..distributed.dask_backend import embedded_client

    event("cluster", "starting an embedded Dask cluster on 127.0.0.1 (TLS)")
    memory = opts["memory_limit"] if opts["memory_limit"] is not None else "auto"
    _workers_skip_the_command_script()
    start_method = _start_method(memory, opts["workers"], opts["threads_per_worker"])
    from . import head_start

    with dask_worker_logging(), _sigterm_deferred():
        # Forked workers load the one pass as they start (head_start, from their preload).
        head_start.arm(start_method == "fork")
        try:
            client = embedded_client(n_workers=opts["workers"],
                                     threads_per_worker=opts["threads_per_worker"],
                                     memory_limit=memory, start_method=start_method)
        finally:
            head_start.arm(False)
    return client, cluster_info(client, "embedded", opts["scheduler_timeout"] or 30.0)


#: The least memory limit of a worker that the embedded cluster's workers are forked
#: with: a forked worker begins with this process's memory (about 220 MB of modules,
#: counted in its own), which would pause a worker of a small limit before any task.
FORK_MIN_MEMORY = 1 << 30


def _start_method(memory: str | float, workers: int | None,
                  threads: int | None) -> str | None:
    """How the embedded cluster's workers start: forked on Linux when each may use
    :data:`FORK_MIN_MEMORY` or more (they begin with dlmm imported, 1.5-4 s sooner than
    spawned ones that import it as their first task arrives), else Dask's setting; a
    start method the user set for Dask (``DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD``
    or Dask's configuration) is always kept."""
    import logging
    import sys

    import dask

    if not sys.platform.startswith("linux") or \
            "DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD" in os.environ or \
            dask.config.get("distributed.worker.multiprocessing-method", "spawn") != "spawn":
        return None
    from distributed.worker_memory import parse_memory_limit

    threads = threads or 1
    quiet = logging.getLogger("dlmm.cli.cluster.memory")
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    try:
        limit = parse_memory_limit(memory, threads, (workers or os.cpu_count() or 1) * threads,
                                   logger=quiet)
    except (ValueError, TypeError):
        return None
    return "fork" if limit is None or limit >= FORK_MIN_MEMORY else None


def _check_scheduler(address: str, timeout: float, sec) -> None:
    """Ask what answers at ``address`` what it is (Dask's ``identity``), within ``timeout``
    seconds whatever the server does.

    The question runs in a thread of its own (with its own event loop) that the caller
    stops waiting for at the deadline: a server that accepts the connection and never
    answers (a scheduler under SIGSTOP) cannot hold the run.

    Raises
    ------
    UsageError
        Nothing accepts the connection, nothing answers, the answer is not Dask's
        protocol (an HTTP or SSH server), or a Dask server that is not a scheduler.
    """
    import asyncio

    from distributed.comm import connect, get_address_host_port, parse_address
    from distributed.comm.registry import get_backend

    try:
        scheme = parse_address(address)[0]
        get_backend(scheme)
        if scheme in ("tcp", "tls"):
            get_address_host_port(address)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"--scheduler {address!r}: not a Dask address "
                         f"({one_line(str(exc))})") from None
    box: dict[str, Any] = {}
    done = threading.Event()

    async def ask() -> None:
        try:
            comm = await connect(address, timeout=timeout, **sec.get_connection_args("client"))
            try:
                await comm.write({"op": "identity", "reply": True})
                box["answer"] = await comm.read()
            finally:
                comm.abort()
        except Exception as exc:  # noqa: BLE001 - said below, in the caller's thread
            box["error"] = exc

    async def bounded() -> None:
        try:
            await asyncio.wait_for(ask(), timeout)
        except asyncio.TimeoutError:
            box["error"] = TimeoutError()
        finally:
            done.set()  # before the loop closes (its executor may wait on a DNS lookup)

    threading.Thread(target=asyncio.run, args=(bounded(),), daemon=True,
                     name="dlmm-scheduler-check").start()
    if not done.wait(timeout + 5):
        box["error"] = TimeoutError()
    error, answer = box.get("error"), box.get("answer")
    if isinstance(error, asyncio.TimeoutError | TimeoutError):
        if _accepts_connections(address):
            raise UsageError(f"--scheduler {address!r}: connected, but no Dask scheduler "
                             f"answered within {timeout:g} s (a stopped or hung scheduler, "
                             "or another service)")
        raise UsageError(f"--scheduler {address!r}: cannot connect within {timeout:g} s")
    if isinstance(error, OSError | RuntimeError):  # refused, unreachable, TLS refused,
        # encryption required by Dask's configuration (Dask's words)
        raise UsageError(f"--scheduler {address!r}: cannot connect within {timeout:g} s "
                         f"({one_line(str(error)) or type(error).__name__})")
    if error is not None or not isinstance(answer, dict) or "type" not in answer:
        # e.g. an HTTP answer's first bytes read as a frame count: a MemoryError
        raise UsageError(f"--scheduler {address!r}: not a Dask scheduler (what it answered "
                         "is not Dask's protocol)")
    if answer["type"] != "Scheduler":
        raise UsageError(f"--scheduler {address!r}: a Dask {answer['type']}, not a "
                         "scheduler")


def _accepts_connections(address: str) -> bool:
    """Whether a TCP connection to ``address`` is accepted (within a second)."""
    import socket

    from distributed.comm import get_address_host_port

    try:
        host, port = get_address_host_port(address)
        with socket.create_connection((host, port), timeout=1):
            return True
    except (OSError, ValueError, TypeError):
        return False


def _workers_skip_the_command_script() -> None:
    """Spawned worker processes run the parent's main script again (as ``__mp_main__``)
    unless it was run as a module: the ``dlmm`` console script would import all of
    dlmm (statsmodels, scipy: about 160 MB) into every worker of the embedded cluster,
    which then exceeds a small ``--memory-limit`` before it runs any task. The command
    is ``python -m dlmm.cli``, so its main module is said to be that module, which
    spawned processes do not run again (as with ``python -m dlmm.cli`` itself)."""
    import importlib.util
    import sys

    main = sys.modules.get("__main__")
    if main is None or getattr(main, "__spec__", None) is not None:
        return
    # `from dlmm.cli import main` (the runner, already imported if it is the caller:
    # looked up, not imported, which would close an import cycle through config)
    runner = sys.modules.get("dlmm.cli.runner")
    if runner is None or getattr(main, "main", None) is not runner.main:
        return  # a program of its own that calls dlmm: its workers may need it
    main.__spec__ = importlib.util.find_spec("dlmm.cli.__main__")


@contextmanager
def _sigterm_deferred() -> Iterator[None]:
    """SIGTERM waits until the block is done (a cluster half started cannot be closed
    cleanly), then raises :class:`Terminated` as the runner's handler would."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    old = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)
    if received:
        raise Terminated()


def disconnect(client, kind: str, failed: bool = False) -> None:
    """Close a client from :func:`connect` (and the embedded cluster); never raises.
    ``failed``: the run is abandoned; Dask's logs about the closing are silenced."""
    import logging

    quiet = failed and logger.getEffectiveLevel() > logging.DEBUG  # --verbose: Dask's logs
    try:
        if kind == "embedded":
            from ..distributed.dask_backend import close_embedded

            close_embedded(quiet=quiet)
        else:
            if quiet:
                from ..distributed.dask_backend import _quiet_logging

                _quiet_logging()
            client.close(timeout=10)
    except BaseException as exc:  # noqa: BLE001 - closing must not hide the outcome
        logger.debug("closing the Dask client failed: %s", exc)


@contextmanager
def connected(opts: Mapping[str, Any]) -> Iterator[tuple[Any, dict[str, Any]]]:
    """``with connected(opts) as (client, info):`` :func:`connect`, then
    :func:`disconnect` however the block ends.

    Failures of the cluster in the block are said in dlmm's words: a lost scheduler,
    or one silent for ``scheduler_timeout`` seconds (Dask's ``dlmm.scheduler-timeout``
    in the block), is :class:`~dlmm.distributed.faults.SchedulerLost` (not Dask's
    cancelled futures, nor a hang), memory is
    :class:`~dlmm.distributed.faults.WorkerMemoryError` naming ``--memory-limit``."""
    import dask

    from ..distributed.faults import ClusterError, SchedulerLost, WorkerMemoryError

    timeout = opts.get("scheduler_timeout")
    config = {} if timeout is None else {"dlmm.scheduler-timeout": float(timeout)}
    with dask_worker_logging(), dask.config.set(config):  # also for restarted workers
        try:
            client, info = connect(opts)
        except BaseException:
            if not opts.get("scheduler"):
                disconnect(None, "embedded", failed=True)
            raise
        try:
            yield client, info
        except WorkerMemoryError as exc:
            disconnect(client, info["kind"], failed=True)
            embedded = info["kind"] == "embedded"
            if exc.partition:
                advice = ("use more partitions or --memory-limit" if embedded
                          else "use more partitions or workers with more memory")
            else:
                advice = ("give a larger --memory-limit" if embedded
                          else "give the workers more memory")
            raise WorkerMemoryError(exc.fact, advice, exc.partition) from None
        except ClusterError:
            disconnect(client, info["kind"], failed=True)
            raise
        except BaseException as exc:
            lost = getattr(client, "status", "running") not in ("running", "newly-created")
            disconnect(client, info["kind"], failed=True)
            if lost and isinstance(exc, Exception):
                address = info.get("address")
                raise SchedulerLost(
                    f"the connection to the Dask scheduler{f' at {address}' if address else ''}"
                    " was lost (it stopped, or the network failed); its work is gone: run "
                    "again when it is back") from exc
            raise
        else:
            disconnect(client, info["kind"])
