"""The nested benchmark: Chem97 and Chem97-shaped simulated designs, dlmm beside lme4.

Cases are ``"chem97"`` (mlmRev's Chem97: 31,022 pupils in 2,410 schools in 131
education authorities, ``score ~ gcsecnt + gender + (1 | lea/school)``, from the
CSV the reference numbers were made from) or ``"OUTERxINNERxROWS"``
(:func:`chem97_like`: OUTER authorities of INNER schools of ROWS pupils each, the
same model). dlmm and statsmodels state it as ``groups="lea"``, an intercept per
authority and the component ``0 + C(school)`` (a school's label need only be unique
within its authority); lme4 as ``(1 | lea/school)``. The run is
:mod:`dlmm.bench.cases`'s; statsmodels only up to ``STATSMODELS_MAX_ROWS`` (it holds
each authority's component design as a dense rows × schools array).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .cases import CaseKind, run_cases

#: statsmodels' dense per-group component designs: rows × inner levels of each group.
STATSMODELS_MAX_ROWS = 1_000_000
CHEM97_DEFAULT = Path(__file__).resolve().parents[2] / "tests" / "reference" / "nested" / \
    "data" / "chem97.csv.gz"
FORMULA = "score ~ gcsecnt + gender"


def chem97_like(n_outer: int, n_inner: int, n_rows: int, seed: int = 0):
    """Chem97-shaped data: ``lea`` (outer), ``school`` (numbered within its ``lea``),
    ``gcsecnt``, ``gender`` (0/1) and ``score``.

    ``score = 5.5 + 2.5 gcsecnt + 0.3 gender + u_lea + v_school + e`` with standard
    deviations 0.3, 0.75 and 2.1 for ``u``, ``v``, ``e`` (about Chem97's estimates);
    each school has ``n_rows`` pupils.
    """
    import pandas as pd

    rng = np.random.default_rng(seed)
    n = n_outer * n_inner * n_rows
    lea = np.repeat(np.arange(n_outer, dtype=np.int64), n_inner * n_rows)
    school = np.tile(np.repeat(np.arange(n_inner, dtype=np.int64), n_rows), n_outer)
    gcsecnt = rng.normal(size=n)
    gender = rng.integers(0, 2, size=n, dtype=np.int64)
    u = rng.normal(0, 0.3, n_outer)[lea]
    v = rng.normal(0, 0.75, n_outer * n_inner)[lea * n_inner + school]
    score = 5.5 + 2.5 * gcsecnt + 0.3 * gender + u + v + rng.normal(0, 2.1, n)
    return pd.DataFrame({"lea": lea, "school": school, "gcsecnt": gcsecnt,
                         "gender": gender, "score": score})


def _case(name: str) -> dict[str, Any]:
    base = {"name": name, "formula": FORMULA, "factors": ["lea", "lea:school"]}
    if name == "chem97":
        return base
    try:
        outer, inner, rows = (int(float(v)) for v in name.lower().split("x"))
    except ValueError:
        raise ValueError(f"nested case {name!r} is neither 'chem97' nor OUTERxINNERxROWS")\
            from None
    if min(outer, inner, rows) < 1:
        raise ValueError(f"nested case {name!r} needs positive OUTER, INNER and ROWS")
    return {**base, "outer": outer, "inner": inner, "per_inner": rows,
            "rows": outer * inner * rows}


def check_cases(cases: list[str]) -> None:
    """Raise ``ValueError`` naming the first case that is neither ``chem97`` nor
    ``OUTERxINNERxROWS`` with positive sizes (before any work)."""
    if not cases:
        raise ValueError("no nested case given")
    for name in cases:
        _case(name)


def _writer(chem97: Path):
    def write(case: dict, data_dir: Path, partitions: int, seed: int) -> Path:
        """The case's data as Parquet files in their own folder (written once), split
        at authority boundaries, as data written authority by authority are."""
        import pandas as pd

        folder = data_dir / f"nested_{case['name']}_p{partitions}_s{seed}"
        if (folder / "_done").exists():
            return folder
        folder.mkdir(parents=True, exist_ok=True)
        if case["name"] == "chem97":
            frame = pd.read_csv(chem97)[["lea", "school", "gcsecnt", "gender", "score"]]
        else:
            frame = chem97_like(case["outer"], case["inner"], case["per_inner"], seed)
        frame = frame.sort_values("lea", kind="stable").reset_index(drop=True)
        cuts = np.searchsorted(frame["lea"].to_numpy(),
                               frame["lea"].to_numpy()[np.linspace(
                                   0, len(frame) - 1, partitions + 1).astype(int)[1:-1]])
        for k, part in enumerate(np.split(np.arange(len(frame)), np.unique(cuts))):
            frame.iloc[part].to_parquet(folder / f"part-{k:03d}.parquet", index=False)
        (folder / "_done").write_text("")
        return folder

    return write


def _model(case: dict) -> dict:
    return {"groups": "lea", "re_formula": "1", "vc_formula": {"school": "0 + C(school)"}}


def _skip(case: dict, levels: dict) -> str | None:
    if case.get("rows", 0) > STATSMODELS_MAX_ROWS:
        return f"dense component designs of {case['rows']:,} rows"
    return None


def nested_kind(chem97: str | Path | None = None) -> CaseKind:
    """The nested designs' :class:`~dlmm.bench.cases.CaseKind`."""
    return CaseKind("nested", _case, _writer(Path(chem97) if chem97 else CHEM97_DEFAULT),
                    _model, lambda case: case["formula"] + " + (1 | lea/school)", _skip)


def run_nested_bench(cases: list[str], workers: int = 2, data_dir=None, chem97=None,
                     peers: tuple[str, ...] = ("statsmodels", "lme4"),
                     peer_budget: float = 1200.0, timeout: float = 1800.0, seed: int = 0,
                     log=print) -> dict[str, Any]:
    """Run the nested benchmark (see the module docstring); its JSON document."""
    check_cases(cases)
    return run_cases(nested_kind(chem97), cases, workers=workers, data_dir=data_dir,
                     peers=peers, peer_budget=peer_budget, timeout=timeout, seed=seed,
                     log=log)
