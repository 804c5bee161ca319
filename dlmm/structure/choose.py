"""Which engine holds a model's statistics, chosen from its specification."""

from __future__ import annotations

from typing import Any

from ..distributed.base import Backend
from ..exceptions import InputError
from ..objective.shift import random_effects_map
from ..spec.crossed import CrossedLayout, crossed_layout
from .base import RandomEffectsStatistics
from .crossed import crossed_pass
from .crossed_tiled import tiled_client, tiled_pass
from .grouped import one_pass
from .nested_grouped import nested_component, nested_grouped_pass
from .residual_pass import residual_pass
from .shifted import ShiftedStatistics


def crossed_design(spec, backend: Backend) -> tuple[CrossedLayout | None, Any]:
    """The crossed layout of ``spec`` and its one group's label, or ``(None, None)``.

    With a group column the model is crossed only if the column is constant: that
    is asked of the data (one distinct-values query) only when everything else
    about the specification is crossed.
    """
    if getattr(spec, "groups", None) is None:
        return crossed_layout(spec), 0
    if crossed_layout(spec, group_levels=[None]) is None:
        return None, None
    levels = backend.distinct([spec.groups])[spec.groups]
    layout = crossed_layout(spec, group_levels=levels)
    return layout, (levels[0] if layout is not None else None)


def collect_statistics(spec, backend: Backend, progress=None) -> RandomEffectsStatistics:
    """Make the one pass over ``backend``'s rows with the engine that fits ``spec``.

    A crossed design (:func:`dlmm.spec.crossed.crossed_layout`: one group, each
    variance component one factor's indicators, no standard random effects) goes
    to the crossed engine (:mod:`dlmm.structure.crossed`); a group with one
    component of a factor's indicators within it (``(1 | lea/school)``) to the nested
    engine (:mod:`dlmm.structure.nested_grouped`); every other model to the grouped
    engine (:mod:`dlmm.structure.grouped`), kept by stratum where the residual
    covariance has parameters (:mod:`dlmm.structure.residual_pass`: a variance per
    stratum, AR(1) errors; the other engines refuse them). When the specification
    shifts random-effect columns (``spec.centering``), the grouped statistics are
    seen through :class:`ShiftedStatistics`. ``progress(done, total)`` is called
    as chunks of rows are done.
    """
    parametric = spec.residual.parametric
    layout, label = crossed_design(spec, backend)
    if layout is not None or (parametric and nested_component(spec) is not None):
        if parametric:
            raise InputError("residual_by and residual_ar1 need one grouping factor with "
                             "random effects of its own (crossed or nested designs are not "
                             "supported yet)")
        client = tiled_client(layout, backend)  # a dense part beyond the driver's limit
        if client is not None:
            return tiled_pass(spec, layout, backend, client, label, progress)
        return crossed_pass(spec, layout, backend, label, progress)
    if nested_component(spec) is not None:
        return nested_grouped_pass(spec, backend, progress)
    stats = residual_pass(spec, backend, progress) if parametric else \
        one_pass(spec, backend, progress)
    centering = spec.centering
    if centering.shifts_z:
        u = random_effects_map(centering.z_shift, centering.z_intercept, centering.z_scale)
        return ShiftedStatistics(stats, u, spec.k_vc)
    return stats
