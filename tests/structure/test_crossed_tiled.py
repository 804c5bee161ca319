"""A crossed dense part beyond the driver's memory limit is factored on the workers
(issue 24, item 3): the same estimates as the driver's fit, and what the cluster
cannot hold is refused with its sizes before the pass."""

from __future__ import annotations

import dask
import numpy as np
import pandas as pd
import pytest

import dlmm
from dlmm.distributed.dask_backend import DaskBackend
from dlmm.exceptions import InputError
from dlmm.structure import crossed
from dlmm.structure.crossed_tiled import TiledCrossedStatistics
from dlmm.structure.driver_memory import driver_memory

#: Workers' memory limits as Dask reports them; the memory manager does not act on
#: them here.
WORKER_MEMORY = "300MB"


@pytest.fixture(scope="module")
def client():
    """Two worker processes on 127.0.0.1 with a memory limit of 300 MB each (reported,
    not enforced)."""
    from distributed import Client, LocalCluster

    quiet = {f"distributed.worker.memory.{k}": False
             for k in ("target", "spill", "pause", "terminate")}
    with dask.config.set(quiet), LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address=None, memory_limit=WORKER_MEMORY,
    ) as cluster, Client(cluster, set_as_default=False) as c:
        yield c


def ratings(n_rows: int, users: int, items: int, seed: int = 5) -> pd.DataFrame:
    """``rating ~ 1 + x + (1 | user) + (1 | item)``, every level seen."""
    rng = np.random.default_rng(seed)
    user = np.concatenate([np.arange(users), rng.integers(0, users, n_rows - users)])
    item = np.concatenate([np.arange(items) % items, rng.integers(0, items, n_rows - items)])
    x = rng.normal(size=n_rows)
    rating = 3.0 + 0.2 * x + 0.6 * rng.normal(size=users)[user] \
        + 0.4 * rng.normal(size=items)[item] + rng.normal(size=n_rows)
    return pd.DataFrame({"rating": rating, "x": x, "user": user, "item": item})


VC = {"user": "0 + C(user)", "item": "0 + C(item)"}


def model(frame: pd.DataFrame) -> dlmm.MixedLM:
    return dlmm.MixedLM.from_formula("rating ~ x", frame, groups=None, re_formula="0",
                                     vc_formula=VC)


def test_the_tiled_fit_gives_the_driver_fits_estimates(client, monkeypatch):
    """400 users x 200 items (a dense part of 200: 320 kB) with a driver limit of
    50 kB: the dense part is built, factored and inverted by tiles on the two
    workers (the driver's system is never built) and llf, fixed effects, variances,
    scale, standard errors and conditional modes and variances are the driver's fit's
    to 1e-8."""
    frame = ratings(3000, 400, 200)
    driver = model(frame).fit()
    assert type(driver.model._stats) is crossed.CrossedStatistics

    def no_driver_system(*args, **kwargs):
        raise AssertionError("the driver's dense system was built")

    monkeypatch.setattr(crossed, "build_system", no_driver_system)
    tiled = model(frame).fit(client=client, driver_memory="50kB")
    stats = tiled.model._stats
    assert isinstance(stats, TiledCrossedStatistics) and stats.schur.n == 4
    assert tiled.converged
    np.testing.assert_allclose(tiled.llf, driver.llf, rtol=1e-10)
    np.testing.assert_allclose(tiled.fe_params, driver.fe_params, rtol=1e-8)
    np.testing.assert_allclose(tiled.vcomp, driver.vcomp, rtol=1e-8)
    np.testing.assert_allclose(tiled.scale, driver.scale, rtol=1e-8)
    np.testing.assert_allclose(tiled.bse, driver.bse, rtol=1e-6)
    effects, reference = tiled.random_effects[0], driver.random_effects[0]
    np.testing.assert_allclose(effects.to_numpy(), reference.to_numpy(), rtol=1e-7,
                               atol=1e-10)
    (variances,), (expected,) = ([p.vc_var for p in r.effects._parts] for r in (tiled, driver))
    assert variances.shape == (600,)
    np.testing.assert_allclose(variances, expected, rtol=1e-7)


