"""What the residual model's one pass keeps of a chunk, and the pieces of it both ways of
reading a chunk build (:mod:`.residual_chunk`, the design; :mod:`.residual_columns`, the
plain columns): the components' keyed sums, ``K`` parts and rows of each stratum, and
the loose rows of AR(1)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..kernels.block import KeyedCrossProducts
from ..kernels.crossprod import GroupCrossProducts
from ..kernels.pieces import RowTotals


@dataclass(eq=False)
class LooseRows:
    """Rows at the ends of a chunk's runs of consecutive times (AR(1)), to be joined
    with other chunks' runs in the group's block."""

    labels: np.ndarray
    t: np.ndarray
    s: np.ndarray
    head: np.ndarray
    tail: np.ndarray
    z: np.ndarray
    xy: np.ndarray

    def select(self, keep: np.ndarray) -> LooseRows:
        return LooseRows(*(a[keep] for a in (self.labels, self.t, self.s, self.head,
                                             self.tail, self.z, self.xy)))


@dataclass(eq=False)
class ComponentChunk:
    """What the one pass keeps of a chunk: each component's keyed per-group sums, its
    ``K_k``, the rows of each stratum, the row totals and, with AR(1), loose rows."""

    levels: list
    parts: dict
    k: dict
    rows: dict
    totals: RowTotals
    n_missing: int = 0
    loose: LooseRows | None = None


def _keyed(labels, n, zz, zr) -> KeyedCrossProducts:
    q, r = zr.shape[1], zr.shape[2]
    empty = np.zeros(0, dtype=np.int64)
    return KeyedCrossProducts(labels, GroupCrossProducts(
        np.asarray(n, dtype=float), zz, zr, empty, empty, np.zeros((0, q)), np.zeros((0, r)),
        empty, empty, empty, np.zeros(0)))




def component_keys(n_levels: int) -> tuple[list, np.ndarray]:
    """The AR(1) components of a chunk of ``n_levels`` strata, ``lag0`` then ``lag1``
    (keys with the chunk's stratum codes), and the index of the ``lag1`` component of
    each pair of strata."""
    keys = [("lag0", a, a) for a in range(n_levels)]
    lag1_of = np.zeros((n_levels, n_levels), dtype=np.int64)
    for a in range(n_levels):
        for b in range(a, n_levels):
            lag1_of[a, b] = lag1_of[b, a] = len(keys)
            keys.append(("lag1", a, b))
    return keys, lag1_of


def ar1_parts(keys: list, labels: np.ndarray, gz, hz, n, kk) -> tuple[dict, dict, dict]:
    """The parts, the ``K`` parts and the rows of each stratum of the components
    ``keys`` summed by a loop (``gz``, ``hz``, ``n``, ``kk`` by component; ``kk`` whole),
    each over the groups with rows in it."""
    parts, k, rows = {}, {}, {}
    for c, key in enumerate(keys):  # a handful of components
        present = n[c] > 0
        if not present.any():
            continue
        if present.all():  # every group of the chunk (views, no copies)
            parts[key] = _keyed(labels, n[c], gz[c], hz[c])
        else:
            parts[key] = _keyed(labels[present], n[c][present], gz[c][present],
                                hz[c][present])
        k[key] = kk[c]
        if key[0] == "lag0":
            rows[key[1]] = float(n[c].sum())
    return parts, k, rows
