"""Partitioned Parquet data sets from a known linear mixed model, written out of core.

``dlmm simulate`` and :func:`simulate_parquet` write ``n_groups * per_group``
rows from the model

.. code-block:: text

    y = X beta + Z u_g + sum_k v_k[g, c_k] + e

    X = [1, x1, ..., x{K-1}]            x_j ~ N(0, 1) independent
    beta                                default linspace(1.0, 0.2, K)
    Z = the columns of X named by re_formula ("~1": intercept; "~x1": intercept and x1;
        "~0 + x1": x1 only)
    u_g ~ N(0, cov_re)                  cov_re = D R D, D = diag(re_sd), R = 1 on the
                                        diagonal and re_corr elsewhere
                                        (default re_sd 1.0 for the intercept, 0.5 for slopes;
                                        re_corr 0.2)
    c_k ~ uniform on vc_levels levels  one categorical column per variance component k,
                                        levels "<name>0", "<name>1", ... nested in the groups
    v_k[g, l] ~ N(0, sd_k^2)            one effect per group and level (vcomp_k = sd_k^2)
    e ~ N(0, scale)                     default scale 1.0

with columns ``y, x1, ..., x{K-1}, g`` (``g``: the group, an integer from 0)
and one string column per variance component. The matching dlmm model is
``dlmm.mixedlm("y ~ x1 + ... + x{K-1}", path, groups="g", re_formula=...,
vc_formula={name: "0 + C(name)"})``; the true parameters, in the names a fit
reports, are written beside the data in ``_truth.json`` (Parquet readers skip
files whose names start with ``_``).

Out of core
-----------
Rows are generated in *blocks* of whole groups (about 65,536 rows each), each
block from its own random stream seeded by ``(seed, block number)``, and
written with pyarrow one row group at a time: memory is bounded by one batch
(``batch_rows``, default 2**20 rows, or less when a partition is smaller),
never the whole table. Partition ``p`` of ``P`` holds the contiguous groups
``[p * G // P, (p + 1) * G // P)``, so every group lies in exactly one file
and files hold ascending group ranges.

Determinism
-----------
Because the random streams belong to blocks of groups, not to files, the
rows depend only on ``(n_groups, per_group, model, seed)``: the same seed
gives the same rows for any number of partitions or batch size, only cut
differently into files.

The output folder is written as a temporary sibling and renamed into place
when complete, so an interrupted run leaves no half-written data set. Its
``_truth.json`` (schema ``dlmm.truth/1``) marks it as a data set of dlmm
simulate: ``overwrite`` replaces only such a folder (or an empty one).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .exceptions import InputError
from .io.folders import SIMULATED_DATA, staged_folder

logger = logging.getLogger("dlmm")

TRUTH_FILE = "_truth.json"
TRUTH_SCHEMA = "dlmm.truth/1"
BLOCK_ROWS = 1 << 16
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass
class SimulationModel:
    """The known model that :func:`simulate_parquet` draws from.

    Parameters
    ----------
    k_fe : int
        Number of fixed effects, the intercept included (columns x1..x{k_fe-1}).
    re_formula : str
        Random-effects terms: ``"~1"``, ``"~x1"``, ``"~0 + x1 + x2"``; ``"0"`` for none.
    re_sd : sequence of float, optional
        Standard deviations of the random effects, in the order of the terms.
    re_corr : float
        Correlation between every pair of random effects.
    vc : mapping of str to float, optional
        Variance components: column name -> standard deviation of its effects.
    vc_levels : int
        Levels of each variance-component column within a group.
    beta : sequence of float, optional
        Fixed effects (intercept first); default ``linspace(1.0, 0.2, k_fe)``.
    scale : float
        Residual variance.
    """

    k_fe: int = 3
    re_formula: str = "~1"
    re_sd: Sequence[float] | None = None
    re_corr: float = 0.2
    vc: Mapping[str, float] = field(default_factory=dict)
    vc_levels: int = 4
    beta: Sequence[float] | None = None
    scale: float = 1.0

    def __post_init__(self) -> None:
        if int(self.k_fe) != self.k_fe or self.k_fe < 1:
            raise InputError(f"--fe must be an integer >= 1, got {self.k_fe!r}")
        self.k_fe = int(self.k_fe)
        self.x_names = [f"x{j}" for j in range(1, self.k_fe)]
        self.intercept, self.re_terms = _parse_re_formula(self.re_formula, self.x_names)
        k_re = len(self.re_terms) + int(self.intercept)
        if self.re_sd is None:
            self.re_sd = [1.0] * int(self.intercept) + [0.5] * len(self.re_terms)
        self.re_sd = [float(s) for s in self.re_sd]
        if len(self.re_sd) != k_re:
            raise InputError(
                f"--re-sd gives {len(self.re_sd)} standard deviations; re_formula "
                f"{self.re_formula!r} has {k_re} random effects"
            )
        if any(not np.isfinite(s) or s < 0 for s in self.re_sd):
            raise InputError(f"--re-sd must be >= 0, got {self.re_sd}")
        corr = np.full((k_re, k_re), float(self.re_corr))
        np.fill_diagonal(corr, 1.0)
        sd = np.asarray(self.re_sd)
        self.cov_re = corr * np.outer(sd, sd)
        if k_re:
            w = np.linalg.eigvalsh(corr)
            if w.min() < -1e-12:
                raise InputError(
                    f"--re-corr {self.re_corr} does not give a valid correlation matrix for "
                    f"{k_re} random effects"
                )
        # A PSD square root that works for singular covariances too (sd = 0).
        w, v = np.linalg.eigh(self.cov_re) if k_re else (np.zeros(0), np.zeros((0, 0)))
        self.re_root = v * np.sqrt(np.clip(w, 0, None))
        self.vc = dict(sorted((str(k), float(v)) for k, v in dict(self.vc).items()))
        reserved = {"y", "g", *self.x_names}
        for name, sd_k in self.vc.items():
            if not _NAME.match(name) or name in reserved:
                raise InputError(
                    f"--vc name {name!r} must be an identifier other than y, g, x1..x{{K-1}}"
                )
            if name == "C":
                # The model's formula, 0 + C(name), must read the column.
                raise InputError(f"--vc name {name!r} is formulaic's C() in the formula "
                                 f"'0 + C({name})'; choose another name, e.g. '{name}_'")
            if not np.isfinite(sd_k) or sd_k < 0:
                raise InputError(f"--vc {name}={sd_k}: the standard deviation must be >= 0")
        if int(self.vc_levels) != self.vc_levels or self.vc_levels < 1:
            raise InputError(f"--vc-levels must be an integer >= 1, got {self.vc_levels!r}")
        self.vc_levels = int(self.vc_levels)
        if k_re == 0 and not self.vc:
            raise InputError("the model needs random effects (--re-formula) or a --vc")
        if self.beta is None:
            self.beta = np.linspace(1.0, 0.2, self.k_fe).tolist()
        self.beta = [float(b) for b in self.beta]
        if len(self.beta) != self.k_fe:
            raise InputError(
                f"--beta gives {len(self.beta)} values; --fe {self.k_fe} needs {self.k_fe}"
            )
        if not np.isfinite(self.scale) or self.scale <= 0:
            raise InputError(f"--scale must be > 0, got {self.scale!r}")
        self.scale = float(self.scale)

    @property
    def k_re(self) -> int:
        return int(self.intercept) + len(self.re_terms)

    def formulas(self) -> dict[str, Any]:
        """The dlmm model to fit to the data (keys as in ``dlmm fit --config``)."""
        rhs = " + ".join(self.x_names) if self.x_names else "1"
        if self.k_re == 0:
            re_formula = "0"
        elif not self.re_terms:
            re_formula = "~1"
        else:
            re_formula = "~" + ("" if self.intercept else "0 + ") + " + ".join(self.re_terms)
        return {
            "formula": f"y ~ {rhs}",
            "groups": "g",
            "re_formula": re_formula,
            "vc": {name: f"0 + C({name})" for name in self.vc},
        }

    def truth(self) -> dict[str, Any]:
        """True parameters in the names and conventions of a dlmm fit."""
        re_names = (["g"] if self.intercept else []) + list(self.re_terms)
        return {
            "fe_params": dict(zip(["Intercept", *self.x_names], self.beta)),
            "cov_re": {"names": re_names, "matrix": self.cov_re.tolist()},
            "vcomp": {name: sd_k**2 for name, sd_k in self.vc.items()},
            "scale": self.scale,
        }


def _parse_re_formula(text: str, x_names: list[str]) -> tuple[bool, list[str]]:
    """``(intercept, slope columns)`` of a simple random-effects formula."""
    body = text.strip()
    body = body[1:] if body.startswith("~") else body
    body = body.replace("-1", "+ 0").replace("- 1", "+ 0")
    terms = [t.strip() for t in body.split("+") if t.strip()]
    intercept = "0" not in terms
    slopes = []
    for term in terms:
        if term in ("0", "1"):
            continue
        if term not in x_names:
            raise InputError(
                f"--re-formula {text!r}: term {term!r} is not one of the simulated columns "
                f"({', '.join(['1', *x_names]) or '1'})"
            )
        if term not in slopes:
            slopes.append(term)
    if terms == ["0"]:
        intercept = False
    return intercept, slopes


def _block_frame(model: SimulationModel, seed: int, block: int, g0: int, g1: int,
                 per_group: int) -> dict[str, np.ndarray]:
    """Columns of the groups ``[g0, g1)`` (one block), from the block's own stream.

    The draws are made in a fixed order; the stream depends only on
    ``(seed, block)``.
    """
    rng = np.random.default_rng([seed, block])
    nb = g1 - g0
    n = nb * per_group
    local = np.repeat(np.arange(nb), per_group)
    u = rng.standard_normal((nb, model.k_re)) @ model.re_root.T if model.k_re else None
    vc_effects = {name: rng.standard_normal((nb, model.vc_levels)) * sd
                  for name, sd in model.vc.items()}
    x = rng.standard_normal((n, model.k_fe - 1))
    vc_level = {name: rng.integers(0, model.vc_levels, size=n, dtype=np.int32)
                for name in model.vc}
    y = rng.standard_normal(n) * np.sqrt(model.scale)
    y += model.beta[0] + x @ np.asarray(model.beta[1:])
    if u is not None:
        k = 0
        if model.intercept:
            y += u[local, 0]
            k = 1
        for j, term in enumerate(model.re_terms):
            y += x[:, model.x_names.index(term)] * u[local, k + j]
    for name in model.vc:
        y += vc_effects[name][local, vc_level[name]]
    cols: dict[str, np.ndarray] = {"y": y}
    for j, name in enumerate(model.x_names):
        cols[name] = np.ascontiguousarray(x[:, j])
    cols["g"] = local.astype(np.int64) + g0
    cols.update(vc_level)
    return cols


def _block_size(per_group: int) -> int:
    """Groups per random-stream block (fixed by ``per_group`` alone)."""
    return max(1, BLOCK_ROWS // per_group)


def _slices(model: SimulationModel, seed: int, per_group: int, g0: int,
            g1: int) -> Iterator[dict[str, np.ndarray]]:
    """The rows of groups ``[g0, g1)``, block by block (cut at the ends)."""
    size = _block_size(per_group)
    for block in range(g0 // size, (g1 - 1) // size + 1):
        b0 = block * size
        b1 = b0 + size
        cols = _block_frame(model, seed, block, b0, b1, per_group)
        lo, hi = (max(g0, b0) - b0) * per_group, (min(g1, b1) - b0) * per_group
        yield {k: v[lo:hi] for k, v in cols.items()}


def _schema(model: SimulationModel):
    import pyarrow as pa

    fields = [pa.field("y", pa.float64())]
    fields += [pa.field(name, pa.float64()) for name in model.x_names]
    fields.append(pa.field("g", pa.int64()))
    fields += [pa.field(name, pa.string()) for name in model.vc]
    return pa.schema(fields)


def _table(model: SimulationModel, parts: list[dict[str, np.ndarray]], schema):
    import pyarrow as pa
    import pyarrow.compute as pc

    arrays = []
    for f in schema:
        values = np.concatenate([p[f.name] for p in parts]) if len(parts) > 1 \
            else parts[0][f.name]
        if f.name in model.vc:
            levels = pa.array([f"{f.name}{j}" for j in range(model.vc_levels)])
            arrays.append(pc.take(levels, pa.array(values)))
        else:
            arrays.append(pa.array(values, type=f.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _write_partition(path: Path, model: SimulationModel, seed: int, per_group: int,
                     g0: int, g1: int, batch_rows: int, compression: str) -> int:
    import pyarrow.parquet as pq

    schema = _schema(model)
    rows = 0
    with pq.ParquetWriter(path, schema, compression=compression,
                          use_dictionary=list(model.vc)) as writer:
        pending: list[dict[str, np.ndarray]] = []
        pending_rows = 0
        for part in _slices(model, seed, per_group, g0, g1):
            pending.append(part)
            pending_rows += part["y"].shape[0]
            if pending_rows >= batch_rows:
                writer.write_table(_table(model, pending, schema))
                rows += pending_rows
                pending, pending_rows = [], 0
        if pending:
            writer.write_table(_table(model, pending, schema))
            rows += pending_rows
    return rows


def _positive_int(value: Any, option: str) -> int:
    try:
        ok = int(value) == value and int(value) >= 1
    except (TypeError, ValueError):
        ok = False
    if not ok or isinstance(value, bool):
        raise InputError(f"{option} must be an integer >= 1, got {value!r}")
    return int(value)


def simulate_parquet(
    path: str | os.PathLike,
    n_groups: int,
    per_group: int,
    *,
    k_fe: int = 3,
    re_formula: str = "~1",
    re_sd: Sequence[float] | None = None,
    re_corr: float = 0.2,
    vc: Mapping[str, float] | None = None,
    vc_levels: int = 4,
    beta: Sequence[float] | None = None,
    scale: float = 1.0,
    partitions: int = 1,
    seed: int = 0,
    overwrite: bool = False,
    batch_rows: int = 1 << 20,
    compression: str = "snappy",
    progress: Callable[[int, int, int], None] | None = None,
) -> dict[str, Any]:
    """Write a partitioned Parquet data set from a known mixed model, out of core.

    Parameters
    ----------
    path : str or PathLike
        Output folder (must not exist unless ``overwrite``); receives
        ``part-00000.parquet`` ... and ``_truth.json``.
    n_groups : int
        Number of groups ``G``.
    per_group : int
        Rows per group ``M``; the data set has exactly ``G * M`` rows.
    k_fe, re_formula, re_sd, re_corr, vc, vc_levels, beta, scale
        The model (see :class:`SimulationModel` and the module docstring).
    partitions : int
        Number of Parquet files ``P`` (at most ``G``); each holds whole groups.
    seed : int
        Seed (>= 0) of the random streams.
    overwrite : bool
        Replace an existing ``path``: only an empty folder or a data set of
        ``dlmm simulate`` (one with its ``_truth.json``).
    batch_rows : int
        Rows generated and written at a time (one Parquet row group); bounds
        the memory used. Does not change the data.
    compression : str
        Parquet compression codec.
    progress : callable, optional
        Called as ``progress(partition, n_partitions, rows)`` after each file.

    Returns
    -------
    dict
        The contents of ``_truth.json``: the model to fit (``model``), the true
        parameters (``truth``), the sizes, the seed and the files.

    Raises
    ------
    InputError
        An invalid size, model option or output path.
    """
    n_groups = _positive_int(n_groups, "--groups")
    per_group = _positive_int(per_group, "--per-group")
    partitions = _positive_int(partitions, "--partitions")
    batch_rows = _positive_int(batch_rows, "batch_rows")
    if partitions > n_groups:
        raise InputError(
            f"--partitions {partitions} is more than --groups {n_groups}: every file holds "
            "whole groups"
        )
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise InputError(f"--seed must be an integer >= 0, got {seed!r}")
    seed = int(seed)
    model = SimulationModel(k_fe=k_fe, re_formula=re_formula, re_sd=re_sd, re_corr=re_corr,
                            vc=dict(vc or {}), vc_levels=vc_levels, beta=beta, scale=scale)
    start = time.perf_counter()
    with staged_folder(path, overwrite, kind=SIMULATED_DATA) as tmp:
        files = []
        for p in range(partitions):
            g0, g1 = p * n_groups // partitions, (p + 1) * n_groups // partitions
            name = f"part-{p:05d}.parquet"
            rows = _write_partition(tmp / name, model, seed, per_group, g0, g1, batch_rows,
                                    compression)
            files.append({"file": name, "rows": rows, "groups": [g0, g1]})
            if progress is not None:
                progress(p, partitions, rows)
        from . import __version__

        truth = {
            "schema": TRUTH_SCHEMA,
            "model": model.formulas(),
            "truth": model.truth(),
            "simulation": {
                "n_groups": n_groups,
                "per_group": per_group,
                "nobs": n_groups * per_group,
                "k_fe": model.k_fe,
                "re_formula": model.re_formula,
                "re_sd": list(model.re_sd),
                "re_corr": float(model.re_corr),
                "vc": dict(model.vc),
                "vc_levels": model.vc_levels,
                "beta": list(model.beta),
                "scale": model.scale,
                "partitions": partitions,
                "seed": seed,
                "block_rows": BLOCK_ROWS,
            },
            "files": files,
            "generator": f"dlmm {__version__}",
            "seconds": time.perf_counter() - start,
        }
        (tmp / TRUTH_FILE).write_text(json.dumps(truth, indent=2) + "\n")
    return truth


def read_truth(path: str | os.PathLike) -> dict[str, Any]:
    """The ``_truth.json`` of a simulated data set."""
    file = Path(path) / TRUTH_FILE
    if not file.exists():
        raise InputError(f"{str(file)!r} does not exist: not a folder written by dlmm simulate")
    return json.loads(file.read_text())
