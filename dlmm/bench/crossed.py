"""The crossed benchmark: InstEval, STAR and simulated users x items, dlmm beside lme4.

Cases are ``"insteval"`` (lme4's InstEval, ``y ~ service + (1|s) + (1|d)``, from
a CSV path), ``"star"`` (mlmRev's Tennessee STAR, students x teachers x schools,
teachers nested in schools: ``math ~ gr + sx + eth + cltype + (1|id) + (1|tch) +
(1|sch)`` on the rows with all of these; read through ``Rscript`` from Debian's
``r-cran-mlmrev``) or ``"ROWSxUSERSxITEMS"`` (:func:`movielens_like`: Zipf-like item
popularity, gamma-distributed user activity, ``y ~ x + (1|user) + (1|item)``).
dlmm (from pandas and from Parquet), lme4 and statsmodels fit each case as
:mod:`dlmm.bench.cases` runs every kind; statsmodels only where its dense algebra
on one group of all levels fits in memory (at most ``STATSMODELS_MAX_LEVELS``).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from .cases import CaseKind, case_line, fit_child, format_case_table, run_cases, write_case_report

#: statsmodels holds the one group's levels as dense squares (InstEval's 4,100
#: levels: 6 GB resident): beyond this many it would exhaust the memory before its
#: budget ran out.
STATSMODELS_MAX_LEVELS = 5_000
INSTEVAL_DEFAULT = Path(__file__).resolve().parents[2] / "tests" / "kernels" / "crossed" / \
    "data" / "insteval.csv.gz"


def movielens_like(n_rows: int, n_users: int, n_items: int, seed: int = 0):
    """Ratings-shaped crossed data: ``user``, ``item``, a covariate ``x`` and ``y``.

    Item popularity is Zipf-like (weight of the item of rank r proportional to
    ``1 / r``), user activity gamma-distributed (shape 0.6), so a few items and
    users hold most rows and many are seen once or never. The response is
    ``y = 3.5 + 0.3 x + u_user + v_item + e`` with standard deviations 0.5, 0.4
    and 1 for ``u``, ``v``, ``e``.
    """
    import pandas as pd

    rng = np.random.default_rng(seed)
    item_w = 1.0 / np.arange(1, n_items + 1)
    user_w = rng.gamma(0.6, size=n_users)
    users = rng.choice(n_users, size=n_rows, p=user_w / user_w.sum())
    items = rng.permutation(n_items)[rng.choice(n_items, size=n_rows, p=item_w / item_w.sum())]
    x = rng.normal(size=n_rows)
    y = (3.5 + 0.3 * x + rng.normal(0, 0.5, n_users)[users] + rng.normal(0, 0.4, n_items)[items]
         + rng.normal(size=n_rows))
    return pd.DataFrame({"user": users.astype(np.int64), "item": items.astype(np.int64),
                         "x": x, "y": y})


#: STAR's model: the covariates every student has (grade, sex, ethnicity, class type).
STAR_FORMULA = "math ~ gr + sx + eth + cltype"


def star_frame(csv: Path):
    """mlmRev's ``star`` (written to ``csv`` by ``Rscript``): the rows with the model's
    columns all present, ``id``, ``tch``, ``sch`` as integer codes, the covariates as
    their labels (plain categories, so that dlmm and lme4 read the same design)."""
    import pandas as pd

    columns = ["math", "gr", "sx", "eth", "cltype", "id", "tch", "sch"]
    script = ("suppressMessages(library(mlmRev));"
              f"write.csv(star[, {json.dumps(columns).replace('[', 'c(').replace(']', ')')}], "
              f"{json.dumps(str(csv))}, row.names = FALSE)")
    done = subprocess.run(["Rscript", "-e", script], capture_output=True, text=True,
                          timeout=300)
    if done.returncode != 0:
        raise RuntimeError("the 'star' case reads mlmRev's star data through Rscript "
                           "(Debian: r-cran-mlmrev): " + " ".join(done.stderr.split())[-300:])
    frame = pd.read_csv(csv, dtype={"gr": str}).dropna()
    for col in ("id", "tch", "sch"):
        frame[col] = frame[col].astype(np.int64)
    return frame.reset_index(drop=True)


def _case(name: str) -> dict[str, Any]:
    if name == "insteval":
        return {"name": name, "formula": "y ~ service", "factors": ["s", "d"]}
    if name == "star":
        return {"name": name, "formula": STAR_FORMULA, "factors": ["id", "tch", "sch"]}
    try:
        rows, users, items = (int(float(v)) for v in name.lower().split("x"))
    except ValueError:
        raise ValueError(f"crossed case {name!r} is neither 'insteval', 'star' nor "
                         "ROWSxUSERSxITEMS") from None
    return {"name": name, "formula": "y ~ x", "factors": ["user", "item"], "rows": rows,
            "users": users, "items": items}


def check_cases(cases: list[str]) -> None:
    """Raise ``ValueError`` naming the first case that is neither ``insteval``, ``star``
    nor ``ROWSxUSERSxITEMS`` with positive sizes (before any work)."""
    if not cases:
        raise ValueError("no crossed case given")
    for name in cases:
        case = _case(name)
        if "rows" in case and min(case["rows"], case["users"], case["items"]) < 1:
            raise ValueError(f"crossed case {name!r} needs positive ROWS, USERS and ITEMS")


def _write_data(case: dict, data_dir: Path, insteval: Path, partitions: int, seed: int) -> Path:
    """The case's data as Parquet files in their own folder (written once)."""
    import pandas as pd

    folder = data_dir / f"crossed_{case['name']}_p{partitions}_s{seed}"
    if (folder / "_done").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    if case["name"] == "insteval":
        frame = pd.read_csv(insteval)[["s", "d", "service", "y"]]
    elif case["name"] == "star":
        csv = folder.parent / f"{folder.name}.csv"  # beside the Parquet folder, not in it
        frame = star_frame(csv)
        csv.unlink()
    else:
        frame = movielens_like(case["rows"], case["users"], case["items"], seed)
    for k, part in enumerate(np.array_split(np.arange(len(frame)), partitions)):
        frame.iloc[part].to_parquet(folder / f"part-{k:03d}.parquet", index=False)
    (folder / "_done").write_text("")
    return folder


