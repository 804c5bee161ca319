"""The effects store: predicted random effects as tables, dicts and per-row lookups.

Two implementations of one interface (:class:`EffectsStore`):

* :class:`DistributedEffects`: computed by the engine where its statistics
  live (for the grouped engine, on the workers from the persisted blocks; the
  rows are never read again). Tables stay distributed for Dask fits.
* :class:`LoadedEffects`: the tables of a saved result.

The table form has one row per group; the dict forms (``random_effects``,
``random_effects_cov``) are statsmodels' API and hold every group on the driver.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from ..exceptions import InputError
from ..io.parquet_parts import fetched_ahead
from ..kernels.block import BlockEffects, transform_effects
from ..kernels.predict import random_part
from ..structure.base import RandomEffectsStatistics
from .labels import LabelMatcher


def modes_only(effects: BlockEffects) -> BlockEffects:
    """The block's predicted effects without their conditional covariances (what
    predictions need, a fraction of the size)."""
    return BlockEffects(effects.labels, effects.re_modes, np.zeros((0, 0, 0)),
                        effects.vc_group, effects.vc_slot, effects.vc_modes,
                        np.zeros(0), [])


def table_index_name(group_name: str, re_names: list[str]) -> str:
    """The group column's name, or ``group`` where a random effect has that name
    (statsmodels names the random intercept after the group column)."""
    return "group" if group_name in re_names else group_name


def re_frame(effects: BlockEffects, group_name: str, re_names: list[str],
             with_se: bool = False) -> pd.DataFrame:
    """One row per group: the standard random effects, indexed by group label;
    with ``with_se`` also their conditional standard deviations (``<name> SE``)."""
    index = pd.Index(effects.labels, name=table_index_name(group_name, re_names))
    frame = pd.DataFrame(effects.re_modes, index=index, columns=list(re_names))
    if with_se:
        se = np.sqrt(np.clip(np.diagonal(effects.re_cov, axis1=1, axis2=2), 0, None))
        for j, name in enumerate(re_names):
            frame[f"{name} SE"] = se[:, j]
    return frame


def vc_frame(effects: BlockEffects, group_name: str, vc_names: list[str],
             slot_names: list[str], slot_component: np.ndarray) -> pd.DataFrame:
    """One row per variance-component effect: group, component, column, effect, variance."""
    return pd.DataFrame({
        group_name: effects.labels[effects.vc_group],
        "component": np.asarray(vc_names, dtype=object)[slot_component[effects.vc_slot]]
        if len(vc_names) else np.zeros(0, dtype=object),
        "column": np.asarray(slot_names, dtype=object)[effects.vc_slot]
        if len(slot_names) else np.zeros(0, dtype=object),
        "effect": effects.vc_modes,
        "variance": effects.vc_var,
    })


def effect_names(re_names: list[str], vc_names: list[str], slot_names: list[str],
                 slot_component: np.ndarray, slots: np.ndarray) -> list[str]:
    """statsmodels' names of one group's effects: re names, then ``vc[column]``."""
    names = list(re_names)
    for s in slots[slots >= 0]:
        names.append(f"{vc_names[slot_component[s]]}[{slot_names[s]}]")
    return names


@dataclass(eq=False)
class EffectsLookup:
    """Predicted effects of every group, arranged for per-row lookups."""

    labels: pd.Index
    re_values: np.ndarray
    vc_keys: np.ndarray
    vc_values: np.ndarray
    n_slots: int

    @classmethod
    def from_blocks(cls, parts: list[BlockEffects], n_slots: int) -> EffectsLookup:
        labels = np.concatenate([p.labels for p in parts]) if parts else np.zeros(0)
        k_re = parts[0].re_modes.shape[1] if parts else 0
        re_values = (np.concatenate([p.re_modes for p in parts]) if parts
                     else np.zeros((0, k_re)))
        offsets = np.cumsum([0] + [p.labels.shape[0] for p in parts])
        n_slots = max(n_slots, 1)
        keys = np.concatenate([(o + p.vc_group) * n_slots + p.vc_slot
                               for o, p in zip(offsets, parts)]) if parts else np.zeros(0)
        values = np.concatenate([p.vc_modes for p in parts]) if parts else np.zeros(0)
        order = np.argsort(keys, kind="stable")
        return cls(pd.Index(labels), re_values, keys[order].astype(np.int64), values[order],
                   n_slots)

    @cached_property
    def matcher(self) -> LabelMatcher:
        """The group labels, matched by value across numbers and text
        (:mod:`dlmm.results.labels`)."""
        return LabelMatcher(self.labels, "group label")

    def contribution(self, design, group_column: str | None = None) -> np.ndarray:
        """``Z b + W v`` of the rows of a design (0 for groups not in the fit); a
        group label of the other type (text ``"7"`` for the fit's ``7``) matches by
        value."""
        index = self.matcher.get_indexer(design.groups, group_column)
        return random_part(design.z, index, self.re_values, design.w, self.vc_keys,
                           self.vc_values, self.n_slots)


@dataclass(frozen=True)
class EffectNames:
    """Names of a model's random effects: what every effects table is labelled by.

    Attributes
    ----------
    group_name : str
    exog_re_names : list of str
        The standard random effects.
    vc_names : list of str
        The variance components, sorted by name.
    slot_names : list of str
        Column name of every global variance-component slot.
    slot_component : ndarray (n_slots,)
        Component of every slot.
    """

    group_name: str
    exog_re_names: list
    vc_names: list
    slot_names: list
    slot_component: np.ndarray

    @property
    def index_name(self) -> str:
        return table_index_name(self.group_name, self.exog_re_names)

    def re_meta(self, with_se: bool) -> pd.DataFrame:
        columns = list(self.exog_re_names)
        if with_se:
            columns += [f"{n} SE" for n in self.exog_re_names]
        meta = pd.DataFrame({n: pd.Series(dtype=float) for n in columns})
        meta.index.name = self.index_name
        return meta

    def vc_meta(self) -> pd.DataFrame:
        return pd.DataFrame({
            self.group_name: pd.Series(dtype=object), "component": pd.Series(dtype=object),
            "column": pd.Series(dtype=object), "effect": pd.Series(dtype=float),
            "variance": pd.Series(dtype=float),
        })


class EffectsStore(ABC):
    """Predicted random effects of a fit, however they are held."""

    names: EffectNames

    @abstractmethod
    def table(self, with_se: bool = False):
        """One row per group: the standard random effects (and ``<name> SE``)."""

    @abstractmethod
    def vc_table(self):
        """One row per variance-component effect (None without components)."""

    @abstractmethod
    def lookup(self) -> EffectsLookup:
        """Every group's effects on the driver, arranged for per-row lookups."""

    @abstractmethod
    def as_dict(self) -> dict:
        """statsmodels' ``random_effects``: group -> Series."""

    @abstractmethod
    def cov_dict(self) -> dict:
        """statsmodels' ``random_effects_cov``: group -> DataFrame."""


class DistributedEffects(EffectsStore):
    """Effects computed by the engine where its statistics are kept.

    Parameters
    ----------
    statistics : RandomEffectsStatistics
    chol_re, sd_vc : ndarray
        The estimate in the square-root parameterization.
    coef : ndarray
        ``[-beta; 1]`` at the estimate.
    scale : float
        The scale, in the model's units.
    names : EffectNames
    u_inv : ndarray, optional
        ``U^{-1}`` when the statistics' random-effect columns are shifted
        (``Z = Z_c U``): the effects are mapped back on the workers.
    y_scale : float
        The scale of the statistics' response (:mod:`dlmm.spec.centering`): the
        engine predicts the effects of ``y / y_scale``, mapped back on the workers.

    The engine computes the effects on first use and keeps them where its
    statistics are (:meth:`RandomEffectsStatistics.effects`).
    """

    def __init__(self, statistics: RandomEffectsStatistics, chol_re: np.ndarray,
                 sd_vc: np.ndarray, coef: np.ndarray, scale: float, names: EffectNames,
                 u_inv: np.ndarray | None = None, y_scale: float = 1.0):
        self.statistics = statistics
        self._estimate = (chol_re, sd_vc, coef, scale / y_scale**2)
        self._u_inv = u_inv
        self._y_scale = float(y_scale)
        self.names = names

    @cached_property
    def handles(self) -> list:
        handles = self.statistics.effects(*self._estimate)
        if self._u_inv is not None or self._y_scale != 1.0:
            # shifted random-effect columns, scaled response: b = y_scale U^{-1} b_c
            u_inv = np.eye(len(self.names.exog_re_names)) if self._u_inv is None \
                else self._u_inv
            handles = self.statistics.map_effects(transform_effects, handles, u_inv,
                                                  self._y_scale)
        return handles

    @cached_property
    def _parts(self) -> list[BlockEffects]:
        return self.statistics.gather(self.handles)

    def table(self, with_se: bool = False):
        n = self.names
        frames = self.statistics.map_effects(re_frame, self.handles, n.group_name,
                                             n.exog_re_names, with_se)
        return self.statistics.to_frame(frames, n.re_meta(with_se))

    def vc_table(self):
        n = self.names
        frames = self.statistics.map_effects(vc_frame, self.handles, n.group_name, n.vc_names,
                                             n.slot_names, n.slot_component)
        return self.statistics.to_frame(frames, n.vc_meta())

    def gathered_parts(self, with_se: bool = False) -> Iterator[pd.DataFrame]:
        """:meth:`table`'s parts as pandas, in order, made in this process for a fit on
        the embedded cluster, fetched a few at a time (see :func:`handed_out_here`)."""
        n = self.names
        frames = self.statistics.map_effects(re_frame, self.handles, n.group_name,
                                             n.exog_re_names, with_se)
        return handed_out_here(self.statistics, frames, n.re_meta(with_se))

    def gathered_vc_parts(self) -> Iterator[pd.DataFrame]:
        """:meth:`vc_table`'s parts as pandas, in order, made in this process for a fit
        on the embedded cluster, fetched a few at a time (see :func:`handed_out_here`)."""
        n = self.names
        frames = self.statistics.map_effects(vc_frame, self.handles, n.group_name, n.vc_names,
                                             n.slot_names, n.slot_component)
        return handed_out_here(self.statistics, frames, n.vc_meta())

    @cached_property
    def _lookup(self) -> EffectsLookup:
        if "_parts" in self.__dict__:  # already on the driver
            parts = self._parts
        else:  # only the modes travel, not the conditional covariances
            parts = self.statistics.gather(self.statistics.map_effects(modes_only,
                                                                       self.handles))
        return EffectsLookup.from_blocks(parts, len(self.names.slot_names))

    def lookup(self) -> EffectsLookup:
        return self._lookup

    def as_dict(self) -> dict:
        n = self.names
        out = {}
        for part in self._parts:  # gathers every group, as statsmodels' dict does
            vc_by_group = pd.Series(part.vc_modes).groupby(part.vc_group)
            vc_lists = {g: s.to_numpy() for g, s in vc_by_group}
            slot_lists = {g: s.to_numpy()
                          for g, s in pd.Series(part.vc_slot).groupby(part.vc_group)}
            for i, label in enumerate(part.labels):
                slots = slot_lists.get(i, np.zeros(0, dtype=np.int64))
                names = effect_names(n.exog_re_names, n.vc_names, n.slot_names,
                                     n.slot_component, slots)
                values = np.concatenate([part.re_modes[i], vc_lists.get(i, np.zeros(0))])
                out[label] = pd.Series(values, index=names)
        return dict(sorted(out.items(), key=lambda kv: kv[0]))

    def cov_dict(self) -> dict:
        if not self.statistics.full_effect_covariances:
            raise InputError(
                f"random_effects_cov: the {self.statistics.engine_name} engine keeps the "
                "conditional variance of each effect (vc_effects_table(), column "
                "'variance'), not the full covariance of the group's effects")
        n = self.names
        k_re = len(n.exog_re_names)
        out = {}
        for part in self._parts:
            for index, slots, cov in part.batches:
                for row, pos in enumerate(index):
                    keep = np.concatenate([np.ones(k_re, dtype=bool), slots[row] >= 0])
                    names = effect_names(n.exog_re_names, n.vc_names, n.slot_names,
                                         n.slot_component, slots[row])
                    out[part.labels[pos]] = pd.DataFrame(cov[row][np.ix_(keep, keep)],
                                                         index=names, columns=names)
        return dict(sorted(out.items(), key=lambda kv: kv[0]))


def handed_out_here(statistics: RandomEffectsStatistics, handles: list,
                    meta: pd.DataFrame) -> Iterator[pd.DataFrame]:
    """The parts of the table ``statistics.to_frame(handles, meta)`` computes to, for a
    fit on the embedded cluster, made in this process from the parts ``handles``,
    fetched a few at a time (:func:`~dlmm.io.parquet_parts.fetched_ahead`) and yielded
    in order: their concatenation is that table (``meta`` alone when every part is
    empty); neither it nor the whole table is ever made.

    Such a table is handed out over pandas (``dd.from_pandas`` of the parts'
    concatenation, :attr:`dlmm.distributed.dask_backend.DaskBackend.self_contained`), so
    computing it gives that concatenation with the dtypes Dask gives it (text as Arrow
    strings): here every part takes them from Dask's answer for the first row, without
    the division search and copies of handing all of it over Dask (measured, the
    outputs of 5,000,000 groups at a load of 4.5, four times each: 1.5-2.6 s, of which
    0.9-1.9 s of the writer's CPU, against 2.3-3.6 s and 1.7-3.0 s). Statistics whose
    tables are pandas (the crossed engine's, on the driver) give the parts as they are.
    """
    lazy = hasattr(statistics.to_frame([], meta), "compute")
    dtypes = None
    rows = False
    for part in fetched_ahead(statistics.gather, handles):
        if not len(part):
            continue
        if lazy:
            dtypes = dtypes or _dask_dtypes(part)
            part = _with_dtypes(part, dtypes)
        rows = True
        yield part
    if not rows:
        yield _with_dtypes(meta, _dask_dtypes(meta)) if lazy else meta


def _dask_dtypes(frame: pd.DataFrame) -> tuple[dict, object]:
    """The column dtypes and index dtype Dask gives a table whose first row is
    ``frame``'s (its columns' when it has no rows)."""
    import dask.dataframe as dd

    first = dd.from_pandas(frame.iloc[:1], npartitions=1, sort=False).compute(scheduler="sync")
    return first.dtypes.to_dict(), first.index.dtype


def _with_dtypes(frame: pd.DataFrame, dtypes: tuple[dict, object]) -> pd.DataFrame:
    columns, index = dtypes
    frame = frame.astype(columns)
    if frame.index.dtype != index:
        frame.index = frame.index.astype(index)
    return frame


class LoadedEffects(EffectsStore):
    """Effects read back from a saved result's tables.

    Parameters
    ----------
    re_table : DataFrame
        One row per group (index: group label), the standard random effects
        (and possibly their ``<name> SE`` columns).
    vc_table : DataFrame or None
        One row per variance-component effect.
    names : EffectNames
    """

    def __init__(self, re_table: pd.DataFrame, vc_table: pd.DataFrame | None,
                 names: EffectNames):
        self.names = names
        self._re_table = re_table
        self._vc_table = vc_table

    def table(self, with_se: bool = False):
        columns = list(self.names.exog_re_names)
        if with_se:
            missing = [f"{c} SE" for c in columns if f"{c} SE" not in self._re_table]
            if missing:
                raise InputError("a loaded result keeps the random effects without their SEs")
            columns += [f"{c} SE" for c in self.names.exog_re_names]
        return self._re_table[columns].copy()

    def vc_table(self):
        return None if self._vc_table is None else self._vc_table.copy()

    @cached_property
    def _lookup(self) -> EffectsLookup:
        n = self.names
        n_slots = max(len(n.slot_names), 1)
        slot_of = pd.Series(np.arange(len(n.slot_names)), index=pd.MultiIndex.from_arrays(
            [np.asarray(n.vc_names, dtype=object)[n.slot_component]
             if len(n.slot_names) else np.zeros(0, dtype=object),
             np.asarray(n.slot_names, dtype=object)]))
        labels = pd.Index(self._re_table.index)
        keys = np.zeros(0, dtype=np.int64)
        values = np.zeros(0)
        vc = self._vc_table
        if vc is not None and len(vc):
            group_pos = labels.get_indexer(vc.iloc[:, 0])
            slots = slot_of.reindex(pd.MultiIndex.from_arrays(
                [vc["component"].to_numpy(), vc["column"].to_numpy()])).to_numpy()
            keys = group_pos * n_slots + slots.astype(np.int64)
            order = np.argsort(keys, kind="stable")
            keys, values = keys[order], vc["effect"].to_numpy()[order]
        re_values = self._re_table[list(n.exog_re_names)].to_numpy(dtype=float)
        return EffectsLookup(labels, re_values, keys.astype(np.int64), values, n_slots)

    def lookup(self) -> EffectsLookup:
        return self._lookup

    def as_dict(self) -> dict:
        re_table = self._re_table[list(self.names.exog_re_names)]
        out = {label: row.astype(float) for label, row in re_table.iterrows()}
        vc = self._vc_table
        if vc is not None and len(vc):
            for label, part in vc.groupby(vc.columns[0], sort=False):
                extra = pd.Series(part["effect"].to_numpy(),
                                  index=[f"{c}[{n}]" for c, n in zip(part["component"],
                                                                      part["column"])])
                base = out.get(label, pd.Series(dtype=float))
                out[label] = pd.concat([base, extra])
        return dict(sorted(out.items(), key=lambda kv: kv[0]))

    def cov_dict(self) -> dict:
        raise InputError("random_effects_cov needs the fitted data; a loaded result has only "
                         "the random-effects tables it was saved with")
