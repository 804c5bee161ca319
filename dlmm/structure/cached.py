"""The one pass with a statistics cache: read only the input files that are new or changed.

The grouped engine's statistics are sums over rows, so the statistics of a
data set are the sums of its files' statistics. With a cache folder
(:mod:`dlmm.io.stats_cache`) each input file is reduced on its own, on a
worker, to its per-group cross-products keyed by group label, and those are
kept. A later run over the same model:

* lists the input files and their identities (:mod:`dlmm.io.fingerprint`; no
  file is opened) and reuses the sums of every file whose identity is
  unchanged; files that are gone are dropped, new or changed files are read;
* keeps the learned specification of the first run, the centring shifts
  included (:mod:`dlmm.spec.centering`): the cached sums were taken with those
  shifts, and the model is invariant to them, so the estimates are those of a
  full refit (to rounding);
* checks the categorical levels: each file's distinct values of every
  categorical column are kept with its sums, and when the union over the
  current files is not the learned level set (a level only new files have,
  or one only removed files had) the specification is learned again over
  the new level set and every file is read again ("rebuilt"), as a full refit
  would do; it is never silently wrong;
* merges groups that span files by key, as across partitions
  (:func:`dlmm.structure.grouped.statistics_from_chunks`).

The counts kept with the sums are checked as they are added: the rows of
the assembled sums must be those the manifest (and this run's reads) count,
else a warning and every file is read again; it never counts a file twice.

A cached pass is not always faster. Loading, merging and writing again a
group's sums costs about what reading a few of its rows does, so with few
rows per group the cache costs as much as it saves:
:func:`dlmm.structure.cache_rule.cache_pays` decides from the rows and
groups of the last run (kept in the manifest) and, below its threshold, the
run says so in the log and makes a plain pass over every file (the model's
own ``full_pass``), keeping only the new shape in the manifest so that the
next run decides again.

Workers read and write the cache folder, so on a cluster it must be on
storage they share with the driver. Crossed designs (the crossed engine) are
not cached: they are refused with an error. A residual model of parameters
(``residual_by``, ``residual_ar1``) keeps each file's components
(:mod:`dlmm.structure.residual_cache`) and assembles them as the one pass does,
without an aggregate.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..distributed.base import ordered_sum, sorted_levels
from ..distributed.files import file_frame, file_schema, frame_item, item_frame, read_file
from ..distributed.sources import check_parquet_columns
from ..exceptions import InputError
from ..io.fingerprint import FileIdentity, digest, fingerprint, input_files
from ..io.jsonable import versions
from ..io.stats_cache import (
    StatsCache,
    load_keyed,
    load_sums,
    load_totals,
    save_keyed,
    save_sums,
    save_totals,
)
from ..kernels.block import KeyedCrossProducts, build_block, combine_keyed
from ..objective.shift import random_effects_map
from ..spec.centering import Centering
from ..spec.formula import FormulaSpec
from .cache_rule import cache_pays
from .choose import collect_statistics, crossed_design
from .grouped import (
    ChunkResult,
    blocks_statistics,
    chunk_crossproducts,
    plan_blocks,
    split_by_hash,
)
from .residual_cache import FileComponents, cached_components, file_components
from .residual_pass import check_residual_model, statistics_from_components
from .shifted import ShiftedStatistics

logger = logging.getLogger("dlmm")

_SAMPLE_ROWS = 2000


@dataclass
class CacheReport:
    """What a cached pass did: how many input files it read, reused and dropped.

    ``rebuilt`` says why every file was read again (no cache yet for this model,
    a changed level set, an untrusted manifest), or is None. ``used`` is False when
    the run made a plain pass instead (:func:`~dlmm.structure.cache_rule.cache_pays`);
    ``decision`` says why either way.
    """

    cache: str
    files: int
    read: list[str]
    reused: int
    dropped: list[str]
    fingerprint: str
    rebuilt: str | None = None
    recomputed: list[str] = field(default_factory=list)
    loaded: list[str] = field(default_factory=list)
    aggregate: str | None = None
    used: bool = True
    decision: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"cache": self.cache, "files": self.files, "files_read": len(self.read),
                "files_reused": self.reused, "files_dropped": len(self.dropped),
                "read": list(self.read), "dropped": list(self.dropped),
                "recomputed": list(self.recomputed), "rebuilt": self.rebuilt,
                "sums_loaded": len(self.loaded), "aggregate": self.aggregate,
                "used": self.used, "decision": self.decision,
                "fingerprint": self.fingerprint}


class _Mismatch(Exception):
    """The assembled sums do not count the rows the manifest and the reads count."""


@dataclass(eq=False)
class FileSums(ChunkResult):
    """One input file's sums, with what :func:`save_sums` wrote (or ``error``)."""

    saved: dict = field(default_factory=dict)


