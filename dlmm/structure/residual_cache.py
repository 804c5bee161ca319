"""The statistics cache's archive of one input file's residual components.

With a residual model of parameters (:mod:`.residual_pass`) a file's sums are a
:class:`~.residual_pass.ComponentChunk`: each component's keyed per-group sums, its
``K`` part, the rows of each stratum, the row totals and, with AR(1), the rows at the
ends of the file's runs of consecutive times. They are kept as one ``.npz`` archive
(:mod:`dlmm.io.stats_cache`, read without pickles): ``levels`` (the file's strata,
``has_strata`` false without them), ``part_keys`` (``kind:s:t``) with each part's
keyed arrays under ``p<i>_``, ``k_keys`` and ``k_values``, ``rows_codes`` and
``rows_n``, the totals under ``t_``, ``n_missing``, and the loose rows under ``l_``.
A cached run assembles the files' components as the one pass assembles its chunks'
(:func:`.residual_pass.statistics_from_components`); it keeps no aggregate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..distributed.files import frame_item, read_file
from ..io.stats_cache import (
    keyed_arrays,
    keyed_of,
    label_array,
    load_arrays,
    save_arrays,
    totals_arrays,
    totals_of,
)
from .residual_chunk import residual_chunk
from .residual_parts import ComponentChunk, LooseRows

_LOOSE = ("t", "s", "head", "tail", "z", "xy")


@dataclass(eq=False)
class FileComponents(ComponentChunk):
    """One input file's components, with what :func:`save_components` wrote."""

    saved: dict = field(default_factory=dict)


def _key(text: str) -> tuple:
    kind, s, t = text.split(":")
    return kind, int(s), int(t)


def component_counts(chunk: ComponentChunk) -> dict[str, int]:
    """The counts a manifest keeps of a file's sums: ``n_rows``, ``n_dropped``,
    ``n_groups``."""
    labels = [p.labels for p in chunk.parts.values() if p.labels.shape[0]]
    totals = chunk.totals
    return {"n_rows": int(round(totals.n_rows)) if totals is not None else 0,
            "n_dropped": int(round(totals.n_dropped if totals is not None else 0))
            + int(chunk.n_missing),
            "n_groups": int(pd.unique(np.concatenate(labels)).shape[0]) if labels else 0}


def save_components(chunk: ComponentChunk, path: str) -> dict:
    """Write a file's components to ``path``; its name, SHA-256, size and counts."""
    has = chunk.levels != [None]
    levels, kind = label_array(np.asarray(chunk.levels if has else [], dtype=object))
    arrays = {"has_strata": np.array(has), "levels": levels, "level_kind": np.array(kind),
              "part_keys": np.array([":".join(map(str, k)) for k in chunk.parts], dtype=str),
              "k_keys": np.array([":".join(map(str, k)) for k in chunk.k], dtype=str),
              "k_values": np.asarray(list(chunk.k.values()), dtype=float),
              "rows_codes": np.array(list(chunk.rows), dtype=np.int64),
              "rows_n": np.array(list(chunk.rows.values()), dtype=float),
              "n_missing": np.array(chunk.n_missing, dtype=np.int64),
              "has_totals": np.array(chunk.totals is not None),
              "has_loose": np.array(chunk.loose is not None)}
    for i, keyed in enumerate(chunk.parts.values()):
        arrays.update(keyed_arrays(keyed, f"p{i}_"))
    if chunk.totals is not None:
        arrays.update(totals_arrays(chunk.totals, "t_"))
    if chunk.loose is not None:
        labels, label_kind = label_array(chunk.loose.labels)
        arrays.update({"l_labels": labels, "l_label_kind": np.array(label_kind)})
        arrays.update({f"l_{name}": np.asarray(getattr(chunk.loose, name))
                       for name in _LOOSE})
    return {**save_arrays(arrays, path), **component_counts(chunk)}


def _components_of(arrays: dict) -> ComponentChunk:
    levels = arrays["levels"].tolist() if bool(arrays["has_strata"]) else [None]
    parts = {_key(k): keyed_of(arrays, f"p{i}_")
             for i, k in enumerate(arrays["part_keys"].tolist())}
    k = {_key(key): value for key, value in zip(arrays["k_keys"].tolist(), arrays["k_values"])}
    rows = dict(zip(arrays["rows_codes"].tolist(), arrays["rows_n"].tolist()))
    totals = totals_of(arrays, "t_") if bool(arrays["has_totals"]) else None
    loose = None
    if bool(arrays["has_loose"]):
        labels = arrays["l_labels"]
        if str(arrays["l_label_kind"]) == "text":
            labels = labels.astype(object)
        loose = LooseRows(labels, *(arrays[f"l_{name}"] for name in _LOOSE))
    return ComponentChunk(levels, parts, k, rows, totals, int(arrays["n_missing"]), loose)


def load_components(path: str, sha256: str) -> ComponentChunk | str:
    """A file's components written by :func:`save_components`, or why they cannot be
    trusted."""
    return load_arrays(path, sha256, _components_of)


def file_components(frame: pd.DataFrame, spec) -> FileComponents:
    """Read one input file (``frame`` names it and where its sums go), form its
    components and keep them in the cache."""
    path, target = frame_item(frame)
    chunk = residual_chunk(read_file(path, list(spec.columns)), spec)
    saved = save_components(chunk, target)
    return FileComponents(chunk.levels, chunk.parts, chunk.k, chunk.rows, chunk.totals,
                          chunk.n_missing, chunk.loose, saved)


def cached_components(frame: pd.DataFrame) -> ComponentChunk | str:
    """The cached components of one input file (``frame`` names the archive and its
    SHA-256), or why they cannot be trusted."""
    path, sha = frame_item(frame)
    return load_components(path, sha)
