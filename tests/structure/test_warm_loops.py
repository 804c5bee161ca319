"""The one pass loads the steps' compiled loops while it reads (issue 27): in a fresh
process, a pass over a chunk of many groups leaves the loops of the steps and the
effects loaded (numba's start paid in a thread of the pass, not by the first step),
and the pieces the first step then computes are the NumPy reference's."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent('''
    import json
    import threading

    import numpy as np
    import pandas as pd

    from dlmm.distributed.local import LocalBackend
    from dlmm.kernels.hessian import numpy_batch_newton_pieces
    from dlmm.spec.formula import FormulaSpec
    from dlmm.structure.grouped import one_pass

    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(21000), 3)
    x1 = rng.normal(size=g.shape[0])
    frame = pd.DataFrame({"y": 1 + x1 + rng.normal(size=21000)[g] + rng.normal(size=g.shape[0]),
                          "x1": x1, "g": g})
    spec = FormulaSpec("y ~ x1", "g", re_formula="~x1")
    spec.learn_levels(frame.head(400), {})
    stats = one_pass(spec, LocalBackend(frame))
    for thread in threading.enumerate():  # the warm-up, if any, to its end
        if thread.name.startswith("dlmm-warm"):
            thread.join()
    from dlmm.kernels import effects_loop, step_loop

    loaded = {"step": len(step_loop.small_step_loop.signatures),
              "modes": len(effects_loop.modes_loop.signatures),
              "transform": len(effects_loop.transform_loop.signatures)}
    block = stats.blocks[0]
    chol, sd = np.array([[0.8, 0.0], [0.3, 0.5]]), np.zeros(0)
    step = stats.newton_pieces(chol, sd)
    ref = sum((numpy_batch_newton_pieces(b, chol, sd) for b in block.batches[1:]),
              numpy_batch_newton_pieces(block.batches[0], chol, sd))
    loaded["logdet"] = [float(step.value.logdet), float(ref.value.logdet)]
    loaded["hess"] = [np.asarray(step.hess.trace2).tolist(), np.asarray(ref.hess.trace2).tolist()]
    print(json.dumps(loaded))
''')


def test_the_pass_loads_the_steps_loops():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out["step"] >= 1 and out["modes"] >= 1 and out["transform"] >= 1, out
    a, b = out["logdet"]
    assert abs(a - b) <= 1e-9 * abs(b)
    import numpy as np

    np.testing.assert_allclose(out["hess"][0], out["hess"][1], rtol=1e-9)


def test_the_loops_load_once_the_chunks_are_read(monkeypatch):
    """The load (0.11-0.14 s of CPU a worker) starts as the blocks are built, not while
    the chunks are read (issue 27: it was taken from the reads on the busy 2-core
    machine); once a process, from a part of a block of many groups."""
    import numpy as np
    import pandas as pd

    from dlmm.distributed.local import LocalBackend
    from dlmm.spec.formula import FormulaSpec
    from dlmm.structure import grouped

    calls = []
    read = grouped.chunk_crossproducts
    monkeypatch.setattr(grouped, "chunk_crossproducts",
                        lambda frame, spec: calls.append("chunk") or read(frame, spec))
    monkeypatch.setattr(grouped, "warm_in_background",
                        lambda keyed, slots: calls.append(("warm", keyed.labels.shape[0])))
    rng = np.random.default_rng(4)
    n_groups = 2 * grouped.WARM_MIN_GROUPS + 10
    g = np.repeat(np.arange(n_groups), 2)
    frame = pd.DataFrame({"y": rng.normal(size=g.shape[0]), "x1": rng.normal(size=g.shape[0]),
                          "g": g})
    spec = FormulaSpec("y ~ x1", "g", re_formula="~x1")
    spec.learn_levels(frame.head(400), {})
    grouped.one_pass(spec, LocalBackend(frame, chunk_rows=n_groups))  # two chunks
    assert calls.count("chunk") == 2
    warm = [j for j, c in enumerate(calls) if c != "chunk"]
    assert warm and min(warm) > max(j for j, c in enumerate(calls) if c == "chunk"), calls
    assert all(c[1] >= grouped.WARM_MIN_GROUPS for c in calls if c != "chunk"), calls
