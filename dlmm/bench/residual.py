"""The residual-model benchmark: a variance per stratum and AR(1) errors, dlmm beside nlme.

Cases are ``"orthodont"`` (nlme's Orthodont: ``distance ~ age``, a random intercept
and slope per Subject, a residual variance per Sex and AR(1) over ``t = age / 2``) or
``"GROUPSxROWS"`` (:func:`strata_ar1_like`: GROUPS groups of ROWS consecutive times,
``y ~ x``, a random intercept and slope per group, three strata of residual variance
drawn row by row, AR(1) errors of ρ = 0.5). nlme is the only peer
(``lme(weights = varIdent(form = ~ 1 | s), correlation = corAR1(form = ~ t | g))``,
through ``Rscript``); statsmodels and lme4 fit neither. The run is
:mod:`dlmm.bench.cases`'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .cases import CaseKind, run_cases

ORTHODONT = Path(__file__).resolve().parents[2] / "tests" / "reference" / "residual" / \
    "orthodont.csv"


def strata_ar1_like(n_groups: int, n_rows: int, seed: int = 0):
    """``g``, ``t`` (1 .. ROWS), ``s`` (``a``/``b``/``c`` with probabilities .5/.3/.2), ``x``
    and ``y = 1 + 0.5 x + b_0 + b_1 x + δ_s e`` with ``e`` AR(1) of ρ = 0.5 and unit
    variance within each group, ``δ = (1, 0.5, 2)``, sds 1 and 0.5 for ``b``."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    n = n_groups * n_rows
    g = np.repeat(np.arange(n_groups, dtype=np.int64), n_rows)
    t = np.tile(np.arange(1, n_rows + 1, dtype=np.int64), n_groups)
    s = rng.choice(np.array(["a", "b", "c"]), n, p=[0.5, 0.3, 0.2])
    x = rng.normal(size=n)
    e = rng.normal(size=(n_groups, n_rows))
    for j in range(1, n_rows):  # a loop over times, not groups
        e[:, j] = 0.5 * e[:, j - 1] + np.sqrt(0.75) * e[:, j]
    delta = np.select([s == "a", s == "b"], [1.0, 0.5], 2.0)
    b = rng.normal(size=(n_groups, 2)) * [1.0, 0.5]
    y = 1 + 0.5 * x + b[g, 0] + b[g, 1] * x + delta * e.ravel()
    return pd.DataFrame({"g": g, "t": t, "s": s, "x": x, "y": y})


def _case(name: str) -> dict[str, Any]:
    if name == "orthodont":
        return {"name": name, "formula": "distance ~ age", "factors": ["Subject"],
                "group": "Subject", "re": "age", "strata": "Sex", "time": "t"}
    try:
        groups, rows = (int(float(v)) for v in name.lower().split("x"))
    except ValueError:
        raise ValueError(f"residual case {name!r} is neither 'orthodont' nor GROUPSxROWS")\
            from None
    if min(groups, rows) < 1:
        raise ValueError(f"residual case {name!r} needs positive GROUPS and ROWS")
    return {"name": name, "formula": "y ~ x", "factors": ["g"], "group": "g", "re": "x",
            "strata": "s", "time": "t", "groups": groups, "per_group": rows,
            "rows": groups * rows}


def check_cases(cases: list[str]) -> None:
    """Raise ``ValueError`` naming the first case that does not read (before any work)."""
    if not cases:
        raise ValueError("no residual case given")
    for name in cases:
        _case(name)


def _write(case: dict, data_dir: Path, partitions: int, seed: int) -> Path:
    """The case's data as Parquet files in their own folder (written once), group by
    group."""
    import pandas as pd

    folder = data_dir / f"residual_{case['name']}_p{partitions}_s{seed}"
    if (folder / "_done").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    if case["name"] == "orthodont":
        frame = pd.read_csv(ORTHODONT)
        frame["t"] = frame["age"] // 2
    else:
        frame = strata_ar1_like(case["groups"], case["per_group"], seed)
    codes = pd.factorize(frame[case["group"]], sort=True)[0]
    order = np.argsort(codes, kind="stable")  # group by group, each group's rows in order
    frame, codes = frame.iloc[order].reset_index(drop=True), codes[order]
    cuts = np.linspace(0, codes.max() + 1, partitions + 1).astype(int)[1:-1]
    for k, part in enumerate(np.split(np.arange(len(frame)), np.searchsorted(codes, cuts))):
        frame.iloc[part].to_parquet(folder / f"part-{k:03d}.parquet", index=False)
    (folder / "_done").write_text("")
    return folder


def _model(case: dict) -> dict:
    return {"groups": case["group"], "re_formula": f"~{case['re']}",
            "residual_by": case["strata"], "residual_ar1": case["time"]}


def _nlme(case: dict) -> dict:
    return {"fixed": case["formula"], "random": f"~ {case['re']} | {case['group']}",
            "weights": f"varIdent(form = ~ 1 | {case['strata']})",
            "correlation": f"corAR1(form = ~ {case['time']} | {case['group']})"}


def residual_kind() -> CaseKind:
    """The residual designs' :class:`~dlmm.bench.cases.CaseKind`."""
    return CaseKind("residual", _case, _write, _model, lambda case: "",
                    lambda case, levels: "statsmodels has no residual model", nlme=_nlme)


def run_residual_bench(cases: list[str], workers: int = 2, data_dir=None,
                       peers: tuple[str, ...] = ("nlme",), peer_budget: float = 1200.0,
                       timeout: float = 1800.0, seed: int = 0, log=print) -> dict[str, Any]:
    """Run the residual benchmark (see the module docstring); its JSON document."""
    check_cases(cases)
    return run_cases(residual_kind(), cases, workers=workers, data_dir=data_dir,
                     peers=peers, peer_budget=peer_budget, timeout=timeout, seed=seed,
                     log=log)