def model_key(spec: FormulaSpec) -> dict[str, Any]:
    """What the cached sums depend on besides the data: the model as given."""
    key = {"formula": spec.formula, "groups": spec.groups, "re_formula": spec.re_formula,
           "vc_formula": dict(spec.vc_formula or {}), "group_name": spec.group_name}
    if not spec.residual.plain:  # weights and strata change the sums (dlmm.spec.residual)
        key["residual"] = spec.residual.to_dict()
    return key


def _file_levels(frame: pd.DataFrame, columns: list[str]) -> dict[str, list]:
    path = frame_item(frame)
    rows = read_file(path, columns)
    return {c: sorted_levels(c, pd.Series(rows[c]).dropna().unique().tolist())
            for c in columns}


def _file_sums(frame: pd.DataFrame, spec: FormulaSpec) -> FileSums | FileComponents:
    if spec.residual.parametric:  # kept by residual component (dlmm.structure.residual_cache)
        return file_components(frame, spec)
    path, target = frame_item(frame)
    chunk = chunk_crossproducts(read_file(path, list(spec.columns)), spec)
    saved = save_sums(chunk.keyed, chunk.totals, target)
    return FileSums(chunk.keyed, chunk.totals, saved)


def _cached_sums(frame: pd.DataFrame) -> ChunkResult | str:
    path, sha = frame_item(frame)
    loaded = load_sums(path, sha)
    return loaded if isinstance(loaded, str) else ChunkResult(*loaded)


def _error_of(result: Any) -> str | None:
    return result if isinstance(result, str) else None


def _saved_of(result: FileSums) -> dict:
    return result.saved


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _union(per_file: list[dict[str, list]], columns: list[str]) -> dict[str, list]:
    return {c: sorted_levels(c, list({_plain(v) for levels in per_file
                                      for v in levels.get(c, [])})) for c in columns}


def _level_change(learned: dict[str, list], now: dict[str, list]) -> str | None:
    for c in sorted(set(learned) | set(now)):
        old, new = set(learned.get(c, [])), set(now.get(c, []))
        if old != new:
            added, gone = sorted(map(repr, new - old))[:3], sorted(map(repr, old - new))[:3]
            parts = ([f"new level(s) {', '.join(added)}"] if added else []) + \
                ([f"level(s) {', '.join(gone)} no longer in the data"] if gone else [])
            return f"column {c!r}: {'; '.join(parts)}"
    return None


class _Pass:
    """One cached pass: the cache, the files, the client, and the backends over them."""

    def __init__(self, cache: StatsCache, files: list[FileIdentity], client, model_hash,
                 cache_dir: str):
        from ..distributed.dask_backend import DaskBackend, resolve_client

        self.cache, self.files, self.model_hash = cache, files, model_hash
        self.cache_dir = cache_dir  # as given (the report names it so)
        self.now = {f.path: f for f in files}
        self.client = resolve_client(client)
        self._backend = DaskBackend

    def items(self, items: list[Any]):
        return self._backend(item_frame(items), self.client)

    def over_files(self, columns: list[str], meta: pd.DataFrame):
        return self._backend(file_frame([f.path for f in self.files], columns, meta),
                             self.client)

    def levels(self, paths: list[str], columns: list[str]) -> list[dict[str, list]]:
        if not paths or not columns:
            return [{} for _ in paths]
        backend = self.items(paths)
        return backend.gather(backend.map_chunks(lambda f: _file_levels(f, columns)))

    def stats_name(self, ident: FileIdentity) -> str:
        return digest([self.model_hash, ident.to_dict()])[:32] + ".npz"


def _levels_and_head(frame: pd.DataFrame, columns: list[str], cats: list[str],
                     n_rows: int) -> tuple[dict[str, list], pd.DataFrame]:
    rows = read_file(frame_item(frame), columns)
    levels = {c: sorted_levels(c, pd.Series(rows[c]).dropna().unique().tolist())
              for c in cats}
    return levels, rows.head(n_rows)


