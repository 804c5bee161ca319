"""The embedded cluster replaces a killed worker, also when Dask's lost-worker timer fires
while the nanny is restarting it (dlmm.distributed.restarting_cluster)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent('''
    import json
    import os
    import signal
    import time

    import dask

    from dlmm.distributed.embedded import close_embedded, embedded_client

    if __name__ == "__main__":
        # the timer armed by a worker's removal fires at once: a plain LocalCluster then
        # closes the nanny that is restarting that worker (the race of a worker killed
        # twice within the 15 s default)
        dask.config.set({"distributed.deploy.lost-worker-timeout": "0s"})
        client = embedded_client(n_workers=2, memory_limit="1GiB")
        before = dict(client.run(os.getpid))
        victim = sorted(before.values())[0]
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 120
        after = {}
        while time.monotonic() < deadline:  # until the replacement has registered
            try:
                client.wait_for_workers(2, timeout=max(1.0, deadline - time.monotonic()))
                after = dict(client.run(os.getpid))
            except Exception:
                after = {}
            if len(after) == 2 and victim not in after.values():
                break
            time.sleep(0.2)
        print(json.dumps({"victim": victim, "before": sorted(before.values()),
                          "after": sorted(after.values()),
                          "nannies": len(client.cluster.workers)}))
        close_embedded()
''')


def test_a_killed_worker_is_replaced_when_the_lost_worker_timer_fires(tmp_path):
    script = tmp_path / "kill.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=300, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(out["after"]) == 2 and out["victim"] not in out["after"]
    assert out["nannies"] == 2
