"""Simulated crossed data for the crossed engine's tests (known model, unbalanced)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def crossed_data(n: int = 1500, n_users: int = 40, n_items: int = 15, n_sites: int = 4,
                 seed: int = 5) -> pd.DataFrame:
    """``y = 1 + 0.5 x1 - 0.3 [k == "b"] + u_user + v_item + w_site + e``, rows shuffled.

    Users and items are Zipf-like in frequency (every level seen, the last user
    once); ``sd(u) = 0.8``, ``sd(v) = 0.5``, ``sd(w) = 0.3``, ``sd(e) = 1``.
    """
    rng = np.random.default_rng(seed)

    def levels(count: int, size: int) -> np.ndarray:
        p = 1.0 / np.arange(1, count) ** 0.8
        rest = rng.choice(count - 1, size=size - count, p=p / p.sum())
        return rng.permutation(np.concatenate([np.arange(count), rest]))

    user = levels(n_users, n)
    user[user == n_users - 1] = 0
    user[rng.integers(n)] = n_users - 1  # a level seen once
    item = levels(n_items, n)
    site = rng.integers(0, n_sites, size=n)
    x1 = rng.normal(size=n)
    k = rng.choice(["a", "b"], size=n)
    y = (1.0 + 0.5 * x1 - 0.3 * (k == "b") + rng.normal(scale=0.8, size=n_users)[user]
         + rng.normal(scale=0.5, size=n_items)[item] + rng.normal(scale=0.3, size=n_sites)[site]
         + rng.normal(size=n))
    return pd.DataFrame({
        "y": y, "x1": x1, "k": k, "user": [f"u{j:02d}" for j in user],
        "item": item + 100, "site": np.array(["s1", "s2", "s3", "s4"])[site],
    })


FORMULA = "y ~ x1 + C(k)"
VC = {"user": "0 + C(user)", "item": "0 + C(item)", "site": "0 + C(site)"}