def _learn(run: _Pass, spec: FormulaSpec) -> tuple[list[dict], pd.DataFrame]:
    """Learn ``spec`` over every file as ``MixedLM`` does (the sample: the first
    rows, in file order), with the levels of each file; the per-file levels and
    the frame meta."""
    paths = [f.path for f in run.files]
    meta = file_schema(paths[0], None)
    columns = spec.required_columns(meta.columns)
    check_parquet_columns(paths, columns)
    meta = meta[columns]
    guess = spec.categorical_columns(meta)  # from the schema's types; checked below
    backend = run.items(paths)
    out = backend.gather(backend.map_chunks(
        lambda f: _levels_and_head(f, columns, guess, _SAMPLE_ROWS)))
    per_file = [levels for levels, _ in out]
    sample = pd.concat([head for _, head in out]).head(_SAMPLE_ROWS)
    if len(sample) == 0:
        raise InputError("the data have no rows")
    spec.check_response(sample)
    cats = spec.categorical_columns(sample)
    extra = [c for c in cats if c not in guess]
    for levels, more in zip(per_file, run.levels(paths, extra) if extra else []):
        levels.update(more)
    per_file = [{c: levels[c] for c in cats} for levels in per_file]
    spec.learn_levels(sample, _union(per_file, cats))
    if spec.stateful:
        raise InputError("formula uses a stateful transform (such as center or scale) that "
                         "must see all the data; compute that column before fitting")
    if spec.residual.parametric:
        check_residual_model(spec)
    layout, _ = crossed_design(spec, run.over_files(list(spec.columns), meta))
    if layout is not None:
        raise InputError("the statistics cache keeps the grouped engine's sums; this model "
                         "is crossed (one group, factor variance components): fit it "
                         "without --cache")
    return per_file, meta


def _read(run: _Pass, spec: FormulaSpec, paths: list[str], progress) -> tuple[dict, dict]:
    """Read ``paths`` on the workers, keep their sums in the cache: handles and what
    was written, by path."""
    if not paths:
        return {}, {}
    reader = run.items([(p, run.cache.stats_path(run.stats_name(run.now[p]))) for p in paths])
    read = reader.map_chunks(lambda frame: _file_sums(frame, spec), progress)
    infos = reader.gather(reader.map(_saved_of, read))
    return dict(zip(paths, read)), dict(zip(paths, infos))


def _load(run: _Pass, paths: list[str], reuse: dict[str, dict],
          parametric: bool = False) -> dict[str, Any]:
    """Handles of the cached sums of ``paths``, loaded on the workers (or an error);
    ``parametric``: a residual model's components."""
    if not paths:
        return {}
    loader = run.items([(run.cache.stats_path(reuse[p]["stats"]), reuse[p]["sha256"])
                        for p in paths])
    return dict(zip(paths, loader.map_chunks(cached_components if parametric
                                             else _cached_sums)))


def _usable_aggregate(manifest: dict[str, Any], reuse: dict[str, dict]
                      ) -> tuple[dict | None, str | None]:
    """The manifest's aggregate when every file it sums is unchanged (else None), and
    why it is not used."""
    agg = manifest.get("aggregate")
    if not reuse:
        return None, None
    if agg is None:
        return None, "none yet: added the per-file sums"
    stale = [p for p, name in agg["files"].items()
             if p not in reuse or reuse[p]["stats"] != name]
    if stale:
        return None, (f"not used: {len(stale)} of the {len(agg['files'])} files it sums "
                      "changed or are gone; added the per-file sums")
    return agg, None


def _fallback(error: str) -> str:
    logger.warning("statistics cache: the aggregate cannot be used (%s); adding the "
                   "per-file sums instead", error)
    return f"not used: {error}; added the per-file sums"


def _aggregate_piece(items: list) -> KeyedCrossProducts | str:
    path, sha = items[0]
    return load_keyed(path, sha)


def _piece_summary(result: ChunkResult | KeyedCrossProducts):
    if isinstance(result, ChunkResult):
        return result.totals, int(result.keyed.labels.shape[0])
    return None, int(result.labels.shape[0])


def _merge(parts: list[KeyedCrossProducts], n_slots: int) -> KeyedCrossProducts | None:
    parts = [p for p in parts if p.labels.shape[0]]
    return combine_keyed(parts, n_slots) if parts else None


def _stack(merged: KeyedCrossProducts | None, slot_component: np.ndarray):
    return build_block([merged] if merged is not None else [], slot_component)


