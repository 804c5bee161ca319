"""Dask backend: chunks are the partitions of a Dask DataFrame on a cluster.

Local Parquet input read by ``dask.dataframe.read_parquet`` is read by the one pass's
own tasks instead, one per piece of Dask's plan (:mod:`.parquet_pieces`), spread over
the workers in runs of consecutive pieces (:meth:`DaskBackend.map_chunks`); what is
built from them is built where they are (:meth:`DaskBackend.combine`).

Every result stays on the worker that computed it, as a ``distributed``
future; what the driver receives per optimizer step is one small object per
block. Futures keep their lineage, so a lost worker's results are recomputed
from the source data by the scheduler.

Which cluster: the ``client`` given, else the current ``distributed`` client
(``distributed.get_client()``), else an embedded local cluster started once per
process (:mod:`dlmm.distributed.embedded`), found when the backend first needs one.

Lazy results (Dask collections handed to the user: effects tables, fitted values,
predictions) are computed by whatever scheduler is current when the user calls
``.compute()``. On a client of the user's they may refer to that client's futures,
as ``client.persist`` results do. The embedded cluster is dlmm's own and never
the default scheduler, so lazy results of a fit on it carry their data instead
(:attr:`DaskBackend.self_contained`): any scheduler computes them, in a script or
a notebook, with or without a client of the user's, before or after one is
started or closed.

Waiting is watched (:meth:`DaskBackend.gather`): a worker killed for memory
(also a limit below what a worker running dlmm needs, whatever the partitions),
workers paused at their memory limit, or none left after memory restarts, with no
progress for ``dask.config.get("dlmm.paused-timeout")`` seconds (default 60), a
lost scheduler, or one that has not answered for
``dask.config.get("dlmm.scheduler-timeout")`` seconds (default 30; a stopped
scheduler) end the wait with an exception of :mod:`dlmm.distributed.faults`
instead of Dask's ``KilledWorker``, a hang, or ``FutureCancelledError``.
"""

from __future__ import annotations

import functools
import logging
import operator
import time
import uuid
from collections.abc import Callable
from typing import Any

import dask
import dask.dataframe as dd
import pandas as pd
from distributed import Client

from .base import Backend, sorted_levels, then_list
from .embedded import (  # noqa: F401 - the embedded cluster's names, here as before
    _EMBEDDED,
    _quiet_logging,
    close_embedded,
    current_client,
    embedded_client,
    embedded_security,
    embedded_start_seconds,
    is_embedded,
    resolve_client,
)
from .expr_race import close_singleton_race
from .faults import (
    SchedulerLost,
    WorkerMemoryError,
    WorkersLost,
    _held_sizes,
    _task_nbytes,
    format_size,
)
from .parquet_pieces import parquet_pieces, piece_facts, sample_pieces
from .piece_tasks import plan_pieces
from .watch import _POLL_SECONDS, _ask, _scheduler_timeout, _Watch

close_singleton_race()  # a scheduler in this process rebuilds graphs beside the client

logger = logging.getLogger("dlmm")


def _empty_like(frame):
    return frame.iloc[:0]


def _run_chunk(func: Callable, token: str, index: int, chunk: Any) -> Any:
    """``func(chunk)``, first telling the scheduler the chunk's rows and bytes (a
    ``dlmm-chunk`` event, sent and acknowledged before ``func`` runs): if the
    chunk's worker then dies, the driver knows how large the chunk was."""
    try:
        from dask.sizeof import sizeof
        from distributed import get_worker
        from distributed.utils import sync

        worker = get_worker()
        msg = {"token": token, "index": index, "rows": len(chunk), "bytes": sizeof(chunk),
               "memory_limit": getattr(worker.memory_manager, "memory_limit", None)}
        sync(worker.loop, worker.scheduler.log_event, topic="dlmm-chunk", msg=msg,
             callback_timeout=10)
    except Exception:  # noqa: BLE001 - not on a worker, or no length: informational
        pass
    return func(chunk)


def _run_piece(func: Callable, piece, columns: list[str], strings: bool) -> Any:
    """``func`` of the rows of a Parquet piece, read here (:mod:`.parquet_pieces`)."""
    from .parquet_pieces import read_piece

    return func(read_piece(piece, columns, strings))


def _run_pieces(func: Callable, merge: Callable, pieces: list, columns: list[str],
                strings: bool) -> Any:
    """``merge`` of ``func`` of each piece's rows, read one piece after the other."""
    from .parquet_pieces import read_piece

    return merge([func(read_piece(piece, columns, strings)) for piece in pieces])


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


