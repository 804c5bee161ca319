"""Predicted random effects: tables, statsmodels' dicts, and per-row contributions.

The conditional modes are computed on the workers from the persisted blocks
(:func:`dlmm.kernels.block.block_effects`); the rows are never read again.
The table form has one row per group and stays distributed for Dask input;
the dict forms (``random_effects``, ``random_effects_cov``) are statsmodels'
API and gather every group on the driver.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .kernels.block import BlockEffects
from .kernels.predict import random_part


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

    def contribution(self, design) -> np.ndarray:
        """``Z b + W v`` of the rows of a design (0 for groups not in the fit)."""
        index = self.labels.get_indexer(design.groups)
        return random_part(design.z, index, self.re_values, design.w, self.vc_keys,
                           self.vc_values, self.n_slots)
