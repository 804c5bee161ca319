"""The embedded local cluster: dlmm's own Dask cluster, started once per process.

Started on first need (:func:`embedded_client`) when no client is given and none
is current (:func:`resolve_client`); its start is logged (``cluster start X s``)
and timed (:func:`embedded_start_seconds`, :func:`cluster_start_timer`); closed
at exit (:func:`close_embedded`, before ``distributed``'s own exit handlers).
Its client is never the default scheduler, so that a user's own Dask work never
lands on it unasked. Importing this module does not import ``distributed``.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from distributed import Client

logger = logging.getLogger("dlmm")

_EMBEDDED: dict[str, Any] = {}
#: Preloaded by the embedded workers, as a file (importing the dlmm package is slow).
_WORKER_SETUP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "worker_setup.py")
_LOCK = threading.Lock()
_CLOSE_AT_EXIT: list[bool] = []  # whether close_embedded is registered to run at exit


def _main_is_guarded() -> bool:
    """Whether worker processes can start from this program.

    Worker processes are spawned, and a spawned process imports the parent's
    main script again: a script without an ``if __name__ == "__main__":`` guard
    would run its fit again in every worker and fail. Interactive sessions,
    notebooks and ``python -c`` have no main file and are safe.
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if not path:
        return True
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            source = handle.read()
    except OSError:
        return True
    return re.search(r"__name__\s*==\s*['\"]__main__['\"]", source) is not None


#: Dask's monitoring for a dashboard, off or slower, as distributed's own tests have it
#: (``distributed.utils_test.config_for_cluster_tests``): no sampling of the task threads'
#: stacks every 10 ms in the worker's event loop (CPU taken from the tasks on a busy
#: machine, issue 27), no GIL monitor, the event-loop tick every 500 ms (not 20 ms), the
#: system monitor every 2 s (not 0.5 s). An idle two-worker cluster took 2.7-3.6 s of CPU
#: in 30 s, 0.7 s so. A worker's memory watch has its own interval, unchanged.
QUIET_MONITORING: dict[str, Any] = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.system-monitor.gil.enabled": False,
    "distributed.admin.tick.interval": "500ms",
    "distributed.admin.system-monitor.interval": "2s",
}


