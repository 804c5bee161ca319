"""Compile every family of dlmm's compiled loops once, into numba's cache.

numba compiles a loop on its first call in a process where its cache holds no machine
code for it yet (seconds of CPU for each large loop), and several processes that start
at once on a new machine each compile the same loops before any has written them: the
test suite's parallel processes, a new cluster's workers. :func:`precompile` runs each
family's warm-up (:mod:`dlmm.kernels.warm`, :mod:`dlmm.kernels.nested.warm`,
:mod:`dlmm.kernels.crossed.warm`, :func:`dlmm.kernels.residual_blocks.warm_sweep`) on
tiny inputs with the argument types real fits give, so that later processes load the
machine code instead. Numbers computed here are thrown away.

    python -m dlmm.kernels.precompile [grouped nested crossed residual]
"""

from __future__ import annotations

import time

import numpy as np


def _grouped() -> None:
    """The one pass's loop, then the steps and effects of one, two (the small layout) and
    three random effects (the general loop) on the keyed sums of a few groups."""
    from .block import KeyedCrossProducts
    from .crossprod import fused_crossproducts
    from .warm import warm_loops, warm_pass_loop

    warm_pass_loop()
    rows = 24
    columns = tuple(np.sin(np.arange(rows) * (j + 1.0)) for j in range(4))
    seg_start = np.arange(0, rows + 1, 4, dtype=np.int64)
    seg_code = np.arange(seg_start.shape[0] - 1, dtype=np.int64)
    xy_src = np.array([-1, 0, 1, 3])
    for z_src in ([-1], [-1, 0], [-1, 0, 2]):
        k = len(z_src)
        sums = fused_crossproducts(columns, xy_src, np.array(z_src),
                                   (np.zeros(4), np.ones(4), np.zeros(k), np.ones(k)),
                                   seg_start, seg_code, seg_code.shape[0])
        warm_loops(KeyedCrossProducts(seg_code.copy(), sums.cp), np.zeros(0, dtype=np.int64))


#: The families of compiled loops, by name.
FAMILIES = ("grouped", "nested", "crossed", "residual")


def precompile(families: tuple[str, ...] | list[str] = FAMILIES) -> dict[str, float]:
    """Run each named family's warm-up once (:data:`FAMILIES`); the seconds each took
    (compiling, or loading from numba's cache what is there)."""
    from .crossed.warm import warm_up as crossed_warm_up
    from .nested.warm import warm_up as nested_warm_up
    from .residual_blocks import warm_sweep

    runs = {"grouped": _grouped, "nested": nested_warm_up, "crossed": crossed_warm_up,
            "residual": lambda: warm_sweep(2, 4)}
    unknown = [name for name in families if name not in runs]
    if unknown:
        raise ValueError(f"no family of compiled loops named {unknown[0]!r}; "
                         f"known: {', '.join(FAMILIES)}")
    seconds = {}
    for name in families:
        start = time.perf_counter()
        runs[name]()
        seconds[name] = time.perf_counter() - start
    return seconds


if __name__ == "__main__":  # pragma: no cover - a command
    import sys

    done = precompile(sys.argv[1:] or FAMILIES)
    print(" ".join(f"{name} {s:.1f} s" for name, s in done.items()))
