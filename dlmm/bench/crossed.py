"""The crossed benchmark: InstEval, STAR and simulated users x items, dlmm beside lme4.

Cases are ``"insteval"`` (lme4's InstEval, ``y ~ service + (1|s) + (1|d)``, from
a CSV path), ``"star"`` (mlmRev's Tennessee STAR, students x teachers x schools,
teachers nested in schools: ``math ~ gr + sx + eth + cltype + (1|id) + (1|tch) +
(1|sch)`` on the rows with all of these; read through ``Rscript`` from Debian's
``r-cran-mlmrev``) or ``"ROWSxUSERSxITEMS"`` (:func:`movielens_like`: Zipf-like item
popularity, gamma-distributed user activity, ``y ~ x + (1|user) + (1|item)``) or
``"ROWSxUSERSxITEMSxheavy"`` (the same with lognormal user activity, a heavy tail
like MovieLens': :func:`movielens_like` with ``users="lognormal"``) or
``"d3"`` / ``"d3xROWS"`` (:func:`d3_like`: three crossed factors with a correlated
intercept and slope on each, the shape of MixedModels.jl's ``d3``, 60,000 rows by
default) or ``"kb07"`` (the kb07-shaped maximal model of the lme4 reference fits,
:data:`KB07_FORMULA` on ``tests/reference/crossed_terms/data/kb07sim.csv``: 56 subjects
x 32 items, four correlated effects on each); dlmm fits these two with
:func:`dlmm.lmer`. A name ending in ``:ml`` fits ML
(every peer too), else REML.
dlmm (from pandas and from Parquet), lme4, statsmodels and gpboost (crossed
intercepts only, when a Python that has it is named) fit each case as
:mod:`dlmm.bench.cases` runs every kind; statsmodels only where its dense algebra
on one group of all levels fits in memory (at most ``STATSMODELS_MAX_LEVELS``) and
the model has no slopes.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from .cases import CaseKind, case_line, fit_child, run_cases

#: statsmodels holds the one group's levels as dense squares (InstEval's 4,100
#: levels: 6 GB resident): beyond this many it would exhaust the memory before its
#: budget ran out.
STATSMODELS_MAX_LEVELS = 5_000
INSTEVAL_DEFAULT = Path(__file__).resolve().parents[2] / "tests" / "kernels" / "crossed" / \
    "data" / "insteval.csv.gz"
#: The kb07-shaped data of the lme4 reference fits (simulated by its R script).
KB07_DATA = Path(__file__).resolve().parents[2] / "tests" / "reference" / "crossed_terms" / \
    "data" / "kb07sim.csv"
#: The kb07 case's model: psycholinguistics' "maximal" model, a 2x2x2 design with four
#: correlated effects on subjects and on items.
KB07_FORMULA = ("rt ~ spkr * prec * load + (1 + spkr + prec + load | subj) "
                "+ (1 + spkr + prec + load | item)")


#: Standard deviation of the log of a user's activity weight in the heavy-tailed
#: ratings (:func:`movielens_like` with ``users="lognormal"``): at 31.5M ratings of
#: 200,000 users x 16,000 items, the shape of MovieLens-32M restricted to movies with
#: at least 50 ratings, it gives a sum over users of (items seen)^2 of about 10^10.
USER_LOG_SD = 1.6


def movielens_like(n_rows: int, n_users: int, n_items: int, seed: int = 0,
                   users: str = "gamma"):
    """Ratings-shaped crossed data: ``user``, ``item``, a covariate ``x`` and ``y``.

    Item popularity is Zipf-like (weight of the item of rank r proportional to
    ``1 / r``). User activity is gamma-distributed (shape 0.6; ``users="gamma"``) or
    lognormal with log standard deviation :data:`USER_LOG_SD` (``users="lognormal"``:
    heavy-tailed, a few users rate thousands of items, as in MovieLens), so a few
    items and users hold most rows and many are seen once or never. The response is
    ``y = 3.5 + 0.3 x + u_user + v_item + e`` with standard deviations 0.5, 0.4
    and 1 for ``u``, ``v``, ``e``.
    """
    import pandas as pd

    if users not in ("gamma", "lognormal"):
        raise ValueError(f"users={users!r}: 'gamma' or 'lognormal'")
    rng = np.random.default_rng(seed)
    item_w = 1.0 / np.arange(1, n_items + 1)
    user_w = rng.gamma(0.6, size=n_users) if users == "gamma" else \
        rng.lognormal(0.0, USER_LOG_SD, size=n_users)
    users_of = rng.choice(n_users, size=n_rows, p=user_w / user_w.sum())
    items = rng.permutation(n_items)[rng.choice(n_items, size=n_rows, p=item_w / item_w.sum())]
    x = rng.normal(size=n_rows)
    y = (3.5 + 0.3 * x + rng.normal(0, 0.5, n_users)[users_of]
         + rng.normal(0, 0.4, n_items)[items] + rng.normal(size=n_rows))
    return pd.DataFrame({"user": users_of.astype(np.int64), "item": items.astype(np.int64),
                         "x": x, "y": y})


#: The three-factor case's model (lme4's spelling): correlated intercept and slope on
#: each of three crossed factors.
D3_FORMULA = "y ~ 1 + u + (1 + u | g) + (1 + u | h) + (1 + u | i)"


def d3_like(n_rows: int, seed: int = 0):
    """Three crossed factors with a correlated intercept and slope on each: ``g`` with
    ``n_rows // 30`` levels, ``h`` and ``i`` with ``n_rows // 100`` (uniform), a covariate
    ``u`` and ``y = 1 + 0.5 u + (a_g + b_g u) + (a_h + b_h u) + (a_i + b_i u) + e``; each
    factor's (a, b) normal with standard deviations (0.6, 0.3), (0.4, 0.2), (0.3, 0.2) and
    correlation 0.4, ``e`` standard normal."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    u = rng.normal(size=n_rows)
    y = 1.0 + 0.5 * u + rng.normal(size=n_rows)
    out = {}
    for name, levels, sds in (("g", max(n_rows // 30, 2), (0.6, 0.3)),
                              ("h", max(n_rows // 100, 2), (0.4, 0.2)),
                              ("i", max(n_rows // 100, 2), (0.3, 0.2))):
        code = rng.integers(0, levels, size=n_rows)
        cov = np.array([[sds[0] ** 2, 0.4 * sds[0] * sds[1]],
                        [0.4 * sds[0] * sds[1], sds[1] ** 2]])
        effects = rng.multivariate_normal(np.zeros(2), cov, size=levels)
        y += effects[code, 0] + effects[code, 1] * u
        out[name] = code.astype(np.int64)
    return pd.DataFrame({**out, "u": u, "y": y})


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
    base, _, fit = name.partition(":")
    if fit not in ("", "ml", "reml"):
        raise ValueError(f"crossed case {name!r}: after ':' comes 'ml' or 'reml'")
    case = _base_case(base, name)
    return {**case, "name": name, "base": base, "reml": fit != "ml"}


def _base_case(base: str, name: str) -> dict[str, Any]:
    if base == "insteval":
        return {"formula": "y ~ service", "factors": ["s", "d"]}
    if base == "star":
        return {"formula": STAR_FORMULA, "factors": ["id", "tch", "sch"]}
    if base == "d3" or base.startswith("d3x"):
        try:
            rows = int(float(base[3:])) if base != "d3" else 60_000
        except ValueError:
            raise ValueError(f"crossed case {name!r}: write d3 or d3xROWS") from None
        return {"formula": "y ~ u", "factors": ["g", "h", "i"], "rows": rows,
                "lmer": D3_FORMULA, "kind": "d3"}
    if base == "kb07":
        return {"formula": "rt ~ spkr * prec * load", "factors": ["subj", "item"],
                "lmer": KB07_FORMULA, "kind": "kb07"}
    fields = base.lower().split("x")
    tail = "gamma"
    if len(fields) == 4 and fields[3] == "heavy":
        fields, tail = fields[:3], "lognormal"
    try:
        rows, users, items = (int(float(v)) for v in fields)
    except ValueError:
        raise ValueError(f"crossed case {name!r} is neither 'insteval', 'star', 'd3', 'kb07' "
                         "nor ROWSxUSERSxITEMS[xheavy]") from None
    return {"formula": "y ~ x", "factors": ["user", "item"], "rows": rows,
            "users": users, "items": items, "users_tail": tail}


def check_cases(cases: list[str]) -> None:
    """Raise ``ValueError`` naming the first case that is neither ``insteval``, ``star``,
    ``d3[xROWS]``, ``kb07`` nor ``ROWSxUSERSxITEMS[xheavy]`` with positive sizes (before
    any work)."""
    if not cases:
        raise ValueError("no crossed case given")
    for name in cases:
        case = _case(name)
        if "rows" in case and min(case["rows"], case.get("users", 1),
                                  case.get("items", 1)) < 1:
            raise ValueError(f"crossed case {name!r} needs positive ROWS, USERS and ITEMS")


def _write_data(case: dict, data_dir: Path, insteval: Path, partitions: int, seed: int) -> Path:
    """The case's data as Parquet files in their own folder (written once; ``seed``
    draws the simulated cases, the data sets read from files are as they are)."""
    import pandas as pd

    folder = data_dir / f"crossed_{case['name'].partition(':')[0]}_p{partitions}_s{seed}"
    if (folder / "_done").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    if case["base"] == "insteval":
        frame = pd.read_csv(insteval)[["s", "d", "service", "y"]]
    elif case["base"] == "star":
        csv = folder.parent / f"{folder.name}.csv"  # beside the Parquet folder, not in it
        frame = star_frame(csv)
        csv.unlink()
    elif case.get("kind") == "d3":
        frame = d3_like(case["rows"], seed)
    elif case.get("kind") == "kb07":
        frame = pd.read_csv(KB07_DATA)
    else:
        frame = movielens_like(case["rows"], case["users"], case["items"], seed,
                               users=case["users_tail"])
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
        if case.get("lmer"):
            return "slopes on crossed factors: statsmodels' one group would hold them dense"
        if sum(levels.values()) > STATSMODELS_MAX_LEVELS:
            return f"dense algebra on {sum(levels.values())} levels in one group"
        return None

    def lme4_formula(case):
        return case.get("lmer") or (case["formula"] + " + "
                                    + " + ".join(f"(1 | {f})" for f in case["factors"]))

    def gpboost(case):
        if case.get("lmer"):
            return "gpboost has no correlated random slopes"
        if case["reml"]:
            return "gpboost fits ML only (name the case with ':ml')"
        response, covariates = case["formula"].split("~")
        if case["base"] == "star":
            return "categorical covariates (gpboost takes a numeric design)"
        return {"response": response.strip(),
                "covariates": [c.strip() for c in covariates.split("+")],
                "factors": case["factors"]}

    return CaseKind("crossed", _case, write, _model, lme4_formula, skip, gpboost)


def run_crossed_bench(cases: list[str], workers: int = 2, data_dir=None,
                      insteval: str | os.PathLike | None = None,
                      peers: tuple[str, ...] = ("statsmodels", "lme4", "gpboost"),
                      peer_budget: float = 1200.0, timeout: float = 1800.0, seed: int = 0,
                      log=print, gpboost_python: str | None = None) -> dict[str, Any]:
    """Run the crossed benchmark (see the module docstring); its JSON document.
    ``gpboost_python``: a Python that has gpboost (else this one, if it has it; else
    gpboost is skipped with a line in the log)."""
    check_cases(cases)
    kind = _kind(Path(insteval) if insteval else INSTEVAL_DEFAULT)
    return run_cases(kind, cases, workers=workers, data_dir=data_dir, peers=peers,
                     peer_budget=peer_budget, timeout=timeout, seed=seed, log=log,
                     line=crossed_line, gpboost=gpboost_python)


def crossed_line(row: dict) -> str:
    """One line of the crossed benchmark's log and table."""
    return case_line(row)