def embedded_client(
    n_workers: int | None = None,
    threads_per_worker: int | None = None,
    memory_limit: str | float | None = "auto",
    start_method: str | None = None,
) -> Client:
    """The process-wide embedded local cluster, started on first use.

    Worker processes (not threads): the one pass runs pandas and formulaic
    code that holds the GIL, so processes use every core. By default one
    single-threaded worker per core (at most 8), listening on 127.0.0.1 only.
    A script without an ``if __name__ == "__main__":`` guard cannot start
    worker processes (each would run the script again), so there the cluster
    runs one worker with a thread per core instead, and says so in the log.
    It is closed when the Python process exits.

    ``start_method``: how the worker processes start (``multiprocessing``'s
    ``"spawn"``, ``"fork"``, ``"forkserver"``; None: Dask's setting, ``"spawn"``). A
    spawned worker imports dlmm when its first task arrives (1.5-4 s of a 2-core
    machine's time before a fit's first chunk is read); a forked one starts with the
    modules of this process, already imported. The command line forks on Linux
    (:func:`dlmm.cli.cluster.connect`: a process of its own, whose threads at that
    point are Dask's); a program that calls dlmm keeps Dask's setting, as its threads
    are its own. Workers a nanny starts again later (after a worker died) start as
    Dask's setting says.
    """
    with _LOCK:
        client = _EMBEDDED.get("client")
        if client is not None and client.status == "running":
            return client
        cores = os.cpu_count() or 1
        processes = _main_is_guarded()
        if not processes:
            logger.warning(
                "dlmm: the embedded Dask cluster runs threads, not worker processes, because "
                "%s has no `if __name__ == \"__main__\":` guard; add one to use processes",
                getattr(sys.modules.get("__main__"), "__file__", "the main script"),
            )
            n_workers, threads_per_worker = 1, threads_per_worker or max(1, min(cores, 8))
        if n_workers is None:
            n_workers = max(1, min(cores, 8))
        if threads_per_worker is None:
            threads_per_worker = 1
        # The dashboard (with bokeh) or, without it, the HTTP server for health and
        # metrics: on loopback, on a free port.
        dashboard = "127.0.0.1:0"
        # Worker processes talk over TLS with a certificate made for this cluster
        # alone (in memory): another local user cannot send it code. Threads talk
        # in process (inproc://) and listen on no port but the dashboard's.
        network = ({"host": "127.0.0.1", "security": embedded_security(),
                    "preload": [_WORKER_SETUP]} if processes else {})
        # Ctrl-C is ignored while the cluster starts: a half-started cluster cannot be
        # closed cleanly, and the worker processes started meanwhile inherit the
        # ignoring (workers a nanny restarts later ignore it from worker_setup on). A
        # Ctrl-C in a terminal reaches every process of the group: the driver alone
        # acts on it, and closes the cluster.
        main = threading.current_thread() is threading.main_thread()
        old_sigint = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
        started = time.monotonic()
        try:
            import dask
            from distributed import Client

            from .expr_race import close_singleton_race
            from .restarting_cluster import RestartingLocalCluster

            close_singleton_race()  # its scheduler rebuilds graphs in this process
            # No work stealing: a step's task runs where its block is (a stolen one
            # would move the block, hundreds of MB, to save milliseconds), and the one
            # pass's reads are spread by dlmm itself (DaskBackend.map_chunks).
            config: dict[str, Any] = {"distributed.scheduler.work-stealing": False,
                                      **QUIET_MONITORING}
            if start_method is not None and processes:
                config["distributed.worker.multiprocessing-method"] = start_method
                # A forked worker would write again what this process's buffers hold.
                for stream in (sys.stdout, sys.stderr):
                    try:
                        stream.flush()
                    except (AttributeError, OSError, ValueError):
                        pass
            with dask.config.set(config), warnings.catch_warnings():
                # Python 3.12+ warns at every fork of a process with threads (here Dask's
                # own, whose state the workers do not use: they start their own loop).
                warnings.filterwarnings("ignore", category=DeprecationWarning,
                                        message=r".*use of fork\(\) may lead to deadlocks")
                cluster = RestartingLocalCluster(  # a killed worker is always replaced
                    n_workers=n_workers,
                    threads_per_worker=threads_per_worker,
                    processes=processes,
                    dashboard_address=dashboard,
                    memory_limit=memory_limit,
                    # LocalCluster sets Dask's log level to WARNING unless told; keep a
                    # quieter level that the caller (dlmm --quiet) has set.
                    silence_logs=max(logging.WARNING,
                                     logging.getLogger("distributed").getEffectiveLevel()),
                    **network,
                )
            client = Client(cluster, set_as_default=False)
            seconds = time.monotonic() - started
            _EMBEDDED.update(client=client, cluster=cluster, started=(started, seconds))
            if not _CLOSE_AT_EXIT:
                # Registered now, after distributed's own exit handlers (which close
                # every cluster), so that it runs before them: the client lets go of
                # its results before the workers go away (no "lost tasks" warnings).
                atexit.register(close_embedded)
                _CLOSE_AT_EXIT.append(True)
        finally:
            if main:
                signal.signal(signal.SIGINT, old_sigint)
        what = (f"{n_workers} worker process{'es' if n_workers != 1 else ''} (TLS)"
                if processes else f"threads ({threads_per_worker})")
        logger.info("cluster start %.2f s: an embedded Dask cluster of %s on 127.0.0.1",
                    seconds, what, extra={"fields": {
                        "event": "cluster_start", "seconds": round(seconds, 6),
                        "workers": n_workers, "processes": processes}})
        return client


def embedded_start_seconds(since: float) -> float:
    """Seconds the embedded cluster took to start if it was started after ``since``
    (a ``time.monotonic()`` value), else 0.0."""
    started = _EMBEDDED.get("started")
    return float(started[1]) if started is not None and started[0] >= since else 0.0


