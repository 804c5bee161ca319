"""Plots of a fit (matplotlib, the optional ``plot`` extra), and the conventions
every plot of dlmm follows.

Every plot function (and every ``plot_*`` method of a result) returns the
matplotlib ``Figure`` (one convention: ``fig.savefig(path)``, ``fig.axes``
for the panels; a Figure's ``.figure`` is itself, so code written for an
Axes' ``ax.figure.savefig`` keeps working). Figures use matplotlib's
constrained layout (:func:`new_figure`), so no title, label, tick label or
legend is cut off at the figure's edge; several panels are laid out in a grid
of at most ``ceil(sqrt(n))`` columns (:func:`grid_shape`), as lattice does
for lme4's panel plots.

* :func:`caterpillar`: lme4's ``dotplot(ranef(fit))``. One panel per random
  effect, side by side, the groups in one shared order (by the first effect)
  so a group sits on the same row in every panel; each predicted effect with
  its ``1 - alpha`` interval (``+- z sqrt(conditional variance)``). Panels are
  named as lme4 names them (``(Intercept)``, not the group column); group
  labels are shown when there are at most ``max_labels`` rows. When there are
  more groups than ``max_groups`` a reproducible random sample is drawn: the
  table is computed on the workers and only the sample reaches the driver.
  A fit with variance components only (crossed factors) gets one panel per
  component, each in its own order.
* :func:`optimization_trace`: llf of every evaluation, the accepted path (the
  evaluations that improved on every earlier one) as a line and the other
  trial points (rejected steps, line-search and difference evaluations) as
  separate markers; the gradient norm on a log axis; a legend.

The diagnostic plots (residuals, QQ) are in :mod:`dlmm.results.diagnostics`,
the profile zeta plots in :mod:`dlmm.results.profile_plot`.
"""

from __future__ import annotations

import math
import re

import numpy as np

from ..exceptions import InputError
from .distributions import normal_quantile


def pyplot():
    """``matplotlib.pyplot``, or an error that says how to install it."""
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError("plots need matplotlib: pip install 'dlmm[plot]'") from None
    return plt


def grid_shape(n_panels: int) -> tuple[int, int]:
    """(rows, columns) of a grid of ``n_panels`` panels: ``ceil(sqrt(n))`` columns
    and as many rows as needed (1 -> 1x1, 2 -> 1x2, 3-4 -> 2x2, 5-6 -> 2x3, 7-9 -> 3x3),
    so the figure stays about as tall as it is wide."""
    columns = max(1, math.ceil(math.sqrt(n_panels)))
    return math.ceil(n_panels / columns), columns


def new_figure(rows: int = 1, columns: int = 1, figsize: tuple[float, float] = (6.5, 4.0),
               **kwargs):
    """A pyplot Figure with a ``rows x columns`` array of Axes (never squeezed), in
    constrained layout (decorations are kept inside the figure). Returns (fig, axes)."""
    plt = pyplot()
    return plt.subplots(rows, columns, figsize=figsize, squeeze=False, layout="constrained",
                        **kwargs)


def _at_most(table, max_rows: int, seed: int):
    """At most ``max_rows`` rows of a pandas or Dask table, a random sample drawn where
    the table is (a fraction with some slack, then cut on the driver), as pandas;
    and the table's number of rows."""
    n_total = len(table)
    if n_total > max_rows:
        table = table.sample(frac=min(1.0, 1.5 * max_rows / n_total), random_state=seed)
    if hasattr(table, "compute"):
        table = table.compute()
    if len(table) > max_rows:
        table = table.sample(n=max_rows, random_state=seed)
    return table, n_total


def effects_sample(result, max_groups: int, seed: int):
    """The random-effects table with SEs of at most ``max_groups`` groups (a random
    sample taken where the table is), as pandas; and the number of groups."""
    return _at_most(result.random_effects_table(with_se=True), max_groups, seed)


def component_sample(result, name: str, max_effects: int, seed: int):
    """The effects of variance component ``name`` (rows of :meth:`vc_effects_table`),
    at most ``max_effects`` of them (a random sample taken where the table is), as
    pandas; and their number."""
    vc = result.vc_effects_table()
    return _at_most(vc[vc["component"] == name], max_effects, seed)


def _panels(result, effect, max_groups, seed):
    """(title, values, SDs, labels, order) per panel, and the number of groups."""
    from .varcorr import lme4_re_names

    names = list(result.exog_re_names)
    if names:
        titles = dict(zip(names, lme4_re_names(result)))
        chosen = names
        if effect is not None:
            by_title = {t: n for n, t in titles.items()}
            if effect not in names and effect not in by_title:
                raise InputError(f"no random effect named {effect!r} (have "
                                 f"{', '.join(titles.values())})")
            chosen = [by_title.get(effect, effect)]
        table, n_total = effects_sample(result, max_groups, seed)
        order = np.argsort(table[names[0]].to_numpy(), kind="stable")  # shared order
        labels = [str(v) for v in table.index]
        return [(titles[n], table[n].to_numpy(), table[f"{n} SE"].to_numpy(), labels, order)
                for n in chosen], n_total
    if not result.vc_names:
        raise InputError("the model has no random effects to plot")
    chosen = result.vc_names if effect is None else [effect]
    if effect is not None and effect not in result.vc_names:
        raise InputError(f"no variance component named {effect!r} (have "
                         f"{', '.join(result.vc_names)})")
    panels, n_total = [], 0
    for name in chosen:
        part, n_part = component_sample(result, name, max_groups, seed)
        n_total = max(n_total, n_part)
        values = part["effect"].to_numpy()
        panels.append((name, values, np.sqrt(part["variance"].to_numpy()),
                       [_level(c) for c in part["column"]], np.argsort(values, kind="stable")))
    return panels, n_total


