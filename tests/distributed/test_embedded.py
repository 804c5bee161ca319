"""Results of a fit on the embedded cluster, as a user gets them (issue 20, item 1).

The embedded cluster is dlmm's own and never the default scheduler: a lazy result
that referred to its futures could be computed by no scheduler the user has.
A script with a ``__main__`` guard (as users run one: worker processes) fits
Parquet input on the embedded cluster, with no client of its own, then asks for
every result: computed by Dask's local scheduler, then after it starts a client of
its own (the new default), then after it closes that client. The numbers are
lme4's (``tests/reference/cases.json``), or derived from them by hand.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from tests.conftest import REFERENCE

SCRIPT = textwrap.dedent('''
    import json
    import logging
    import sys

    import dask
    import numpy as np
    import pandas as pd

    import dlmm
    from dlmm.distributed import dask_backend


    def table(frame):
        return {str(k): [float(v) for v in row] for k, row in frame.iterrows()}


    def lazy_results(r, data):
        """The results that are lazy Dask collections, computed as a user computes them."""
        fitted = r.fittedvalues.compute().sort_index()
        return {
            "re_table": table(r.random_effects_table(with_se=True).compute()),
            "fitted": fitted.tolist(),
            "resid": r.resid.compute().sort_index().tolist(),
            "coef": table(r.coef().compute()),
            "predicted": r.predict(data, random_effects=True).compute().sort_index().tolist(),
        }


    class Messages(logging.Handler):
        def __init__(self):
            super().__init__(logging.INFO)
            self.messages = []

        def emit(self, record):
            self.messages.append(record.getMessage())


    def exit_marker(out):
        import atexit
        import os

        atexit.register(lambda: open(f"{out}/exit-{os.getpid()}", "w").close())


    def certificate_probes(client):
        """Connections to the embedded scheduler with its own certificate and with
        another self-signed one (Dask's ``Security.temporary()``)."""
        from distributed.comm import connect
        from distributed.security import Security

        async def attempt(**kwargs):
            comm = await connect(client.scheduler.address, timeout=3, **kwargs)
            await comm.close()

        out = {}
        for name, security in [("own_certificate", client.security),
                               ("other_certificate", Security.temporary())]:
            try:
                client.sync(attempt, **security.get_connection_args("client"))
                out[name] = "connected"
            except Exception as exc:  # noqa: BLE001 - the outcome is the fact
                out[name] = type(exc).__name__
        return out


    def main(data, out):
        log = Messages()
        logging.getLogger("dlmm").addHandler(log)
        logging.getLogger("dlmm").setLevel(logging.INFO)
        # The embedded cluster even for input this small (an in-process fit otherwise).
        with dask.config.set({"dlmm.in-process-max-bytes": 0}):
            r = dlmm.mixedlm("Reaction ~ Days", data, groups="Subject",
                             re_formula="~Days").fit()
        facts = {"backend": r.backend, "converged": bool(r.converged),
                 "embedded": dask_backend._EMBEDDED.get("client") is not None,
                 "default_client": dask_backend.current_client() is not None,
                 "stealing": dask_backend._EMBEDDED["client"].run_on_scheduler(
                     lambda dask_scheduler: "stealing" in dask_scheduler.extensions)}
        certificates = certificate_probes(dask_backend._EMBEDDED["client"])
        monitoring = dask_backend._EMBEDDED["client"].run(
            lambda: [dask.config.get(k) for k in ("distributed.admin.tick.interval",
                                                  "distributed.admin.system-monitor.interval",
                                                  "distributed.worker.profile.enabled")])
        local = dlmm.mixedlm("Reaction ~ Days", data, groups="Subject",
                             re_formula="~Days").fit()  # small input: in this process
        paths = {"backends": [r.backend, local.backend], "llf": [r.llf, local.llf],
                 "params": [r.params.tolist(), local.params.tolist()],
                 "cluster_start": [r.timings["cluster_start"],
                                   local.timings["cluster_start"]],
                 "log": list(log.messages)}
        runs = {"no client": lazy_results(r, data)}
        r.save(f"{out}/saved")
        saved = pd.read_parquet(f"{out}/saved/random_effects.parquet")
        r.write_random_effects(f"{out}/re")
        written = pd.read_parquet(f"{out}/re")
        caterpillar = r.plot_random_effects()
        points = [sorted(float(x) for x in ax.lines[0].get_xdata()) for ax in caterpillar.axes]
        residuals = r.plot_residuals()  # a Figure, as every plot
        offsets = residuals.axes[0].collections[0].get_offsets()
        r.plot_qq()

        from distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                               dashboard_address="127.0.0.1:0")
        client = Client(cluster)  # the user's: now the default scheduler
        runs["user client"] = lazy_results(r, data)
        client.close()
        cluster.close()
        runs["client closed"] = lazy_results(r, data)
        # A stand-in for a worker's slow exit (numba's teardown, its blocks): an exit
        # handler of each worker process, which writes a file if it runs at all.
        dask_backend._EMBEDDED["client"].run(exit_marker, out)
        json.dump({"facts": facts, "certificates": certificates, "paths": paths,
                   "monitoring": list(monitoring.values()),
                   "runs": runs, "saved": table(saved),
                   "written": table(written), "caterpillar": points,
                   "resid_plot": sorted(float(v) for v in offsets[:, 1])}, sys.stdout)


    if __name__ == "__main__":
        main(sys.argv[1], sys.argv[2])
