"""The statistics cache with a residual model (``residual_by``, ``residual_ar1``, weights):
a night's new file is read alone, the fit equals a full refit, and a damaged archive is
read again (:mod:`dlmm.structure.residual_cache`). Each file holds one visit of every
group, as a nightly pipeline appends them, so every AR(1) pair joins two files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import dlmm

KW = {"groups": "g", "re_formula": "~x", "residual_by": "s", "residual_ar1": "t",
      "weights": "w"}
REL = 1e-8


def _night(t: int) -> pd.DataFrame:
    rng = np.random.default_rng(t)
    g = np.arange(80)
    x = rng.normal(size=80)
    s = rng.choice(["day", "night", "weekend"], 80, p=[0.5, 0.3, 0.2])
    base = np.random.default_rng(0).normal(size=(80, 2))  # the groups' own effects
    y = 1 + 0.5 * x + base[:, 0] + 0.5 * base[:, 1] * x + rng.normal(size=80) * \
        pd.Series(s).map({"day": 1.0, "night": 0.5, "weekend": 2.0}).to_numpy()
    return pd.DataFrame({"g": [f"g{j:02d}" for j in g], "t": t, "x": x, "s": s,
                         "w": rng.uniform(0.5, 2, 80).round(3), "y": y})


def _write(folder: Path, nights) -> None:
    folder.mkdir(exist_ok=True)
    for t in nights:
        _night(t).to_parquet(folder / f"night-{t:03d}.parquet", index=False)


def _full(folder: Path):
    frame = pd.concat([pd.read_parquet(f) for f in sorted(folder.glob("*.parquet"))],
                      ignore_index=True)
    return dlmm.mixedlm("y ~ x", frame, **KW).fit()


def _same(a, b) -> None:
    assert a.converged and b.converged
    np.testing.assert_allclose(a.llf, b.llf, rtol=REL)
    np.testing.assert_allclose(np.asarray(a.fe_params), np.asarray(b.fe_params), rtol=REL)
    np.testing.assert_allclose(np.asarray(a.cov_re), np.asarray(b.cov_re), rtol=1e-6)
    np.testing.assert_allclose(a.residual.delta, b.residual.delta, rtol=1e-6)
    np.testing.assert_allclose(a.residual.rho, b.residual.rho, rtol=1e-6)


def test_a_new_night_is_read_alone_and_equals_a_full_refit(tmp_path, dask_client, caplog):
    data, cache = tmp_path / "data", tmp_path / "cache"
    _write(data, range(1, 5))
    first = dlmm.mixedlm("y ~ x", str(data), client=dask_client, cache=cache, **KW)
    _same(first.fit(), _full(data))
    assert len(first.cache_report.read) == 4
    _write(data, [5])
    again = dlmm.mixedlm("y ~ x", str(data), client=dask_client, cache=cache, **KW)
    _same(again.fit(), _full(data))
    report = again.cache_report
    assert [Path(p).name for p in report.read] == ["night-005.parquet"], report.rebuilt
    assert report.reused == 4 and report.aggregate.startswith("not kept")

    archive = next(iter(sorted((cache / "stats").glob("*.npz"))))
    archive.write_bytes(b"garbage" * 10)
    damaged = dlmm.mixedlm("y ~ x", str(data), client=dask_client, cache=cache, **KW)
    with caplog.at_level("WARNING"):
        _same(damaged.fit(), _full(data))
    assert len(damaged.cache_report.recomputed) == 1
    assert "reading" in caplog.text and "again" in caplog.text


def test_variance_components_are_refused_before_any_read(tmp_path):
    data = tmp_path / "data"
    _write(data, [1])
    with pytest.raises(dlmm.InputError, match="variance components"):
        dlmm.mixedlm("y ~ x", str(data), cache=tmp_path / "cache",
                     vc_formula={"c": "0 + C(s)"}, **KW).fit()
