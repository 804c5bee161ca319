"""statsmodels' nested shape on the nested engine, seen through the grouped interface.

A group with its standard random effects and one variance component of a factor's
indicators within it::

    mixedlm("score ~ gcsecnt", data, groups="lea", re_formula="1",
            vc_formula={"school": "0 + C(school)"})      # lme4: (1 | lea/school)

is a two-level tree: the group's ``k_re`` effects (``Lambda_0 = chol_re``) and, per
level of the factor within the group, one effect (``Lambda_1 = sd_vc``). The grouped
engine factors each group's dense ``(k_re + levels) x (k_re + levels)`` block; the
nested engine (:mod:`dlmm.structure.nested`) factors the tree, a cost linear in the
levels. :class:`NestedGroupedStatistics` keeps the model's parameters
``(chol_re, sd_vc)``, packed as the optimizer packs them (the lower triangle of
``chol_re`` row by row, then ``sd_vc``), so that the model, its start values and every
result read it as they read the grouped engine; only the Hessian pieces are missing
(the fit optimizes on gradients, as for crossed designs).

Rows are keyed by global codes: the group's (the position of its label among the
group column's sorted distinct values, asked of the data before the pass) and the
factor's (its learned level). When the pass sums shifted random-effect columns
(``Z = Z_c U``, :mod:`dlmm.spec.centering`), ``Lambda_0 = U chol_re``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from ..kernels.block import BlockEffects, transform_effects
from ..kernels.hessian import NewtonPieces
from ..kernels.moments import MomentPieces
from ..spec.indicators import IndicatorSpec
from .base import ON_DRIVER_MAX_BYTES, RandomEffectsStatistics
from .nested import RowsOnceDesign

#: The nested engine takes a nested shape whose factor has at least this many learned
#: levels. Below, a group's dense block (``k_re`` + the factor's levels in it) is small,
#: and the grouped engine's exact Hessian pieces (trust-region Newton, standard errors
#: to statsmodels' digits) cost less than the nested engine's gradient differences.
NESTED_MIN_LEVELS = 32


def nested_component(spec) -> str | None:
    """The factor of ``spec``'s one indicator variance component when ``spec`` has the
    nested shape (a group column, exactly one component, plain indicators ``0 + C(f)``,
    at least ``NESTED_MIN_LEVELS`` levels), else None."""
    specs = getattr(spec, "_vc_specs", None)
    if getattr(spec, "groups", None) is None or specs is None or len(specs) != 1:
        return None
    if not isinstance(specs[0], IndicatorSpec) or \
            len(spec.vc_column_names[0]) < NESTED_MIN_LEVELS:
        return None
    return specs[0].factor


class SpecNestedDesign(RowsOnceDesign):
    """A chunk's rows as the nested pass reads them (:class:`dlmm.structure.nested.
    NestedDesign`), from the learned specification: level codes (the group's position
    among ``group_labels``, the factor's learned level), ``Z`` and the indicator
    column, ``[X y]`` (shifted and scaled as the specification says)."""

    def __init__(self, spec, group_labels: np.ndarray):
        self.spec = spec
        self.group_labels = group_labels
        factor = nested_component(spec)
        self.factor_names = (spec.groups, f"{spec.groups}:{factor}")
        self.own_codes = (True, False)  # the factor's levels repeat across groups
        self.n_levels = len(spec.vc_column_names[0])

    def rows(self, frame: pd.DataFrame) -> tuple:
        design = self.spec.design(frame)
        xy, z = self.spec.centering.apply(design.xy, design.z)
        w = design.w.tocsr()
        if not w.has_sorted_indices:
            w = w.copy()
            w.sort_indices()
        if np.any(np.diff(w.indptr) != 1):  # plain indicators: one per complete row
            raise ValueError("a nested component is not one indicator per row")
        groups = pd.Categorical(design.groups, categories=self.group_labels).codes
        indicator = np.asarray(w.data, dtype=float)[:, None]
        if design.weights is not None:  # rows times sqrt(w) (dlmm.spec.residual)
            sw = np.sqrt(design.weights)[:, None]
            xy, z, indicator = xy * sw, z * sw, indicator * sw
        out = ([groups.astype(np.int64), w.indices.astype(np.int64)],
               [z, indicator], xy,
               (design.n_dropped, design.missing_by_column, design.infinite_by_column,
                design.log_weights, design.bad_weights))
        return out



def packed_maps(k_re: int, u: np.ndarray | None):
    """``(to_lambdas, dlambdas)`` for ``theta = [tril(chol_re) row by row, sd_vc]``:
    ``Lambda_0 = U chol_re``, ``Lambda_1 = sd_vc I``; ``d Lambda_0 / d L_ab = U E_ab``."""
    u = np.eye(k_re) if u is None else np.asarray(u, dtype=float)
    rows, cols = np.tril_indices(k_re)
    directions = []
    for a, b in zip(rows, cols):  # k_re (k_re + 1) / 2 parameters
        e = np.zeros((k_re, k_re))
        e[a, b] = 1.0
        directions.append((0, u @ e))
    directions.append((1, np.ones((1, 1))))

    def to_lambdas(theta: np.ndarray) -> list[np.ndarray]:
        chol = np.zeros((k_re, k_re))
        chol[rows, cols] = theta[: rows.size]
        return [u @ chol, np.full((1, 1), float(theta[rows.size]))]

    def dlambdas(theta: np.ndarray) -> list:
        return directions

    return to_lambdas, dlambdas


def pack(chol_re: np.ndarray, sd_vc: np.ndarray) -> np.ndarray:
    chol_re = np.asarray(chol_re, dtype=float)
    return np.concatenate([chol_re[np.tril_indices(chol_re.shape[0])],
                           np.asarray(sd_vc, dtype=float).ravel()])


def to_block_effects(effects, group_labels: np.ndarray) -> BlockEffects:
    """A block's :class:`~dlmm.structure.nested.NestedEffects` as the grouped engine's
    :class:`~dlmm.kernels.block.BlockEffects`: the group's effects, and one component
    effect per (group, level) at the level's column (no full covariances)."""
    outer = np.asarray(effects.keys[0])[:, 0] if len(effects.keys[0]) else \
        np.zeros(0, dtype=np.int64)
    inner = np.asarray(effects.keys[1]).reshape(-1, 2)
    position = np.searchsorted(outer, inner[:, 0])
    return BlockEffects(
        labels=np.asarray(group_labels)[outer], re_modes=effects.modes[0],
        re_cov=effects.cov[0], vc_group=position.astype(np.int64),
        vc_slot=inner[:, 1].astype(np.int64), vc_modes=effects.modes[1][:, 0],
        vc_var=effects.cov[1][:, 0, 0], batches=[])


class NestedGroupedStatistics(RandomEffectsStatistics):
    """The nested engine's statistics behind the grouped engine's parameters.

    Parameters
    ----------
    nested : dlmm.structure.nested.NestedStatistics
        Built with :func:`packed_maps` (``u`` included).
    u : ndarray or None
        ``U`` with ``Z = Z_c U`` when the pass summed shifted columns.
    group_labels : ndarray
        The group column's sorted distinct values (the codes' labels).
    """

    engine_name = "nested"

    def __init__(self, nested, u: np.ndarray | None, group_labels: np.ndarray):
        self.inner = nested
        self.u = u
        self.group_labels = group_labels

    def __getattr__(self, name: str) -> Any:  # totals, n_groups, seconds, blocks...
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    @property
    def backend_name(self) -> str:
        return self.inner.backend_name

    @property
    def has_newton_pieces(self) -> bool:
        return False

    @property
    def has_moment_pieces(self) -> bool:
        return False

    @property
    def full_effect_covariances(self) -> bool:
        return False

    def vc_effect_counts(self) -> np.ndarray:
        return np.asarray([self.inner.n_nodes[1]], dtype=np.int64)

    def on_driver(self, max_bytes: int = ON_DRIVER_MAX_BYTES) -> RandomEffectsStatistics:
        inner = self.inner.on_driver(max_bytes)
        return self if inner is self.inner else \
            NestedGroupedStatistics(inner, self.u, self.group_labels)

    def centred(self) -> tuple[RandomEffectsStatistics, np.ndarray | None]:
        if self.u is None:
            return self, None
        k_re = self.u.shape[0]
        to_lambdas, dlambdas = packed_maps(k_re, None)
        inner = replace(self.inner, to_lambdas=to_lambdas, dlambdas=dlambdas, _last=None)
        return NestedGroupedStatistics(inner, None, self.group_labels), self.u

    def pieces(self, chol_re: np.ndarray, sd_vc: np.ndarray):
        return self.inner.pieces(pack(chol_re, sd_vc))

    def newton_pieces(self, chol_re: np.ndarray, sd_vc: np.ndarray) -> NewtonPieces:
        raise NotImplementedError("the nested engine has no Hessian pieces")

    def moment_pieces(self, coef: np.ndarray) -> MomentPieces:
        raise NotImplementedError("the nested engine has no moment pieces "
                                  "(has_moment_pieces is False)")

    def drop_fixed_columns(self, keep_xy: np.ndarray) -> None:
        self.inner.drop_fixed_columns(keep_xy)

    def effects(self, chol_re: np.ndarray, sd_vc: np.ndarray, coef: np.ndarray,
                scale: float) -> list[Any]:
        handles = self.inner.effects(pack(chol_re, sd_vc), coef, scale)
        handles = self.inner.map_effects(to_block_effects, handles, self.group_labels)
        if self.u is not None:  # computed for b_c = U b
            handles = self.inner.map_effects(transform_effects, handles, np.linalg.inv(self.u))
        return handles

    def map_effects(self, func, handles: list[Any], *args) -> list[Any]:
        return self.inner.map_effects(func, handles, *args)

    def gather(self, handles: list[Any]) -> list[Any]:
        return self.inner.gather(handles)

    def to_frame(self, handles: list[Any], meta: pd.DataFrame) -> Any:
        return self.inner.to_frame(handles, meta)

    def map_rows(self, func, meta: Any, *shared: Any) -> Any:
        return self.inner.map_rows(func, meta, *shared)


def nested_grouped_pass(spec, backend, progress=None) -> NestedGroupedStatistics:
    """The one pass of a nested-shaped ``spec`` (:func:`nested_component`) on the nested
    engine; the group column's distinct values are asked of the data first."""
    from ..objective.shift import random_effects_map
    from .nested import nested_pass

    labels = np.asarray(backend.distinct([spec.groups])[spec.groups])
    if labels.dtype.kind == "U":
        labels = labels.astype(object)
    centering = spec.centering
    u = random_effects_map(centering.z_shift, centering.z_intercept, centering.z_scale) \
        if centering.shifts_z else None
    to_lambdas, dlambdas = packed_maps(spec.k_re, u)
    nested = nested_pass(SpecNestedDesign(spec, labels), backend, to_lambdas, dlambdas,
                         progress)
    k = spec.k_re  # the model checks the rank of the standard random effects' Z'Z
    nested.totals.z_cross = np.ascontiguousarray(nested.totals.z_cross[:k, :k])
    return NestedGroupedStatistics(nested, u, labels)