def _save_piece(merged: KeyedCrossProducts | None, prefix: str) -> dict | None:
    if merged is None:
        return None
    info = save_keyed(merged, f"{prefix}-{uuid.uuid4().hex[:12]}.npz")
    return {"stats": info["stats"], "sha256": info["sha256"]}


def _assemble(spec: FormulaSpec, backend, chunks: list[Any], agg_totals, start: float,
              prefix: str, expected: tuple[int, int]):
    """Blocks of whole groups from aggregate pieces and per-file sums (handles, in a
    fixed order), merged by key; the merged sums are kept as the new aggregate
    (pieces named ``prefix-*.npz``). The statistics and the aggregate's manifest item
    (without ``files``). Raises :class:`_Mismatch` (before any block is built) when
    the sums do not count the ``expected`` rows (used, dropped)."""
    if spec.residual.parametric:  # components: assembled as the one pass's, no aggregate
        stats = statistics_from_components(spec, backend, chunks, start)
        got = (int(round(stats.base_totals.n_rows)), int(round(stats.base_totals.n_dropped)))
        if got != tuple(expected):
            raise _Mismatch(f"the sums count {got[0]} rows used and {got[1]} dropped, the "
                            f"files {expected[0]} and {expected[1]}")
        return stats, None
    summary = backend.gather(backend.map(_piece_summary, chunks))  # one round trip
    totals = ordered_sum(([agg_totals] if agg_totals is not None else [])
                         + [t for t, _ in summary if t is not None])
    got = (int(round(totals.n_rows)), int(round(totals.n_dropped)))
    if got != tuple(expected):
        backend.release(chunks)
        raise _Mismatch(f"the sums count {got[0]} rows used and {got[1]} dropped, the "
                        f"files {expected[0]} and {expected[1]}")
    n_blocks = plan_blocks(sum(n for _, n in summary), backend.parallelism)
    merge = functools.partial(_merge, n_slots=max(spec.slot_component.shape[0], 1))
    merged = backend.regroup(chunks, n_blocks, split_by_hash, merge)
    infos = backend.map(_save_piece, merged, prefix)
    blocks = backend.map(_stack, merged, spec.slot_component)
    stats = blocks_statistics(spec, backend, blocks, totals, True, start)
    pieces = [i for i in backend.gather(infos) if i is not None]
    backend.release(chunks)
    backend.release(merged)
    saved = save_totals(totals, f"{prefix}-totals.npz")
    return stats, {"pieces": pieces,
                   "totals": {"stats": saved["stats"], "sha256": saved["sha256"]},
                   "n_rows": got[0], "n_dropped": got[1], "n_groups": int(stats.n_groups)}


def _restore(manifest: dict[str, Any]) -> tuple[FormulaSpec, pd.DataFrame] | str:
    """The learned specification (with its centring) and the frame meta a manifest
    keeps, or why they cannot be rebuilt from it."""
    try:
        spec = FormulaSpec.from_dict(manifest["spec"])
        spec.centering = Centering.from_dict(manifest["centering"])
        meta = pd.DataFrame({c: pd.Series(dtype=d) for c, d in manifest["dtypes"].items()})
    except Exception as exc:  # noqa: BLE001 - whatever it is, the manifest is not usable
        return f"its specification cannot be rebuilt ({type(exc).__name__}: {exc})"
    if spec.centering.xy_shift.shape != (spec.k_fe + 1,) \
            or spec.centering.z_shift.shape != (spec.k_re,):
        return "its centring shifts do not match its specification"
    if any(c not in meta.columns for c in spec.columns):
        return "its 'dtypes' lack a column of its specification"
    return spec, meta[list(spec.columns)]


def _fresh(spec: FormulaSpec) -> FormulaSpec:
    """An unlearned specification of the same model."""
    fresh = FormulaSpec(spec.formula, spec.groups, re_formula=spec.re_formula,
                        vc_formula=spec.vc_formula, residual=spec.residual)
    fresh.group_name = spec.group_name
    return fresh


def _shape(stats) -> dict[str, int]:
    totals = stats.totals
    return {"rows": int(round(totals.n_rows + totals.n_dropped)),
            "groups": int(stats.n_groups)}