class DaskBackend(Backend):
    """Runs the fit on a ``distributed`` cluster over a Dask DataFrame."""

    name = "dask"

    def __init__(self, frame: dd.DataFrame, client: Client | None = None):
        self.frame = frame
        self._client = client

    @property
    def client(self) -> Client:
        """The cluster's client, found on first use (:func:`resolve_client`): a backend
        that only builds lazy collections (predictions) starts no cluster."""
        if self._client is None:
            self._client = resolve_client(None)
        if self._client.status in ("closing", "closed"):
            raise SchedulerLost(
                "the Dask client this fit ran on is closed (by its owner, or after its "
                "scheduler was lost), and what its cluster held (the fit's statistics, its "
                "random effects) went with it: ask for results while it is open "
                "(result.save() keeps them)")
        return self._client

    @property
    def self_contained(self) -> bool:
        """Whether lazy results must carry their data rather than refer to futures:
        when the work runs on the embedded cluster (dlmm's own, which no scheduler
        the user computes with can reach), or on no cluster yet (no client given,
        none current)."""
        client = self._client if self._client is not None else current_client()
        return client is None or is_embedded(client)

    @property
    def columns(self) -> list[str]:
        return [str(c) for c in self.frame.columns]

    def select(self, columns: list[str]) -> DaskBackend:
        return DaskBackend(self.frame[columns], self._client)

    def sample(self, n_rows: int) -> pd.DataFrame:
        # The first n_rows rows, however few each partition holds: the sample sets
        # what is learned from it (centring shifts, start values), so it must not
        # depend on how the rows are partitioned.
        pieces = parquet_pieces(self.frame)
        if pieces is not None:  # the first rows of local files: read here
            try:
                return sample_pieces(pieces, n_rows)
            except OSError:
                pass  # not readable from here: the workers read them
        parts = self.frame.npartitions
        k = 1
        while True:
            lazy = self.frame.partitions[:k].map_partitions(lambda d: d.head(n_rows))
            future = self.client.compute(lazy)
            self._await([future])
            frame = future.result().head(n_rows)
            if len(frame) >= n_rows or k == parts:
                return frame
            k = min(parts, 2 * k)

    def distinct(self, columns: list[str]) -> dict[str, list]:
        if not columns:
            return {}
        lazy = [self.frame[c].dropna().drop_duplicates(split_out=1) for c in columns]
        values = self.gather(self.client.compute(lazy))
        return {c: sorted_levels(c, pd.Series(v).tolist()) for c, v in zip(columns, values)}

    @property
    def n_chunks(self) -> int:
        return self.frame.npartitions

    def map_chunks(self, func: Callable[[pd.DataFrame], Any],
                   progress: Callable[[int, int], None] | None = None,
                   merge: Callable[[list[Any]], Any] | None = None) -> list[Any]:
        """:meth:`Backend.map_chunks`; given ``merge`` (see :meth:`map_chunks_then`), long
        runs of Parquet pieces several a task (:mod:`.piece_tasks`); progress in pieces."""
        token = uuid.uuid4().hex[:12]
        pieces = parquet_pieces(self.frame)
        if pieces is not None:
            futures = self._map_pieces(func, pieces, token, merge)
        else:
            futures = self._map_partitions(func, token)
        if progress is not None:
            self._await(futures, progress, self._chunks.get("sizes"))
        return futures

    def map_chunks_then(self, func: Callable[[pd.DataFrame], Any], then: Callable,
                        progress: Callable[[int, int], None] | None = None,
                        merge: Callable[[list[Any]], Any] | None = None
                        ) -> tuple[list[Any], list[Any]]:
        """:meth:`Backend.map_chunks_then`: ``then`` of a worker's own run of Parquet pieces
        in one task, where the run is (:mod:`.piece_tasks`), of every other chunk in a
        task of its own, ahead of the chunks still queued (a priority above theirs), so
        that the results wait for no round trip."""
        chunks = self.map_chunks(func, merge=merge)  # submitted, not waited for
        runs = self._chunks.get("runs") or [(None, [j]) for j in range(len(chunks))]
        after: list[Any] = [None] * len(runs)
        alone = [i for i, (worker, js) in enumerate(runs) if worker is None and len(js) == 1]
        for i, (worker, js) in enumerate(runs):
            if i not in alone:  # a run (of one worker, or the only one): a task for all
                hint = {"workers": [worker], "allow_other_workers": True} if worker else {}
                after[i] = self.client.submit(then_list, then, *[chunks[j] for j in js],
                                              pure=False, priority=1, **hint)
        for i, f in zip(alone, self.client.map(then_list, [then] * len(alone),
                                               [chunks[runs[i][1][0]] for i in alone],
                                               pure=False, priority=1)):
            after[i] = f
        if progress is not None:
            self._await(chunks, progress, self._chunks.get("sizes"))
        return chunks, after

    def _map_pieces(self, func: Callable, pieces, token: str,
                    merge: Callable | None = None) -> list[Any]:
        """One task per piece (or, with ``merge``, a few consecutive pieces) of local
        Parquet input that reads it and applies ``func`` (no task of Dask's reader, no
        copy of the rows between tasks), spread as :func:`.piece_tasks.plan_pieces`
        says: each worker reads a run of consecutive pieces, so that blocks built from
        runs of chunks find theirs where they are; the run's tail goes to whichever
        worker has run out of its own. Each worker's run goes to the scheduler as one
        message (``Client.map``): a submit per piece took 3 ms of the driver each, and
        the last worker's first piece waited for the runs before it. A task's key
        names its first piece."""
        plan = plan_pieces(len(pieces.pieces), self._workers(), merge is not None)
        keys = {t[0]: f"dlmm-chunk-{token}-{t[0]}" for t in plan.tasks}
        futures: list[Any] = []
        for worker, tasks in plan.own + [(None, plan.free)]:
            hint = {"workers": [worker], "allow_other_workers": True} if worker else {}
            for size in sorted({len(t) for t in tasks}):
                some = [t for t in tasks if len(t) == size]
                args = ([_run_piece, [func] * len(some)] if size == 1 else
                        [_run_pieces, [func] * len(some), [merge] * len(some)]) + [
                    [pieces.pieces[t[0]] if size == 1 else [pieces.pieces[j] for j in t]
                     for t in some], [pieces.columns] * len(some), [pieces.strings] * len(some)]
                futures += self.client.map(*args, pure=False, key=[keys[t[0]] for t in some],
                                           **hint)
        futures.sort(key=lambda f: int(f.key.rsplit("-", 1)[1]))  # in the pieces' order
        position = {t[0]: j for j, t in enumerate(plan.tasks)}
        runs = [(w, [position[t[0]] for t in tasks]) for w, tasks in plan.own if tasks] + \
            [(None, [position[t[0]]]) for t in plan.free]
        self._chunks = {"token": token, "futures": {f.key: int(f.key.rsplit("-", 1)[1])
                                                    for f in futures},
                        "parts": [], "pieces": pieces.pieces,
                        "sizes": {keys[t[0]]: len(t) for t in plan.tasks},
                        "runs": sorted(runs, key=lambda r: r[1][0])}
        return futures

    def _map_partitions(self, func: Callable, token: str) -> list[Any]:
        parts = self.frame.to_delayed()
        tasks = [dask.delayed(functools.partial(_run_chunk, func, token, j), pure=False)(
                     p, dask_key_name=f"dlmm-chunk-{token}-{j}")
                 for j, p in enumerate(parts)]
        futures = self.client.compute(tasks)
        self._chunks = {"token": token, "futures": {f.key: j for j, f in enumerate(futures)},
                        "parts": [p.key for p in parts]}
        return futures

    def map(self, func: Callable, handles: list[Any], *args) -> list[Any]:
        if not handles:
            return []
        # One message for all tasks; each runs where its input is.
        return self.client.map(func, handles, *[[a] * len(handles) for a in args], pure=False)

    def _workers(self) -> list[str]:
        return sorted(self.client.scheduler_info(n_workers=-1)["workers"])

    @property
    def parallelism(self) -> int:
        info = self.client.scheduler_info(n_workers=-1)["workers"]
        return max(1, sum(int(w.get("nthreads", 1)) for w in info.values()))

    def _spread(self, j: int, workers: list[str]) -> dict:
        # A placement hint, not a pin: a lost worker's blocks may be rebuilt elsewhere.
        if not workers:
            return {}
        return {"workers": [workers[j % len(workers)]], "allow_other_workers": True}

    def _holders(self, handles: list[Any]) -> dict:
        """Where each handle's result is (one question to the scheduler; empty if it
        does not answer)."""
        keys = [h.key for h in handles if hasattr(h, "key")]
        if not keys:
            return {}
        try:
            return dict(_ask(self.client, "who_has", keys=keys))
        except Exception:  # noqa: BLE001 - a placement hint only
            return {}

    def combine(self, groups, func):
        # Each output where most of its inputs are (none moves when a run of chunks was
        # read on one worker), at most its share of the outputs on a worker (the steps
        # map over them), else spread evenly; one message per worker (Client.map).
        workers = self._workers()
        holders = self._holders([h for g in groups for h in g])
        where: dict[Any, list[int]] = {}
        share = -(-len(groups) // max(len(workers), 1))
        for j, g in enumerate(groups):
            counts: dict[str, int] = dict.fromkeys(workers, 0)
            for h in g:
                for address in holders.get(getattr(h, "key", None), ()):
                    counts[address] = counts.get(address, 0) + 1
            room = [w for w in sorted(counts) if len(where.get(w, ())) < share]
            where.setdefault(max(room, key=counts.__getitem__) if room and any(counts.values())
                             else workers[j % len(workers)] if workers else None, []).append(j)
        out: list[Any] = [None] * len(groups)
        for worker, js in where.items():
            hint = {"workers": [worker], "allow_other_workers": True} if worker else {}
            for j, f in zip(js, self.client.map(func, [list(groups[j]) for j in js],
                                                pure=False, **hint)):
                out[j] = f
        return out

    def regroup(self, handles, n_out, split, build):
        splits = self.client.map(split, handles, [n_out] * len(handles), pure=False)
        workers = self._workers()
        out = []
        for j in range(n_out):
            pieces = [self.client.submit(operator.getitem, s, j, pure=False) for s in splits]
            out.append(self.client.submit(build, pieces, pure=False,
                                          **self._spread(j, workers)))
        return out

    def to_frame(self, handles: list[Any], meta: pd.DataFrame):
        if self.self_contained:
            # Tables of the embedded cluster (one row per group or effect) are brought
            # here, one piece per handle, and handed out over pandas: no future of a
            # cluster the user cannot compute on is left in the graph.
            frames = [f for f in self.gather(handles) if len(f)]
            table = pd.concat(frames) if frames else meta
            return dd.from_pandas(table, npartitions=max(1, len(frames)), sort=False)
        if handles:  # the real dtypes (e.g. of an index of labels) from an empty slice
            meta = self.client.submit(_empty_like, handles[0], pure=False).result()
        return dd.from_delayed(handles, meta=meta, verify_meta=False)

    def map_frame(self, func: Callable[..., Any], meta: Any, *shared: Any):
        if self.self_contained:
            # In the graph, once each (one key every partition depends on): any
            # scheduler runs it, and the rows are read again from the source.
            token = uuid.uuid4().hex[:12]
            values = [dask.delayed(obj, name=f"dlmm-shared-{token}-{j}", traverse=False)
                      for j, obj in enumerate(shared)]
        else:  # the user's cluster: sent to one worker, as futures of that client;
            # the others fetch it once, as any dependency. Not broadcast: Dask's
            # replication can retry forever when a transfer fails (dask/distributed
            # #4907, #5704; seen here once as a predict that never returned). A key
            # of its own (hash=False): equal tables scattered again (a second predict)
            # would otherwise share the key of a previous future whose release is
            # under way, and the computation fails on "lost dependencies" (seen once).
            values = [self.client.scatter(obj, hash=False) for obj in shared]
        return self.frame.map_partitions(func, *values, meta=meta)

    def wait(self, handles: list[Any]) -> None:
        self._await(handles)

    def gather(self, handles: list[Any]) -> list[Any]:
        self._await(handles)
        # From the embedded cluster's workers straight here: by default the scheduler
        # fetches the results and sends them on, two trips of every byte (the effects
        # of 5*10^6 groups are 200 MB).
        return self.client.gather(handles, direct=True if is_embedded(self.client) else None)

    # -- watching the cluster while waiting -------------------------------------------

    def _await(self, futures: list[Any],
               progress: Callable[[int, int], None] | None = None,
               sizes: dict | None = None) -> None:
        """Wait until every future is done; ``progress(done, total)`` as they finish
        (counted in ``sizes[key]`` units, 1 for a key not in it).

        Raises the first failed task's exception (translated by :meth:`_failure`),
        :class:`SchedulerLost` when the connection to the scheduler is lost, and
        :class:`WorkerMemoryError` when every worker has been paused at its memory
        limit for ``dlmm.paused-timeout`` seconds without progress."""
        from distributed.client import _wait

        futures = [f for f in futures if hasattr(f, "status")]
        units = [(sizes or {}).get(f.key, 1) for f in futures]
        total, reported = sum(units), 0
        watch = _Watch(self)
        while True:
            try:
                self.client.sync(_wait, futures, timeout=_POLL_SECONDS)
            except Exception:  # noqa: BLE001 - a timeout, cancelled futures or a lost
                pass           # connection: the states below say which
            states = [f.status for f in futures]
            done = states.count("finished")
            if progress is not None:
                done_units = sum(u for u, state in zip(units, states) if state == "finished")
                for k in range(reported + 1, done_units + 1):
                    progress(k, total)
                reported = max(reported, done_units)
            for f, state in zip(futures, states):
                if state not in ("pending", "finished"):
                    raise self._failure(f, state, watch)
            if done == len(futures):
                return
            watch.check(done, [f.key for f, state in zip(futures, states)
                               if state == "pending"])

    def _failure(self, future, state: str, watch: _Watch) -> BaseException:
        """The exception to raise for a failed future: Dask's words replaced by ours."""
        if watch.scheduler_gone():
            return watch.lost()
        if state == "error":
            from distributed import KilledWorker

            exc = future.exception()
            if isinstance(exc, KilledWorker):
                try:
                    restarts = watch.memory_restarts(since=watch.started - 5)
                except SchedulerLost as lost:
                    return lost
                except Exception:  # noqa: BLE001 - informational: not said
                    restarts = 0
                if restarts:
                    return self._memory_error(
                        [getattr(exc, "task", future.key), future.key], "workers were restarted "
                        f"{restarts} time{'s' if restarts != 1 else ''} for exceeding it")
                return WorkersLost(
                    f"Dask workers died while running the task {future.key!r} "
                    f"({one_line(exc)}); see the workers' logs")
        try:
            future.result(timeout=5)
        except BaseException as exc:  # noqa: BLE001 - re-raised by the caller
            if watch.scheduler_gone():
                return watch.lost()
            return exc
        return RuntimeError(f"task {future.key!r} ended in state {state!r}")

    def _memory_error(self, keys: list[Any], how: str) -> WorkerMemoryError:
        """``a partition of N rows / X MB (partition i of n) did not fit the workers'
        memory limit Y (how)``; or, when that partition takes less than a quarter of the
        limit, that the limit is below what a worker running dlmm needs (its own
        libraries: pandas, statsmodels...), whatever the partitions."""
        what, size, limit = self._partition_size(keys)
        limit = limit or self._memory_limit()
        if size is not None and limit and size < limit / 4:
            return WorkerMemoryError(
                f"the workers' memory limit {format_size(limit)} is less than a Dask worker "
                f"running dlmm needs ({how}; {what} takes a small part of it)",
                partition=False)
        return WorkerMemoryError(
            f"{what} did not fit the workers' memory limit {format_size(limit)} ({how})")

    def _memory_limit(self) -> float | None:
        """The smallest memory limit of a worker: what the embedded cluster's nannies
        hold their workers to (or its specification of them says), else what the
        scheduler says (waiting up to 10 s for a worker to be back after a restart)."""
        from dask.utils import parse_bytes

        cluster = getattr(self.client, "cluster", None)
        limits = [getattr(getattr(nanny, "memory_manager", None), "memory_limit", None)
                  for nanny in list(getattr(cluster, "workers", {}).values())]
        # A nanny restarting its worker may not hold its limit: the cluster's own
        # specification of its workers does.
        limits += [(spec.get("options") or {}).get("memory_limit")
                   for spec in list(getattr(cluster, "worker_spec", {}).values())]
        limits = [parse_bytes(limit) if isinstance(limit, str) else limit for limit in limits
                  if limit and limit != "auto"]
        deadline = time.monotonic() + 10
        while not limits:
            try:
                info = _ask(self.client, "identity", n_workers=-1)["workers"].values()
                limits = [w.get("memory_limit") for w in info if w.get("memory_limit")]
            except Exception:  # noqa: BLE001 - informational
                return None
            if limits or time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        return min(limits) if limits else None

    def _partition_size(self, keys: list[Any]) -> tuple[str, float | None, float | None]:
        """``a partition of N rows / X MB`` (as far as it is known: from what the chunk
        tasks reported when they started, or the largest partition the workers hold
        in memory), its bytes, and the workers' memory limit, if known."""
        chunks = getattr(self, "_chunks", None) or {"token": None, "futures": {},
                                                     "parts": []}
        sizes: dict[int, tuple[int, float]] = {}
        limit = None
        try:
            for _, msg in _ask(self.client, "events", topic="dlmm-chunk"):
                if isinstance(msg, dict) and msg.get("token") == chunks["token"]:
                    sizes[int(msg["index"])] = (int(msg["rows"]), float(msg["bytes"]))
                    limit = msg.get("memory_limit") or limit
        except Exception:  # noqa: BLE001 - informational
            pass
        pieces = chunks.get("pieces")
        n = len(pieces) if pieces else (len(chunks["parts"]) or self.n_chunks)
        wanted = [chunks["futures"][k] for k in keys if k in chunks["futures"]]
        wanted += [k[1] for k in keys if isinstance(k, tuple) and len(k) == 2
                   and isinstance(k[1], int) and 0 <= k[1] < n]  # (name, partition)
        if pieces:  # read in the chunk's own task: its size from the file's footer
            for j in (wanted or range(n))[:64]:
                try:
                    sizes[j] = piece_facts(pieces[j], self.frame._meta.dtypes)
                except Exception:  # noqa: BLE001 - informational
                    pass
            wanted = wanted or list(sizes)
        known = [j for j in wanted if j in sizes]
        if known:
            j = max(known, key=lambda k: sizes[k][1])
            rows, size = sizes[j]
            return (f"a partition of {rows} rows / {format_size(size)} "
                    f"(partition {j + 1} of {n})"), size, limit
        try:  # a partition read but not yet processed (a paused worker holds it)
            held = self.client.sync(self.client._run, _held_sizes, None,
                                    on_error="ignore", callback_timeout=10)
            found = [size for per_worker in (held or {}).values()
                     for size in (per_worker or {}).values()]
        except Exception:  # noqa: BLE001 - informational
            found = []
        if found:
            rows, size = max(found, key=lambda s: s[1])
            return f"a partition of {rows} rows / {format_size(size)}", size, limit
        if sizes:
            j = max(sizes, key=lambda k: sizes[k][1])
            rows, size = sizes[j]
            return (f"a partition (the largest read: {rows} rows / {format_size(size)}, "
                    f"partition {j + 1} of {n})"), size, limit
        # Died while reading it, or none read yet: what the source's metadata say of
        # the partition at fault, else of the largest of (at most 64) partitions.
        candidates = wanted[:1] or (list(range(n)) if n <= 64 else [])
        facts = {j: self._partition_facts(j, chunks["parts"]) for j in candidates}
        facts = {j: f for j, f in facts.items() if f[0] is not None}
        if facts:
            j = max(facts, key=lambda k: facts[k][0])
            rows, size = facts[j]
            which = (f"partition {j + 1} of {n}" if wanted or n == 1
                     else f"the largest: partition {j + 1} of {n}")
            return f"a partition of {rows} rows / {format_size(size)} ({which})", size, limit
        if wanted:
            return f"partition {wanted[0] + 1} of {n} (of unknown size)", None, limit
        return "a partition (of unknown size)", None, limit

    def _partition_facts(self, j: int, part_keys: list) -> tuple[int | None, float | None]:
        """Rows of partition ``j`` when the source knows them without reading it
        (Parquet metadata, a pandas frame), and its bytes in memory as the scheduler
        saw them (else estimated from the dtypes)."""
        try:
            part = self.frame.partitions[j]
            kind = type(part.expr.simplify()).__name__
            if not (kind.startswith("ReadParquet") or kind == "FromPandas"):
                return None, None  # counting would read the partition again
            rows = int(len(part))
        except Exception:  # noqa: BLE001 - informational
            return None, None
        size = None
        if j < len(part_keys):
            try:
                size = self.client.run_on_scheduler(_task_nbytes, part_keys[j],
                                                    callback_timeout=_scheduler_timeout())
            except Exception:  # noqa: BLE001 - informational
                size = None
        if not size:
            dtypes = self.frame._meta.dtypes
            size = float(sum(rows * (t.itemsize if t.kind in "biufcmM" else 8)
                             for t in dtypes) + rows * 8)
        return rows, size

    def release(self, handles: list[Any]) -> None:
        for h in handles:
            release = getattr(h, "release", None)
            if release is not None:
                release()

    @property
    def dashboard_link(self) -> str | None:
        try:
            return self.client.dashboard_link
        except Exception:  # no dashboard (bokeh missing)
            return None