def _level(column) -> str:
    """A component column's level: ``C(plate)[m]`` -> ``m``."""
    match = re.match(r"^C\(.*\)\[(.*)\]$", str(column))
    return match.group(1) if match else str(column)


def caterpillar(result, effect: str | None = None, max_groups: int = 200,
                alpha: float = 0.05, seed: int = 0, max_labels: int = 60):
    """Caterpillar plot of the predicted random effects (see the module docstring):
    every random effect, or only ``effect`` (its lme4 or statsmodels name).

    Returns
    -------
    matplotlib.figure.Figure
        One panel per effect in ``fig.axes`` (side by side, as lme4's
        ``dotplot``), titled with the effect's lme4 name; the figure's title and
        the group axis name the grouping factor (e.g. ``Subject``).
    """
    panels, n_total = _panels(result, effect, max_groups, seed)
    grouped = bool(result.exog_re_names)
    n_rows = max(len(p[1]) for p in panels)
    show_labels = n_rows <= max_labels
    height = max(3.0, (0.17 if show_labels else 0.03) * n_rows + 1.6)
    fig, axes = new_figure(1, len(panels), figsize=(3.4 * len(panels) + 0.8, height),
                           sharey=grouped)
    z = normal_quantile(1 - alpha / 2)
    for ax, (title, values, se, labels, order) in zip(axes[0], panels):
        y = np.arange(len(order))
        ax.errorbar(values[order], y, xerr=z * se[order], fmt="o", markersize=3,
                    elinewidth=0.8, color="tab:blue")
        ax.axvline(0.0, color="grey", linewidth=0.8)
        ax.set_title(title)
        ax.set_xlabel("predicted random effect")
        if show_labels:
            ax.set_yticks(y)
            ax.set_yticklabels([labels[i] for i in order], fontsize=7)
        else:
            ax.set_yticks([])
    shown = f"{n_rows} of {n_total} groups" if n_total > n_rows else f"{n_total} groups"
    intervals = f"{100 * (1 - alpha):g}% intervals"
    if grouped:
        axes[0][0].set_ylabel(result.group_name)
        fig.suptitle(f"{result.group_name}: predicted random effects, {intervals} ({shown})")
    else:
        fig.suptitle(f"predicted random effects, {intervals} ({shown})")
    return fig


def accepted_path(llf: np.ndarray) -> np.ndarray:
    """Which evaluations improved on every earlier one (the optimizer's accepted
    path; the others are trial points it moved away from)."""
    finite = np.where(np.isfinite(llf), llf, -np.inf)
    best_before = np.concatenate([[-np.inf], np.maximum.accumulate(finite)[:-1]])
    return finite > best_before


def optimization_trace(result, ax=None):
    """llf per evaluation (accepted path and rejected trial points) on the left
    axis, the gradient norm (log) on the right, with a legend.

    Returns
    -------
    matplotlib.figure.Figure
        The new figure (constrained layout: the right axis' label stays inside),
        or the one holding ``ax`` when given.
    """
    log = result.optimization_log
    if log is None or not log.entries:
        raise InputError("this result has no optimization log")
    frame = log.to_frame()
    if ax is None:
        ax = new_figure(figsize=(6.5, 3.8))[1][0][0]
    evaluation = frame["evaluation"].to_numpy()
    llf = frame["llf"].to_numpy(dtype=float)
    keep = accepted_path(llf)
    ax.plot(evaluation[keep], llf[keep], "o-", color="tab:blue", markersize=3,
            label="llf, accepted path")
    ax.plot(evaluation[~keep], llf[~keep], "x", color="tab:orange", markersize=5,
            linestyle="none", label="llf, rejected trial points")
    ax.set_xlabel("evaluation")
    ax.set_ylabel("log-likelihood")
    finite = llf[np.isfinite(llf)]
    if finite.size:
        best = finite.max()
        span = max(np.quantile(finite, 0.9) - finite.min(), 1e-9)
        ax.set_ylim(best - 1.2 * span, best + 0.05 * span)
    right = ax.twinx()
    right.semilogy(evaluation, frame["grad_norm"].clip(lower=1e-16), color="tab:red",
                   linewidth=0.8, label="|gradient|")
    right.set_ylabel("|gradient|")
    handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], loc="center right", fontsize=8)
    ax.set_title(f"optimization: {len(frame)} evaluations, final llf {result.llf:.6g}")
    return ax.get_figure()
