"""The driver loads the compiled loops that build a large crossed system while the rows
are read (:func:`dlmm.structure.crossed.load_build_loops`), once per process, in a
thread of its own (a fresh process: the suite has loaded them already)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

MEASURE = textwrap.dedent('''
    from dlmm.kernels.crossed import level_pairs, single
    from dlmm.spec.crossed import CrossedLayout
    from dlmm.structure.crossed import load_build_loops

    small = CrossedLayout(("a", "b"), (5000, 1999), (0, 5000))
    large = CrossedLayout(("a", "b", "c"), (900, 40000, 1200), (0, 900, 40900))
    assert load_build_loops(small) is None
    assert not level_pairs._fill_targets.signatures  # nothing loaded yet
    thread = load_build_loops(large)
    assert thread is not None and thread.daemon
    assert load_build_loops(large) is None  # once per process
    thread.join(60)
    assert not thread.is_alive()
    for loop in (level_pairs._count_targets, level_pairs._fill_targets,
                 single._merge_lower):
        assert len(loop.signatures) == 1, loop
    print("ok")
''')


def test_build_loops_load_in_a_thread_once():
    proc = subprocess.run([sys.executable, "-c", MEASURE], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "ok"
