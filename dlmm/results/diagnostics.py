"""Diagnostic plots of a fit, as lme4 draws them (matplotlib, the ``plot`` extra).

* :func:`residual_plot`: residuals against fitted values (lme4's ``plot(fit)``);
* :func:`residual_qq`: normal QQ plot of the standardized residuals
  ``resid / sigma`` (``qqnorm(resid(fit))``);
* :func:`random_effects_qq`: one normal QQ panel per random effect (or variance
  component), the predicted effects against normal quantiles with their
  ``1 - alpha`` intervals (lme4's ``qqmath(ranef(fit))``).

Each returns the matplotlib Figure (the conventions of
:mod:`dlmm.results.plotting`). The profile zeta plots (lme4's
``xyplot(profile(fit))``) are in :mod:`dlmm.results.profile_plot`.

Residuals of a Dask fit are computed on the workers, chunk by chunk, by the
map the fitted values use (``statistics.map_rows``); each chunk keeps a random
sample of its rows (fraction ``1.5 max_points / nobs``) and only that sample
reaches the driver, where it is cut to ``max_points`` rows (default
:data:`SAMPLE_ROWS` = 5,000). Never all rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..exceptions import InputError
from .distributions import normal_quantile
from .plotting import component_sample, effects_sample, new_figure
from .prediction import predict_chunk, response_of
from .varcorr import lme4_re_names

#: rows of a residual plot brought to the driver, at most
SAMPLE_ROWS = 5000


def residual_sample(result, max_points: int = SAMPLE_ROWS, seed: int = 0) -> pd.DataFrame:
    """Fitted values and residuals of at most ``max_points`` rows of the fit, a
    random sample drawn where the rows are (see the module docstring)."""
    stats = result._require_stats("residual plots")
    spec = result.model.spec
    fe = np.asarray(result.fe_params, dtype=float)
    lookup = result.effects.lookup()
    n_total = max(int(result.nobs), 1)
    frac = min(1.0, 1.5 * max_points / n_total)

    def chunk(frame, lookup, partition_info=None):
        fitted = predict_chunk(frame, spec, fe, lookup, fitted=True)
        out = pd.DataFrame({"fitted": fitted.to_numpy(),
                            "resid": response_of(frame, spec).to_numpy() - fitted.to_numpy()},
                           index=fitted.index)
        if frac < 1.0:
            number = 0 if partition_info is None else int(partition_info["number"])
            out = out.sample(frac=frac, random_state=np.random.default_rng([seed, number]))
        return out

    meta = pd.DataFrame({"fitted": pd.Series(dtype=float), "resid": pd.Series(dtype=float)})
    sample = stats.map_rows(chunk, meta, lookup)
    if hasattr(sample, "compute"):
        sample = sample.compute()
    if len(sample) > max_points:
        sample = sample.sample(n=max_points, random_state=seed)
    sample.attrs["nobs"] = int(result.nobs)
    return sample


def _shown(sample: pd.DataFrame) -> str:
    total = sample.attrs.get("nobs", len(sample))
    return f"{len(sample)} of {total} rows" if total > len(sample) else f"{total} rows"


def residual_plot(result, max_points: int = SAMPLE_ROWS, seed: int = 0, ax=None):
    """Residuals against fitted values (a sample of at most ``max_points`` rows),
    with the zero line. Returns the Figure (the one holding ``ax`` when given)."""
    sample = residual_sample(result, max_points, seed)
    if ax is None:
        ax = new_figure(figsize=(6, 4))[1][0][0]
    ax.scatter(sample["fitted"], sample["resid"], s=8, alpha=0.6, color="tab:blue",
               label="rows")
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.set_xlabel("fitted values")
    ax.set_ylabel("residuals")
    ax.set_title(f"residuals vs fitted ({_shown(sample)})")
    return ax.get_figure()


def normal_quantiles(n: int) -> np.ndarray:
    """R's ``qnorm(ppoints(n))``: plotting positions ``(i - a) / (n + 1 - 2a)``,
    ``a = 3/8`` for ``n <= 10`` else ``1/2``."""
    a = 0.375 if n <= 10 else 0.5
    return normal_quantile((np.arange(1, n + 1) - a) / (n + 1 - 2 * a))


def residual_qq(result, max_points: int = SAMPLE_ROWS, seed: int = 0, ax=None):
    """Normal QQ plot of ``resid / sqrt(scale)`` (a sample of at most ``max_points``
    rows) with the line ``y = x``. Returns the Figure (the one holding ``ax`` when
    given)."""
    sample = residual_sample(result, max_points, seed)
    z = np.sort(sample["resid"].to_numpy() / np.sqrt(result.scale))
    q = normal_quantiles(z.size)
    if ax is None:
        ax = new_figure(figsize=(4.5, 4.5))[1][0][0]
    ax.scatter(q, z, s=8, color="tab:blue", label="standardized residuals")
    lim = [min(q.min(), z.min()), max(q.max(), z.max())]
    ax.plot(lim, lim, color="grey", linewidth=0.8, label="y = x")
    ax.set_xlabel("standard normal quantiles")
    ax.set_ylabel("standardized residuals")
    ax.set_title(f"normal QQ of residuals ({_shown(sample)})")
    ax.legend(loc="upper left")
    return ax.get_figure()


def _effect_panels(result, max_groups: int, seed: int):
    """(title, effects, conditional SDs, n_total) of every random effect, or of
    every variance component when there are none."""
    if result.exog_re_names:
        table, n_total = effects_sample(result, max_groups, seed)
        return [(title, table[name].to_numpy(), table[f"{name} SE"].to_numpy(), n_total)
                for title, name in zip(lme4_re_names(result), result.exog_re_names)]
    if not result.vc_names:
        raise InputError("the model has no random effects to plot")
    panels = []
    for name in result.vc_names:
        part, n_total = component_sample(result, name, max_groups, seed)
        panels.append((name, part["effect"].to_numpy(),
                       np.sqrt(part["variance"].to_numpy()), n_total))
    return panels


def random_effects_qq(result, max_groups: int = 2000, alpha: float = 0.05, seed: int = 0):
    """One normal QQ panel per random effect: the sorted predicted effects against
    normal quantiles, each with its ``1 - alpha`` interval (``+- z`` conditional
    SDs); at most ``max_groups`` groups, a random sample. Returns the Figure."""
    panels = _effect_panels(result, max_groups, seed)
    fig, axes = new_figure(1, len(panels), figsize=(3.8 * len(panels), 4))
    crit = normal_quantile(1 - alpha / 2)
    for ax, (title, effect, se, n_total) in zip(axes[0], panels):
        order = np.argsort(effect, kind="stable")
        q = normal_quantiles(effect.size)
        ax.errorbar(effect[order], q, xerr=crit * se[order], fmt="o", markersize=3,
                    elinewidth=0.6, color="tab:blue")
        ax.axvline(0.0, color="grey", linewidth=0.8)
        shown = f"{effect.size} of {n_total}" if n_total > effect.size else f"{n_total}"
        ax.set_title(f"{title} ({shown} groups)")
        ax.set_xlabel("predicted random effect")
    axes[0][0].set_ylabel("standard normal quantiles")
    return fig