def test_the_driver_holds_no_dense_part(client):
    """3,000 users x 2,000 items (a dense part of 2,000: 32 MB): one evaluation with
    its gradient allocates at most a quarter of that on the driver (the workers are
    other processes; what it allocates, 0.08 of it measured, is mostly the client's
    and scheduler's bookkeeping of its tasks), the same pieces as the driver's path."""
    import tracemalloc

    frame = ratings(10_000, 3000, 2000, seed=9)
    tiled = model(frame)
    tiled.prepare(client=client)  # the pass under the default limit: the driver's system
    with driver_memory("1MB"):
        model_tiled = model(frame).prepare(client=client)
    stats = model_tiled._stats
    assert isinstance(stats, TiledCrossedStatistics)
    theta = np.array([0.7, 0.5])
    stats.pieces(np.zeros((0, 0)), theta * 1.1)  # first use: imports, connections
    tracemalloc.start()
    try:
        pieces = stats.pieces(np.zeros((0, 0)), theta)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 0.25 * 8 * 2000**2, peak / (8 * 2000**2)
    expected = tiled._stats.pieces(np.zeros((0, 0)), theta)
    np.testing.assert_allclose(pieces.logdet, expected.logdet, rtol=1e-12)
    np.testing.assert_allclose(pieces.dlogdet, expected.dlogdet, rtol=1e-10)
    np.testing.assert_allclose(pieces.dhmh, expected.dhmh, rtol=1e-9,
                               atol=1e-12 * np.abs(expected.dhmh).max())


def test_a_dense_part_beyond_the_cluster_is_refused_before_the_pass(client, monkeypatch):
    """9,500 users x 9,000 items: a dense part of 648 MB needs about 1.3 GB by tiles,
    more than the workers' 600 MB: refused in one line with the sizes, and no chunk
    of rows was summed."""
    passes = []
    monkeypatch.setattr(DaskBackend, "map_chunks",
                        lambda self, *a, **k: passes.append(1))
    monkeypatch.setattr(crossed, "chunk_sums", lambda *a, **k: passes.append(1))
    frame = ratings(20_000, 9500, 9000)
    with pytest.raises(InputError) as info:
        model(frame).fit(client=client, driver_memory="500MB")
    message = str(info.value)
    assert "\n" not in message
    assert "9,000 x 9,000" in message and "0.648 GB" in message, message
    assert "per worker over 2 workers" in message and "0.6 GB" in message, message
    assert passes == []


def test_without_a_cluster_a_dense_part_beyond_the_limit_is_refused():
    """In process (pandas, no client) the limit refuses before the pass, naming the
    option and the way out."""
    frame = ratings(600, 60, 30)
    with pytest.raises(InputError, match=r"the factors after .user. \(.item.: 30 levels\) "
                                         r"\(30 x 30 random effects.*more than its limit "
                                         r"of 5e-06 GB \(driver_memory\).*Dask cluster"):
        model(frame).fit(driver_memory=5_000)


def test_beyond_the_drivers_cap_on_its_order_a_cluster_takes_the_dense_part(client,
                                                                           monkeypatch):
    """Within the driver's memory but over its cap on the dense part's order
    (``MAX_DENSE_EFFECTS``, which refuses in process), a Dask backend's cluster takes
    it; in process the driver's own refusal stands."""
    from types import SimpleNamespace

    from dlmm.structure.crossed_tiled import tiled_client

    layout = SimpleNamespace(n_levels=[300, 96], factors=["user", "item"])
    assert tiled_client(layout, SimpleNamespace(name="dask", client=client)) is None
    monkeypatch.setattr(crossed, "MAX_DENSE_EFFECTS", 90)
    assert tiled_client(layout, SimpleNamespace(name="dask", client=client)) is client
    assert tiled_client(layout, SimpleNamespace(name="local")) is None
    monkeypatch.setattr("dlmm.structure.crossed_tiled.TILE_COPIES", 1e4)  # 737 MB
    with pytest.raises(InputError, match=r"holds at most 90 random effects in the dense part "
                                         r"on the driver, the factors after 'user' \('item': "
                                         r"96 levels\) \(96 x 96 .*cannot hold it either"):
        tiled_client(layout, SimpleNamespace(name="dask", client=client))


def test_a_model_of_lme4s_terms_over_the_limit_is_refused_naming_why():
    """A slope on a crossed factor (lme4's spelling only) goes to the terms engine,
    which is not factored on the workers: over ``driver_memory`` it is refused in one
    line saying so."""
    frame = ratings(600, 60, 30)
    model = dlmm.lmer("rating ~ x + (1 + x | user) + (1 | item)", frame, fit=False)
    with pytest.raises(InputError, match=r"more than its limit of [\d.]+ GB \(a model of "
                                         r"lme4's terms is not factored on the workers\)"):
        model.fit(driver_memory=1000)


@pytest.mark.parametrize("value", ["lots", -1, "0GB"])
def test_a_bad_driver_memory_is_refused(value):
    with pytest.raises(InputError, match="driver_memory must be"):
        model(ratings(100, 10, 5)).fit(driver_memory=value)