''')


@pytest.fixture(scope="module")
def sleepstudy():
    """lme4's fit of sleepstudy (REML) and the data, as pandas."""
    case = json.loads((REFERENCE / "cases.json").read_text())["sleepstudy_reml"]
    data = pd.read_csv(REFERENCE / "data" / "sleepstudy.csv")
    return case, data


@pytest.fixture(scope="module")
def run(tmp_path_factory, sleepstudy):
    """The script's output (one fit, every result three times)."""
    _, data = sleepstudy
    folder = tmp_path_factory.mktemp("embedded")
    path = folder / "sleep.parquet"
    data.to_parquet(path, index=False)
    script = folder / "fit_script.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, str(script), str(path), str(folder)],
                          capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # The cluster closes at exit after the client let go of its results: no warnings
    # about lost work, no tracebacks.
    assert "lose already computed task" not in proc.stderr, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return json.loads(proc.stdout), folder


def _lme4_expected(case, data):
    """lme4's conditional modes, their conditional SDs, coef and fitted values: the
    modes from the reference, the rest from lme4's estimates by hand."""
    fe = case["expected"]["fe_params"]
    scale = case["expected"]["scale"]
    psi = np.array(case["expected"]["cov_re"]) / scale
    modes = {r["level"]: np.array([r["(Intercept)"], r["Days"]])
             for r in case["random_effects"]["Subject"]}
    se = {}
    for level, rows in data.groupby(data["Subject"].astype(str)):
        z = np.column_stack([np.ones(len(rows)), rows["Days"].to_numpy()])
        cov = scale * np.linalg.inv(np.linalg.inv(psi) + z.T @ z)  # Var(b | y)
        se[level] = np.sqrt(np.diag(cov))
    coef = {k: np.array([fe["Intercept"] + b[0], fe["Days"] + b[1]]) for k, b in modes.items()}
    subject = data["Subject"].astype(str)
    fitted = np.array([coef[s][0] + coef[s][1] * d for s, d in zip(subject, data["Days"])])
    return modes, se, coef, fitted


def test_fit_ran_on_the_embedded_cluster(run):
    out, _ = run
    assert out["facts"] == {"backend": "dask", "converged": True, "embedded": True,
                            "default_client": False, "stealing": False}


def test_workers_end_at_once_when_the_cluster_closes(run):
    """A worker of the embedded cluster ends its process as soon as it has closed: no
    exit handler, no interpreter teardown after that (2-3 s a run with numba loaded,
    then the nanny's kill at 4 s: the end of every CLI run; issue 27)."""
    _, folder = run
    assert not list(folder.glob("exit-*"))


def test_the_embedded_cluster_admits_its_own_certificate_only(run):
    """Its certificate and key are made at its start (an elliptic-curve key,
    :func:`dlmm.distributed.embedded.embedded_security`): a client holding them
    connects, one with another self-signed certificate (RSA, as Dask makes) is
    refused."""
    probes = run[0]["certificates"]
    assert probes["own_certificate"] == "connected", probes
    assert probes["other_certificate"] != "connected", probes


def test_the_embedded_clusters_workers_run_the_dashboards_monitoring_slower(run):
    """Every worker of the embedded cluster has the monitoring settings it was started
    with (distributed's defaults: a 20 ms tick, the system monitor every 0.5 s, the
    profiler on), as distributed's own tests run theirs."""
    monitoring = run[0]["monitoring"]
    assert monitoring and all(m == ["500ms", "2s", False] for m in monitoring), monitoring


def test_the_embedded_cluster_steals_no_work(run):
    """A step's task runs where its block is: the embedded cluster's scheduler has no
    work stealing, which would move a block to another worker (issue 27)."""
    out, _ = run
    assert out["facts"]["stealing"] is False


@pytest.mark.parametrize("when", ["no client", "user client", "client closed"])
def test_lazy_results_compute_with_any_scheduler(run, sleepstudy, when):
    case, data = sleepstudy
    modes, se, coef, fitted = _lme4_expected(case, data)
    got = run[0]["runs"][when]
    assert set(got["re_table"]) == set(modes)
    for level, (b0, b1, s0, s1) in got["re_table"].items():
        np.testing.assert_allclose([b0, b1], modes[level], atol=2e-3)
        np.testing.assert_allclose([s0, s1], se[level], rtol=1e-4)
    assert set(got["coef"]) == set(coef)
    for level, values in got["coef"].items():
        np.testing.assert_allclose(values, coef[level], atol=2e-3)
    np.testing.assert_allclose(got["fitted"], fitted, atol=2e-3)
    np.testing.assert_allclose(got["resid"], data["Reaction"].to_numpy() - fitted, atol=2e-3)
    np.testing.assert_allclose(got["predicted"], fitted, atol=2e-3)


def test_written_tables_and_plots(run, sleepstudy):
    case, data = sleepstudy
    modes, se, _, fitted = _lme4_expected(case, data)
    out, folder = run
    for name in ("saved", "written"):
        got = out[name]
        assert set(got) == set(modes), name
        for level, values in got.items():
            np.testing.assert_allclose(values[:2], modes[level], atol=2e-3)
            if name == "saved":  # the folder's table carries the conditional SDs
                np.testing.assert_allclose(values[2:], se[level], rtol=1e-4)
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == []
    intercepts, slopes = out["caterpillar"]
    np.testing.assert_allclose(intercepts, sorted(m[0] for m in modes.values()), atol=2e-3)
    np.testing.assert_allclose(slopes, sorted(m[1] for m in modes.values()), atol=2e-3)
    np.testing.assert_allclose(out["resid_plot"],
                               np.sort(data["Reaction"].to_numpy() - fitted), atol=2e-3)


def test_the_log_and_timings_name_the_cluster_start(run):
    """Issue 20, item 2: the embedded cluster's start is logged and timed; the same
    input fitted in process (small input, no client) gives the same estimates."""
    paths = run[0]["paths"]
    assert paths["backends"] == ["dask", "local"]
    starts = [m for m in paths["log"] if m.startswith("cluster start ")]
    assert len(starts) == 1, paths["log"]
    seconds = float(starts[0].split()[2])
    assert seconds > 0 and paths["cluster_start"][0] == pytest.approx(seconds, abs=0.006)
    assert paths["cluster_start"][1] == 0.0
    assert paths["llf"][0] == pytest.approx(paths["llf"][1], rel=1e-10)
    np.testing.assert_allclose(paths["params"][0], paths["params"][1], rtol=1e-8)


def test_results_of_a_closed_client_say_so(sleepstudy, tmp_path):
    """A fit on a client of the user's keeps its statistics on that cluster: once the
    client is closed, asking for what they held is one clear error, and writes
    nothing."""
    import dlmm
    from dlmm.distributed.faults import SchedulerLost

    _, data = sleepstudy
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                           dashboard_address="127.0.0.1:0")
    client = Client(cluster, set_as_default=False)
    try:
        result = dlmm.mixedlm("Reaction ~ Days", data, groups="Subject",
                              re_formula="~Days").fit(client=client)
        assert result.backend == "dask"
    finally:
        client.close()
        cluster.close()
    for ask in (result.random_effects_table, lambda: result.fittedvalues,
                lambda: result.save(tmp_path / "saved")):
        with pytest.raises(SchedulerLost, match="the Dask client this fit ran on is closed"):
            ask()
    assert list(tmp_path.iterdir()) == []


# A program's own embedded cluster with Dask's start method set to fork: its workers
# begin with this process's BLAS pools (a thread per core); their preload sets them as
# a spawned worker's (one thread), as the command's forked workers are.
_FORKED_BLAS = r"""
import json
import numpy, scipy.linalg  # the pools a forked worker inherits
from dlmm.distributed.embedded import close_embedded, embedded_client

def pools():
    import sys, threadpoolctl
    return {"forked": "scipy.linalg" in sys.modules,
            "blas_threads": sorted({p["num_threads"] for p in threadpoolctl.threadpool_info()})}

client = embedded_client(n_workers=1, threads_per_worker=1, start_method="fork")
try:
    print(json.dumps(list(client.run(pools).values())))
finally:
    close_embedded()
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork: Linux only here")
def test_forked_workers_of_a_programs_cluster_run_one_blas_thread():
    proc = subprocess.run([sys.executable, "-c", _FORKED_BLAS], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    (worker,) = json.loads(proc.stdout.strip().splitlines()[-1])
    assert worker == {"forked": True, "blas_threads": [1]}, worker


def test_embedded_security_is_one_elliptic_curve_certificate_valid_now():
    """Every role holds the same self-signed certificate, valid now, of a P-256 key,
    and TLS is required."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

    from dlmm.distributed.embedded import embedded_security

    security = embedded_security()
    assert security.require_encryption
    pems = {security.tls_ca_file, security.tls_client_cert, security.tls_scheduler_cert,
            security.tls_worker_cert}
    assert len(pems) == 1
    cert = x509.load_pem_x509_certificate(pems.pop().encode())
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.public_key().curve.name == "secp256r1"
    now = datetime.datetime.now(tz=datetime.timezone.utc)
    assert cert.not_valid_before_utc <= now <= cert.not_valid_after_utc
    assert cert.issuer == cert.subject