def cached_statistics(spec: FormulaSpec, data: Any, cache_dir: Any, client=None,
                      progress=None, full_pass=None) -> tuple[FormulaSpec, Any, CacheReport]:
    """The grouped statistics of ``data`` (Parquet paths) through the cache in
    ``cache_dir``, reading only files that are new or changed (see the module
    docstring).

    Parameters
    ----------
    spec : FormulaSpec
        The model (not learned yet).
    data : str, PathLike or list
        Parquet paths.
    cache_dir : str or PathLike
        The statistics cache folder (:class:`~dlmm.io.stats_cache.StatsCache`).
    client : distributed.Client, optional
    progress : callable, optional
        ``progress(done, total)`` as files are read.
    full_pass : callable, optional
        ``full_pass()``: learns ``spec`` and returns the statistics of a plain pass
        over every file (the model's own); made when :func:`cache_pays` says the
        cache does not pay. Default: learned and read here, over the files.

    Returns
    -------
    (FormulaSpec, RandomEffectsStatistics, CacheReport)
        The learned specification (the cached one when it still holds), the
        statistics, and what was read.
    """
    start = time.perf_counter()
    files = input_files(data)
    cache = StatsCache(cache_dir, inputs={"DATA": data})
    model_hash = digest(model_key(spec))
    run = _Pass(cache, files, client, model_hash, str(cache_dir))
    manifest = cache.read_manifest(model_hash)
    distrust = cache.distrust
    restored = _restore(manifest) if manifest is not None else None
    if isinstance(restored, str):
        logger.warning("statistics cache manifest %s cannot be trusted: %s; rebuilding the "
                       "cache from the data", cache.manifest_path(model_hash), restored)
        manifest, restored, distrust = None, None, restored
    if manifest is not None:
        pays, why = cache_pays(manifest["shape"])
        if not pays:
            logger.info("statistics cache %s: not used for this run: %s", cache_dir, why)
            return _full(run, spec, manifest, why, full_pass, progress)
    try:
        return _cached(run, spec, manifest, restored, distrust, progress, start)
    except _Mismatch as exc:
        logger.warning("statistics cache: %s; reading every file again", exc)
        return _cached(run, _fresh(spec), None, None, f"its sums did not add up ({exc})",
                       progress, start)


def _full(run: _Pass, spec: FormulaSpec, manifest: dict[str, Any], why: str, full_pass,
          progress) -> tuple[FormulaSpec, Any, CacheReport]:
    """A plain pass over every file; the manifest keeps its sums, and the new shape."""
    if full_pass is not None:
        stats = full_pass()
    else:
        _, meta = _learn(run, spec)
        stats = collect_statistics(spec, run.over_files(list(spec.columns), meta), progress)
    run.cache.write_manifest(run.model_hash, dict(manifest, shape=_shape(stats)), None)
    paths = [f.path for f in run.files]
    report = CacheReport(run.cache_dir, len(paths), paths, 0, [],
                         fingerprint(run.files), used=False, decision=f"not used: {why}")
    return spec, stats, report


