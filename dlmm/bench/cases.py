"""Benchmarks of named data sets, one kind of design each, dlmm beside its peers.

A *kind* (:class:`CaseKind`: the crossed designs of :mod:`.crossed`, the nested ones
of :mod:`.nested`) says how a case's name reads, how its data are written, and how
dlmm, statsmodels and lme4 state its model. :func:`run_cases` does the rest the same
way for every kind: for each case dlmm fits the data twice, each time in a fresh
process so that its peak memory is its own — from pandas in process, and from
Parquet on a local cluster (whose start-up, the workers' imports of dlmm, pyarrow and
dask.dataframe included, is reported apart) — then lme4 through ``Rscript`` and
statsmodels fit the same data in the same run, each in a child process stopped after
``peer_budget`` seconds (a peer over its budget is reported as timed out, not waited
for).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .peers import (
    gpboost_fit,
    gpboost_python,
    lme4_available,
    lme4_fit,
    nlme_fit,
    over_budget,
    statsmodels_fit_within,
)
from .report import machine


@dataclass(frozen=True)
class CaseKind:
    """What differs between kinds of benchmark cases.

    Attributes
    ----------
    name : str
        ``"crossed"`` or ``"nested"``: the report's files are ``bench-<name>.*``.
    parse : callable
        A case's name -> its description (a dict with ``name``, ``formula``,
        ``factors`` and, for simulated data, ``rows``); ``ValueError`` naming it.
    write : callable
        ``(case, data_dir, partitions, seed) -> Path``: the case's Parquet folder,
        written once.
    model : callable
        ``case -> {"groups", "re_formula", "vc_formula"}``: statsmodels' spelling,
        which dlmm and statsmodels fit.
    lme4_formula : callable
        ``case -> str``: lme4's spelling of the same model.
    statsmodels_skip : callable
        ``(case, levels) -> str | None``: why statsmodels is not run (its memory), or
        None.
    gpboost : callable, optional
        ``case -> dict | str``: gpboost's spelling of the case (``response``,
        ``covariates``, ``factors``: crossed intercepts), or why gpboost does not fit
        it; None: the kind has no gpboost case.
    nlme : callable, optional
        ``case -> dict``: nlme's ``lme`` arguments (``fixed``, ``random``, ``weights``,
        ``correlation``, as R code), for the peer ``"nlme"``; None: no nlme case.

    A case's ``reml`` (default True) says whether every fit is REML or ML; its
    ``lmer`` (optional) is lme4's formula, which dlmm then fits with :func:`dlmm.lmer`
    (slopes on crossed factors) instead of statsmodels' spelling.
    """

    name: str
    parse: Callable[[str], dict]
    write: Callable[[dict, Path, int, int], Path]
    model: Callable[[dict], dict]
    lme4_formula: Callable[[dict], str]
    statsmodels_skip: Callable[[dict, dict], str | None]
    gpboost: Callable[[dict], dict | str] | None = None
    nlme: Callable[[dict], dict] | None = None


def _import_on_worker() -> bool:
    import dask.dataframe  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    import dlmm.structure.choose  # noqa: F401
    from dlmm.kernels.nested.warm import warm_up

    warm_up()  # the compiled kernels' load: start-up, as the imports
    return True


def fit_child(spec: str) -> None:
    """One dlmm fit in this (fresh) process; prints a ``DLMM-BENCH`` JSON line with its
    facts. ``spec`` (JSON): ``mode`` (``"pandas"`` or ``"parquet"``), ``path``,
    ``formula``, ``model`` (statsmodels' ``groups``, ``re_formula``, ``vc_formula``)
    and ``workers``."""
    import resource

    import dlmm

    args = json.loads(spec)
    out: dict[str, Any] = {}
    from dlmm.kernels.crossed.warm import warm_up as crossed_warm_up
    from dlmm.kernels.nested.warm import warm_up

    # The compiled kernels' load (numba, once per process) is start-up, reported apart,
    # as lme4's library load is outside its timed lmer call.
    out["kernels_load_seconds"] = warm_up() + crossed_warm_up()
    if args["mode"] == "pandas":
        import pandas as pd

        start = time.perf_counter()
        data = pd.read_parquet(args["path"])
        out["read_seconds"] = time.perf_counter() - start
        client = cluster = None
    else:
        from distributed import Client, LocalCluster

        start = time.perf_counter()
        cluster = LocalCluster(n_workers=args["workers"], threads_per_worker=1,
                               processes=True, host="127.0.0.1", dashboard_address=None)
        client = Client(cluster)
        # The workers' first imports (dlmm, pyarrow's Parquet reader, dask.dataframe) are
        # start-up, not fit: counted with the cluster, as a long-lived cluster has them.
        client.run(_import_on_worker)
        out["cluster_seconds"] = time.perf_counter() - start
        data = args["path"]
    start = time.perf_counter()
    reml = bool(args.get("reml", True))
    try:
        if args.get("lmer"):
            result = dlmm.lmer(args["lmer"], data, REML=reml, client=client)
        else:
            result = dlmm.mixedlm(args["formula"], data, **args["model"]).fit(
                client=client, reml=reml)
    except dlmm.InputError as exc:  # a design dlmm refuses (its limits): said in words
        out["refused"] = str(exc)
        print("DLMM-BENCH " + json.dumps(out))
        return
    if args.get("lmer"):  # a model of lme4's terms: its own report
        out.update({
            "seconds": time.perf_counter() - start, "llf": result.llf,
            "converged": bool(result.converged), "engine": result.engine,
            "factorizations": result.mle_retvals["evaluations"],
            "optimizer_seconds": result.mle_retvals["seconds"],
            "theta": [float(v) for v in result.theta], "scale": result.scale,
            "driver_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        })
        out["seconds_per_factorization"] = out["optimizer_seconds"] / max(
            out["factorizations"], 1)
        if client is not None:
            client.close()
            cluster.close()
        print("DLMM-BENCH " + json.dumps(out))
        return
    out.update({
        "seconds": time.perf_counter() - start, "llf": result.llf,
        "converged": bool(result.converged), "engine": result.engine,
        "evaluations": result.timings["evaluations"],
        # factorizations: the steps' plus the polish's gradient differences
        "factorizations": result.timings["engine_evaluations"],
        "coarse_factorizations": result.timings["coarse_evaluations"],  # float32
        "data_pass_seconds": result.timings["data_pass"],
        "optimizer_seconds": result.timings["optimizer"],
        "vcomp": dict(zip(result.vc_names, map(float, result.vcomp))),
        "cov_re": np.asarray(result.cov_re, dtype=float).tolist(),
        "scale": result.scale,
        "driver_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    })
    out["seconds_per_factorization"] = out["optimizer_seconds"] / max(out["factorizations"], 1)
    if client is not None:
        client.close()
        cluster.close()
    print("DLMM-BENCH " + json.dumps(out))


def _dlmm_in_child(args: dict, timeout: float) -> dict:
    code = f"from dlmm.bench.cases import fit_child; fit_child({json.dumps(json.dumps(args))})"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout)
    for line in done.stdout.splitlines():
        if line.startswith("DLMM-BENCH "):
            return json.loads(line[len("DLMM-BENCH "):])
    raise RuntimeError(" ".join(done.stderr.split())[-400:])


def levels_of(path: Path, factors: list[str]) -> dict[str, int]:
    """Distinct values of each factor; a factor written ``a:b`` counts the pairs."""
    import pandas as pd

    columns = sorted({c for f in factors for c in f.split(":")})
    frame = pd.read_parquet(path, columns=columns)
    return {f: int(len(frame[f.split(":")].drop_duplicates())) for f in factors}


def rows_of(path: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(p).metadata.num_rows for p in sorted(path.glob("*.parquet")))


#: The peers a row may have, in the order the log and the table show them.
PEERS = ("lme4", "statsmodels", "gpboost", "nlme")


def _ratios(row: dict) -> None:
    ref = row.get("dlmm_pandas", {})
    for peer in PEERS:
        out = row.get(peer, {})
        if "seconds" in out and "seconds" in ref:
            out["ratio"] = out["seconds"] / ref["seconds"]
            out["llf_rel_diff"] = (ref["llf"] - out["llf"]) / abs(out["llf"])


def _peer(budget: float, run: Callable[..., dict], *args, **kwargs) -> dict:
    """``run(*args, **kwargs)``, a peer's result: its facts, or why there are none (a
    failure is a result)."""
    try:
        return run(*args, **kwargs)
    except subprocess.TimeoutExpired:
        return over_budget(budget)
    except Exception as exc:
        return {"failed": f"{type(exc).__name__}: {exc}"}


def gpboost_skipped(given: str | None) -> str:
    """The log's line where no Python at hand has gpboost (``given``: the user's)."""
    return (f"gpboost: not importable by {given or sys.executable} "
            "(--gpboost-python PYTHON names one that has it); skipped")


def run_cases(kind: CaseKind, cases: list[str], workers: int = 2, data_dir=None,
              peers: tuple[str, ...] = ("statsmodels", "lme4"),
              peer_budget: float = 1200.0, timeout: float = 1800.0, seed: int = 0,
              log=print, line: Callable[[dict], str] | None = None,
              gpboost: str | None = None) -> dict[str, Any]:
    """Run ``kind``'s benchmark on ``cases`` (see the module docstring); its JSON document
    (schema ``dlmm.bench-<kind>/1``). ``"gpboost" in peers``: gpboost too, where the
    kind has a gpboost case, run by the Python ``gpboost`` (a path) or, without it,
    this one if it has gpboost (:func:`~.peers.gpboost_python`)."""
    import dlmm

    root = Path(data_dir) if data_dir else Path(tempfile.gettempdir()) / "dlmm-bench-data"
    root.mkdir(parents=True, exist_ok=True)
    have_lme4 = "lme4" in peers and lme4_available()
    have_nlme = "nlme" in peers and kind.nlme is not None and lme4_available("nlme")
    if "nlme" in peers and kind.nlme is not None and not have_nlme:
        log("nlme: Rscript with nlme not found; skipped")
    if "lme4" in peers and not have_lme4:
        log("lme4: Rscript with lme4 not found; skipped")
    gpb_python = None
    if "gpboost" in peers and kind.gpboost is not None:
        gpb_python = gpboost_python(gpboost)
        if gpb_python is None:
            log(gpboost_skipped(gpboost))
    parsed = [kind.parse(name) for name in cases]
    rows_out = []
    for case in parsed:
        partitions = max(workers, min(64, -(-case.get("rows", 73421) // 500_000)))
        path = kind.write(case, root, partitions, seed)
        model = kind.model(case)
        row: dict[str, Any] = {"case": case["name"], "formula": case["formula"],
                               "factors": case["factors"], "partitions": partitions}
        reml = bool(case.get("reml", True))
        base = {"path": str(path), "formula": case["formula"], "model": model,
                "workers": workers, "reml": reml, "lmer": case.get("lmer")}
        for mode in ("pandas", "parquet"):
            row[f"dlmm_{mode}"] = _peer(timeout, _dlmm_in_child, {**base, "mode": mode}, timeout)
        row["levels"] = levels_of(path, case["factors"])
        row["rows"] = rows_of(path)
        if have_lme4:
            row["lme4"] = _peer(peer_budget, lme4_fit, path, kind.lme4_formula(case),
                                timeout=peer_budget, reml=reml)
        if "statsmodels" in peers:
            why = kind.statsmodels_skip(case, row["levels"])
            row["statsmodels"] = {"skipped": why} if why else _peer(
                peer_budget, statsmodels_fit_within, path, case["formula"], model["groups"],
                peer_budget, model["re_formula"], model["vc_formula"], reml)
        if have_nlme:
            row["nlme"] = _peer(peer_budget, nlme_fit, path, timeout=peer_budget, reml=reml,
                                **kind.nlme(case))
        if gpb_python is not None:
            spec = kind.gpboost(case)
            row["gpboost"] = {"skipped": spec} if isinstance(spec, str) else _peer(
                peer_budget, gpboost_fit, gpb_python, path, timeout=peer_budget, **spec)
        _ratios(row)
        rows_out.append(row)
        log((line or case_line)(row))
    return {"schema": f"dlmm.bench-{kind.name}/1",
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": machine(),
            "settings": {"workers": workers, "seed": seed, "dlmm_version": dlmm.__version__},
            "results": rows_out}


def case_line(row: dict) -> str:
    """One line of a case benchmark's log."""
    def fit(d: dict) -> str:
        if "seconds" not in d:
            why = d.get("refused", d.get("failed", d.get("skipped", d.get("timed_out", "-"))))
            return why[:90]
        steps = f", {d['evaluations']} steps" if "evaluations" in d else ""
        extra = f"{steps}, {d['factorizations']} factorizations" \
            if "factorizations" in d else ""
        mem = f", {d['driver_peak_mb']:.0f} MB" if "driver_peak_mb" in d else ""
        return f"{d['seconds']:.2f} s{extra}{mem}"

    levels = " x ".join(f"{v:,} {k}" for k, v in row["levels"].items())
    parts = [f"{row['case']}: {row['rows']:,} rows, {levels}",
             f"dlmm pandas {fit(row.get('dlmm_pandas', {}))}",
             f"dlmm parquet {fit(row.get('dlmm_parquet', {}))}"
             + (f" (+ cluster {row['dlmm_parquet']['cluster_seconds']:.1f} s)"
                if "cluster_seconds" in row.get("dlmm_parquet", {}) else "")]
    for peer in PEERS:
        if peer in row:
            d = row[peer]
            ratio = f" ({d['ratio']:.1f}x dlmm, llf rel diff {d['llf_rel_diff']:.1e})" \
                if "ratio" in d else ""
            parts.append(f"{peer} {fit(d)}{ratio}")
    return "; ".join(parts)


