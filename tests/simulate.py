"""Data from known mixed models, for tests (``from tests.simulate import ...``)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def grouped_data(
    n_groups: int = 60,
    per_group: int | tuple[int, int] = 10,
    k_fe: int = 3,
    re_cov: np.ndarray | None = None,
    vc_sd: dict[str, float] | None = None,
    vc_levels: int = 3,
    scale: float = 1.0,
    seed: int = 0,
) -> pd.DataFrame:
    """Rows ``y = X b + Z u_g + sum_k W_k v_k + e`` with columns y, x1..x{k_fe-1}, g, and
    one categorical column per variance component (levels nested in the groups).

    ``re_cov`` is the covariance of the random effects of ``[1, x1, x2, ...]``
    (its size sets how many of the x columns carry a random slope);
    ``per_group`` is a size or a (low, high) range of sizes.
    """
    rng = np.random.default_rng(seed)
    if isinstance(per_group, tuple):
        sizes = rng.integers(per_group[0], per_group[1] + 1, size=n_groups)
    else:
        sizes = np.full(n_groups, per_group)
    g = np.repeat(np.arange(n_groups), sizes)
    n = g.shape[0]
    x = rng.normal(size=(n, max(k_fe - 1, 0)))
    design = np.column_stack([np.ones(n), x])
    beta = np.linspace(1.0, 0.2, k_fe)
    y = design @ beta + rng.normal(scale=np.sqrt(scale), size=n)
    if re_cov is not None:
        re_cov = np.atleast_2d(re_cov)
        k = re_cov.shape[0]
        u = rng.multivariate_normal(np.zeros(k), re_cov, size=n_groups)
        y += np.sum(design[:, :k] * u[g], axis=1)
    frame = {"y": y, "g": g}
    for j in range(x.shape[1]):
        frame[f"x{j + 1}"] = x[:, j]
    for name, sd in (vc_sd or {}).items():
        level = rng.integers(0, vc_levels, size=n)
        effects = rng.normal(scale=sd, size=(n_groups, vc_levels))
        y += effects[g, level]
        frame[name] = np.array([f"{name}{v}" for v in range(vc_levels)])[level]
    frame["y"] = y
    return pd.DataFrame(frame)
