"""dlmm.kernels.precompile: each family's warm-up reaches its compiled loops."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from dlmm.kernels.precompile import FAMILIES, precompile

#: In a new process (no loop of dlmm called before): after the warm-ups, which loops hold
#: machine code (a numba dispatcher's ``signatures``).
PROBE = textwrap.dedent("""\
    import json

    from dlmm.kernels import crossprod_loops, effects_loop, residual_loops, step_loop
    from dlmm.kernels.crossed import sparse_loops
    from dlmm.kernels.nested import loops as nested_loops
    from dlmm.kernels.precompile import precompile

    loops = {"one pass": crossprod_loops.fused_loop,
             "small step": step_loop.small_step_loop,
             "general step": step_loop.step_loop,
             "effects": effects_loop.transform_loop,
             "nested": nested_loops.%s,
             "crossed": sparse_loops.%s,
             "residual": residual_loops.residual_sweep_loop}
    before = sorted(name for name, loop in loops.items() if loop.signatures)
    seconds = precompile()
    after = sorted(name for name, loop in loops.items() if loop.signatures)
    print(json.dumps({"before": before, "after": after, "families": sorted(seconds)}))
""")


def test_every_family_reaches_its_loops():
    proc = subprocess.run([sys.executable, "-c", PROBE % ("product_loop", "cholesky")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["before"] == []
    assert out["after"] == sorted(["one pass", "small step", "general step", "effects",
                                   "nested", "crossed", "residual"])
    assert out["families"] == sorted(FAMILIES)


def test_an_unknown_family_is_named():
    with pytest.raises(ValueError, match="'groupd'"):
        precompile(["groupd"])
