"""Load the compiled loops of the one pass, the steps and the effects before they are needed.

The first call of a compiled loop in a process pays numba's start and the load of its
cached machine code (0.3-0.4 s of CPU). A worker of the one pass can pay it while it
reads (:func:`warm_loops` on a few of the groups it has summed, in a thread of its
own): the loops the optimizer's steps and the effects then run are those of the same
layouts, already loaded. A worker process of the embedded cluster loads the one
pass's loop as it starts (:func:`warm_pass_loop`, from
:mod:`dlmm.distributed.worker_setup`), before its first chunk arrives. Numbers
computed here are thrown away.
"""

from __future__ import annotations

import threading

import numpy as np

from .block import KeyedCrossProducts, build_block

#: Groups of a chunk given to the loops (enough to meet each layout of a block).
SAMPLE_GROUPS = 64

_WARMED: set = set()
_LOCK = threading.Lock()


def warm_loops(keyed: KeyedCrossProducts, slot_component: np.ndarray) -> None:
    """Run each compiled loop of the steps (value, gradient and Hessian) and of the
    effects once on the first :data:`SAMPLE_GROUPS` groups of ``keyed``."""
    from .effects_loop import transform_loop
    from .hessian import compiled_batch_newton_pieces
    from .likelihood import compiled_conditional_modes

    n = keyed.labels.shape[0]
    if n == 0:
        return
    keep = np.zeros(n, dtype=bool)
    keep[:SAMPLE_GROUPS] = True
    block = build_block([keyed.select(keep)], slot_component)
    for batch in block.batches:  # a handful of layouts
        k_re = batch.k_re
        chol = np.eye(k_re)
        sd_vc = np.ones(batch.widths.shape[0])
        compiled_batch_newton_pieces(batch, chol, sd_vc)
        coef = np.zeros(batch.h.shape[2])
        coef[-1] = 1.0
        _, cov = compiled_conditional_modes(batch, chol, sd_vc, coef)
        transform_loop(np.ascontiguousarray(cov), k_re, np.eye(k_re), 1.0, np.empty_like(cov))


def warm_in_background(keyed: KeyedCrossProducts, slot_component: np.ndarray) -> bool:
    """:func:`warm_loops` in a daemon thread, once per process and layout of component
    slots; whether a thread was started."""
    key = (keyed.cp.zr.shape[1:], int(slot_component.shape[0]))
    with _LOCK:
        if key in _WARMED:
            return False
        _WARMED.add(key)
    thread = threading.Thread(target=_quietly, args=(keyed, slot_component),
                              name="dlmm-warm-loops", daemon=True)
    thread.start()
    return True


def _quietly(keyed: KeyedCrossProducts, slot_component: np.ndarray) -> None:
    try:
        warm_loops(keyed, slot_component)
    except Exception:  # noqa: BLE001 - a warm-up only: the step itself will say
        pass


def warm_pass_loop() -> None:
    """Run the one pass's compiled loop (:func:`.crossprod.fused_crossproducts`) once on
    two groups of a plain model of a few columns (an intercept and a slope): the
    specialization every such model's chunks use, loaded from numba's cache; and the
    runs of integer group labels (:func:`.crossprod_loops.number_runs`)."""
    from .crossprod import fused_crossproducts
    from .crossprod_loops import number_runs

    values = np.linspace(0.0, 1.0, 8)
    columns = tuple(values + j for j in range(4))
    ones = np.ones(3)
    fused_crossproducts(columns, np.array([-1, 0, 1]), np.array([-1, 0]),
                        (np.zeros(3), ones, np.zeros(2), ones[:2]),
                        np.array([0, 4, 8]), np.array([0, 1]), 2)
    number_runs(np.array([0, 0, 1], dtype=np.int64), np.zeros(3, dtype=np.bool_))
