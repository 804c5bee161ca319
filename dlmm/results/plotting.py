"""Plots of a fit (matplotlib, the optional ``plot`` extra).

* :func:`caterpillar`: each group's predicted random effect with its
  ``1 - alpha`` interval (``+- z sqrt(conditional variance)``), sorted; when
  there are more groups than ``max_groups`` a reproducible random sample is
  drawn (the table itself is computed on the workers and only the sample is
  brought to the driver).
* :func:`optimization_trace`: llf and gradient norm of every evaluation.
"""

from __future__ import annotations

import numpy as np
from scipy import stats as sps

from ..exceptions import InputError


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError("plots need matplotlib: pip install 'dlmm[plot]'") from None
    return plt


def caterpillar(result, effect: str | None = None, max_groups: int = 200,
                alpha: float = 0.05, seed: int = 0, ax=None):
    """Caterpillar plot of the random effect ``effect`` (default the first).

    Returns the matplotlib Axes.
    """
    plt = _pyplot()
    names = result.exog_re_names
    if not names:
        raise InputError("the model has no standard random effects to plot")
    effect = names[0] if effect is None else effect
    if effect not in names:
        raise InputError(f"no random effect named {effect!r} (have {', '.join(names)})")
    table = result.random_effects_table(with_se=True)
    n_total = len(table)
    if n_total > max_groups:
        frac = min(1.0, 1.5 * max_groups / n_total)
        table = table.sample(frac=frac, random_state=seed)
    if hasattr(table, "compute"):
        table = table.compute()
    if len(table) > max_groups:
        table = table.sample(n=max_groups, random_state=seed)
    table = table.sort_values(effect)
    z = sps.norm.ppf(1 - alpha / 2)
    y = np.arange(len(table))
    if ax is None:
        _, ax = plt.subplots(figsize=(6, max(3, 0.04 * len(table) + 2)))
    ax.errorbar(table[effect].to_numpy(), y, xerr=z * table[f"{effect} SE"].to_numpy(),
                fmt="o", markersize=3, elinewidth=0.8, color="tab:blue")
    ax.axvline(0.0, color="grey", linewidth=0.8)
    ax.set_yticks([] if len(table) > 40 else y)
    if len(table) <= 40:
        ax.set_yticklabels([str(v) for v in table.index])
    shown = f"{len(table)} of {n_total} groups" if n_total > len(table) else f"{n_total} groups"
    ax.set_title(f"{effect}: predicted random effects, {100 * (1 - alpha):g}% intervals ({shown})")
    ax.set_xlabel(effect)
    return ax


def optimization_trace(result, ax=None):
    """llf (left axis) and gradient norm (right axis, log) of every evaluation."""
    plt = _pyplot()
    log = result.optimization_log
    if log is None or not log.entries:
        raise InputError("this result has no optimization log")
    frame = log.to_frame()
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(frame["evaluation"], frame["llf"], color="tab:blue", label="llf")
    ax.set_xlabel("evaluation")
    ax.set_ylabel("log-likelihood")
    finite = frame["llf"][np.isfinite(frame["llf"])]
    if len(finite):
        best = finite.max()
        span = max(finite.quantile(0.9) - finite.min(), 1e-9)
        ax.set_ylim(best - 1.2 * span, best + 0.05 * span)
    right = ax.twinx()
    right.semilogy(frame["evaluation"], frame["grad_norm"].clip(lower=1e-16), color="tab:red",
                   linewidth=0.8, label="|gradient|")
    right.set_ylabel("|gradient|")
    ax.set_title(f"optimization: {len(frame)} evaluations, final llf {result.llf:.6g}")
    return ax