@contextmanager
def cluster_start_timer(owner: Any) -> Iterator[None]:
    """Sets ``owner.cluster_start`` to the seconds the embedded cluster took to start
    if it was started in the block (a model: what its fit waited for)."""
    since = time.monotonic()
    try:
        yield
    finally:
        seconds = embedded_start_seconds(since)
        if seconds:
            owner.cluster_start = seconds


def embedded_security():
    """A :class:`distributed.security.Security` for every role of the embedded cluster:
    one self-signed certificate and key made here, in memory, TLS required on every
    connection. As Dask's ``Security.temporary()``, with an elliptic-curve key (P-256)
    where Dask's is RSA 2048: the key took 0.1 s of CPU to make at every start, and each
    TLS handshake signs with it. Needs the ``cryptography`` package (a dependency of
    dlmm)."""
    import datetime

    from distributed.security import Security

    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        raise ImportError(
            "dlmm's embedded Dask cluster talks over TLS and needs the 'cryptography' "
            "package: pip install cryptography"
        ) from None
    key = ec.generate_private_key(ec.SECP256R1())
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dask-internal")])
    now = datetime.datetime.now(tz=datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("dask-internal")]),
                           critical=False)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=365))
            .sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    return Security(require_encryption=True, tls_ca_file=cert_pem,
                    **{f"tls_{role}_{part}": pem for role in ("client", "scheduler", "worker")
                       for part, pem in (("key", key_pem), ("cert", cert_pem))})


def _quiet_logging(dask_worker=None) -> None:
    """Silence Dask's logging in this process (run on the workers before an abort):
    ``distributed`` and the loggers below it that Dask's config gives a level of their
    own (``distributed.client``), and tornado's (errors in callbacks of connections
    that the closing cuts)."""
    names = ["distributed", "tornado",
             *(n for n in list(logging.root.manager.loggerDict)
               if n.startswith(("distributed.", "tornado.")))]
    for name in names:
        logging.getLogger(name).setLevel(logging.CRITICAL + 10)


#: How long an abandoned run waits for the workers to say their logging is silenced.
_QUIET_SECONDS = 10


def close_embedded(quiet: bool = False) -> None:
    """Stop the embedded cluster if one was started.

    ``quiet``: the run is being abandoned (an error, Ctrl-C): first silence Dask's
    logging on the workers and here, so that workers still busy with a task do not
    print tracebacks about the scheduler going away. The closing waits for every
    worker to say it is silent (a worker busy in a task on a loaded machine may take
    seconds), up to :data:`_QUIET_SECONDS`; a second Ctrl-C ends that wait."""
    with _LOCK:
        client = _EMBEDDED.pop("client", None)
        cluster = _EMBEDDED.pop("cluster", None)
        _EMBEDDED.pop("started", None)
    if quiet:
        _quiet_logging()  # here first: the scheduler and nannies log while we wait
    if quiet and client is not None:
        try:
            client.sync(client._run, _quiet_logging, on_error="ignore",
                        callback_timeout=_QUIET_SECONDS)
        except BaseException:  # noqa: BLE001 - best effort; closing goes on
            pass
    if client is not None:
        client.close(timeout=10)
    if cluster is not None:
        cluster.close(timeout=20)



def current_client() -> Client | None:
    """The user's current ``distributed`` client (the default one, or this worker's),
    or None; never starts the embedded cluster (which is never the default)."""
    if "distributed" not in sys.modules:  # no client can exist yet
        return None
    try:
        from distributed import get_client

        return get_client()
    except ValueError:
        return None


def is_embedded(client: Client | None) -> bool:
    """Whether ``client`` is the embedded cluster's (started by dlmm, not the user's)."""
    return client is not None and client is _EMBEDDED.get("client")


def resolve_client(client: Client | None) -> Client:
    """The client given, else the current one, else the embedded cluster's."""
    if client is not None:
        return client
    current = current_client()
    return current if current is not None else embedded_client()