def format_case_table(doc: dict) -> str:
    """A case benchmark as a fixed-width text table (times in seconds; a peer over its
    budget shows ``>budget``, one not run ``-``)."""
    def secs(d: dict, key: str = "seconds") -> str:
        if key in d:
            return f"{d[key]:.2f}"
        if "timed_out" in d:
            return f">{d['budget']:.0f}"
        return "refused" if "refused" in d else "fail" if "failed" in d else "-"

    head = (f"{'case':<22} {'rows':>11} {'levels':>15} {'pandas':>7} {'steps':>5} "
            f"{'facts':>5} {'s/fact':>7} {'MB':>6} {'parquet':>7} {'cluster':>7} {'lme4':>8} "
            f"{'x':>6} {'sm':>8} {'x':>6}")
    with_gpb = any("gpboost" in r for r in doc["results"])
    if with_gpb:
        head += f" {'gpboost':>8} {'x':>6}"
    with_nlme = any("nlme" in r for r in doc["results"])
    if with_nlme:
        head += f" {'nlme':>8} {'x':>6}"
    lines = [head, "-" * len(head)]
    for r in doc["results"]:
        pdx, pq = r.get("dlmm_pandas", {}), r.get("dlmm_parquet", {})
        lm, sm = r.get("lme4", {}), r.get("statsmodels", {})
        levels = "x".join(f"{v:,}" for v in r["levels"].values())
        lines.append(
            f"{r['case']:<22} {r['rows']:>11,} {levels:>15} {secs(pdx):>7} "
            f"{pdx.get('evaluations', '-'):>5} {pdx.get('factorizations', '-'):>5} "
            f"{pdx.get('seconds_per_factorization', float('nan')):>7.3f} "
            f"{pdx.get('driver_peak_mb', float('nan')):>6.0f} {secs(pq):>7} "
            f"{secs(pq, 'cluster_seconds'):>7} {secs(lm):>8} "
            f"{lm.get('ratio', float('nan')):>6.1f} {secs(sm):>8} "
            f"{sm.get('ratio', float('nan')):>6.1f}")
        if with_gpb:
            gp = r.get("gpboost", {})
            lines[-1] += f" {secs(gp):>8} {gp.get('ratio', float('nan')):>6.1f}"
        if with_nlme:
            nl = r.get("nlme", {})
            lines[-1] += f" {secs(nl):>8} {nl.get('ratio', float('nan')):>6.1f}"
    return "\n".join(lines)


def write_case_report(doc: dict, output: str | os.PathLike, kind: str) -> dict[str, str]:
    """Write ``bench-<kind>.json`` and ``bench-<kind>.txt`` into ``output``."""
    from ..io.jsonable import jsonable

    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": str(out / f"bench-{kind}.json"), "table": str(out / f"bench-{kind}.txt")}
    Path(files["json"]).write_text(json.dumps(jsonable(doc), indent=1, allow_nan=False))
    Path(files["table"]).write_text(format_case_table(doc) + "\n")
    return files