def _model(case: dict) -> dict:
    """statsmodels' spelling: one group, an intercept per level of each factor."""
    return {"groups": None, "re_formula": "0",
            "vc_formula": {f: f"0 + C({f})" for f in case["factors"]}}


def _child(spec: str) -> None:
    """:func:`dlmm.bench.cases.fit_child` of a crossed case (``factors`` in ``spec``)."""
    args = json.loads(spec)
    fit_child(json.dumps({**args, "model": _model(args)}))


def _kind(insteval: Path) -> CaseKind:
    def write(case, data_dir, partitions, seed):
        return _write_data(case, data_dir, insteval, partitions, seed)

    def skip(case, levels):
        if sum(levels.values()) > STATSMODELS_MAX_LEVELS:
            return f"dense algebra on {sum(levels.values())} levels in one group"
        return None

    return CaseKind("crossed", _case, write, _model,
                    lambda case: case["formula"] + " + "
                    + " + ".join(f"(1 | {f})" for f in case["factors"]), skip)


def run_crossed_bench(cases: list[str], workers: int = 2, data_dir=None,
                      insteval: str | os.PathLike | None = None,
                      peers: tuple[str, ...] = ("statsmodels", "lme4"),
                      peer_budget: float = 1200.0, timeout: float = 1800.0, seed: int = 0,
                      log=print) -> dict[str, Any]:
    """Run the crossed benchmark (see the module docstring); its JSON document."""
    check_cases(cases)
    kind = _kind(Path(insteval) if insteval else INSTEVAL_DEFAULT)
    return run_cases(kind, cases, workers=workers, data_dir=data_dir, peers=peers,
                     peer_budget=peer_budget, timeout=timeout, seed=seed, log=log,
                     line=crossed_line)


def crossed_line(row: dict) -> str:
    """One line of the crossed benchmark's log and table."""
    return case_line(row)


def format_crossed_table(doc: dict) -> str:
    """The crossed benchmark as a fixed-width text table."""
    return format_case_table(doc)


def write_crossed_report(doc: dict, output) -> dict[str, str]:
    """Write ``bench-crossed.json`` and ``bench-crossed.txt`` into ``output``."""
    return write_case_report(doc, output, "crossed")