def _cached(run: _Pass, spec: FormulaSpec, manifest: dict[str, Any] | None, restored,
            distrust: str | None, progress, start: float
            ) -> tuple[FormulaSpec, Any, CacheReport]:
    """The cached pass (see the module docstring)."""
    cache, files, model_hash = run.cache, run.files, run.model_hash
    entries = dict(manifest["files"]) if manifest else {}
    now = {f.path: f for f in files}
    dropped = sorted(p for p in entries if p not in now)
    reuse = {p: e for p, e in entries.items() if p in now
             and FileIdentity.from_dict(e["identity"]) == now[p]}
    rebuilt = None if manifest else (
        f"its manifest could not be trusted: {distrust}" if distrust is not None
        else "no cached statistics for this model yet")
    decision = cache_pays(manifest.get("shape") if manifest else None)[1]

    new_levels: dict[str, dict] = {}
    if manifest is not None:
        spec, meta = restored
        fresh = [f.path for f in files if f.path not in reuse]
        cats = list(spec.levels)
        if fresh:
            check_parquet_columns(fresh, list(spec.columns))
        new_levels = dict(zip(fresh, run.levels(fresh, cats)))
        union = _union([e["levels"] for e in reuse.values()] + list(new_levels.values()), cats)
        change = _level_change(spec.levels, union)
        if change is not None:
            rebuilt = f"the level set changed ({change}): learned again over the new levels"
            spec = _fresh(spec)
    if rebuilt is not None:
        if manifest is not None:
            logger.warning("statistics cache: %s; reading every file", rebuilt)
        per_file, meta = _learn(run, spec)
        new_levels = {f.path: lv for f, lv in zip(files, per_file)}
        reuse = {}

    backend = run.over_files(list(spec.columns), meta)
    use, agg_note = _usable_aggregate(manifest, reuse) if manifest else (None, None)
    if spec.residual.parametric:
        use, agg_note = None, "not kept for a residual model's components"
    agg_totals = None
    if use is not None:
        agg_totals = load_totals(cache.aggregate_path(use["totals"]["stats"]),
                                 use["totals"]["sha256"])
        if not isinstance(agg_totals, str) and (
                int(round(agg_totals.n_rows)), int(round(agg_totals.n_dropped))) \
                != (use["n_rows"], use["n_dropped"]):
            agg_totals = (f"its totals count {agg_totals.n_rows:.0f} rows, the manifest "
                          f"{use['n_rows']}")
        if isinstance(agg_totals, str):
            use, agg_note, agg_totals = None, _fallback(agg_totals), None
    # Cached sums are loaded where they are read (the workers) while the new and
    # changed files are read; cached sums that cannot be trusted are read again.
    pieces = backend.combine([[(cache.aggregate_path(e["stats"]), e["sha256"])]
                              for e in use["pieces"]], _aggregate_piece) if use else []
    covered = set(use["files"]) if use else set()
    cached = [p for p in now if p in reuse and p not in covered]
    loaded = _load(run, cached, reuse, spec.residual.parametric)
    handles, saved = _read(run, spec, [p for p in now if p not in reuse], progress)
    if pieces:
        error = next(filter(None, backend.gather(backend.map(_error_of, pieces))), None)
        if error is not None:
            backend.release(pieces)
            use, pieces, agg_totals, agg_note = None, [], None, _fallback(error)
            more = [p for p in now if p in covered]
            loaded.update(_load(run, more, reuse, spec.residual.parametric))
            cached = [p for p in now if p in loaded]
    recomputed: list[str] = []
    errors = backend.gather(backend.map(_error_of, [loaded[p] for p in cached])) \
        if cached else []
    for p, err in zip(cached, errors):
        if err is None:
            handles[p] = loaded[p]
        else:
            logger.warning("statistics cache: %s; reading %s again", err, p)
            recomputed.append(p)
            new_levels[p] = reuse[p]["levels"]  # the data file is unchanged
    if recomputed:
        more, more_saved = _read(run, spec, recomputed, None)
        handles.update(more)
        saved.update(more_saved)
    to_read = [p for p in now if p in saved]

    files_doc = {p: reuse[p] if p in reuse and p not in saved else {
        "identity": now[p].to_dict(), "stats": saved[p]["stats"],
        "sha256": saved[p]["sha256"], "bytes": saved[p]["bytes"], "levels": new_levels[p],
        **{k: saved[p][k] for k in ("n_rows", "n_dropped", "n_groups")}} for p in now}
    expected = (sum(e["n_rows"] for e in files_doc.values()),
                sum(e["n_dropped"] for e in files_doc.values()))
    chunks = pieces + [handles[p] for p in now if p in handles]
    prefix = cache.aggregate_path(f"{model_hash[:16]}-{uuid.uuid4().hex[:12]}")
    stats, aggregate = _assemble(spec, backend, chunks, agg_totals, start, prefix, expected)
    centering = spec.centering
    if aggregate is not None:
        aggregate["files"] = {p: e["stats"] for p, e in files_doc.items()}
        aggregate["n_files"] = len(files_doc)
    doc = {
        "model_key": model_key(spec), "engine": "grouped", "spec": spec.to_dict(),
        "centering": centering.to_dict(),
        "dtypes": {str(c): str(t) for c, t in meta.dtypes.items()},
        "files": files_doc, **({"aggregate": aggregate} if aggregate is not None else {}),
        "shape": _shape(stats),
    }
    doc["dlmm"] = versions()["dlmm"]
    cache.write_manifest(model_hash, doc, manifest)
    report = CacheReport(run.cache_dir, len(files), to_read, len(files) - len(to_read),
                         dropped, fingerprint(files), rebuilt, recomputed,
                         loaded=[p for p in cached if p not in recomputed],
                         aggregate=(f"used: the sums of {len(covered)} files in "
                                    f"{len(pieces)} pieces") if use else agg_note,
                         decision=f"used: {decision}")
    if centering.shifts_z:
        stats = ShiftedStatistics(stats, random_effects_map(centering.z_shift,
                                                            centering.z_intercept,
                                                            centering.z_scale), spec.k_vc)
    return spec, stats, report
