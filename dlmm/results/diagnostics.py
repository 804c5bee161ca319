"""Diagnostic plots of a fit, as lme4 draws them (matplotlib, the ``plot`` extra).

* :func:`residual_plot`: residuals against fitted values (lme4's ``plot(fit)``);
* :func:`residual_qq`: normal QQ plot of the standardized residuals
  ``resid / sigma`` (``qqnorm(resid(fit))``);
* :func:`random_effects_qq`: one normal QQ panel per random effect (or variance
  component), the predicted effects against normal quantiles with their
  ``1 - alpha`` intervals (lme4's ``qqmath(ranef(fit))``);
* :func:`profile_plot`: one panel per parameter, the signed square root of the
  ML profile deviance ``zeta = sign(v - v_hat) sqrt(2 (llf_hat - llf_profile(v)))``
  against the parameter (lme4's ``xyplot(profile(fit))``), from
  :class:`dlmm.results.profile.ProfileLikelihood`; a straight line means the
  Wald interval is the profile one.

Residuals of a Dask fit are computed on the workers, chunk by chunk, by the
map the fitted values use (``statistics.map_rows``); each chunk keeps a random
sample of its rows (fraction ``1.5 max_points / nobs``) and only that sample
reaches the driver, where it is cut to ``max_points`` rows (default
:data:`SAMPLE_ROWS` = 5,000). Never all rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as sps

from ..exceptions import InputError
from .plotting import component_sample, effects_sample, pyplot
from .prediction import predict_chunk, response_of
from .varcorr import lme4_re_names

#: rows of a residual plot brought to the driver, at most
SAMPLE_ROWS = 5000


def residual_sample(result, max_points: int = SAMPLE_ROWS, seed: int = 0) -> pd.DataFrame:
    """Fitted values and residuals of at most ``max_points`` rows of the fit, a
    random sample drawn where the rows are (see the module docstring)."""
    stats = result._require_stats("residual plots")
    spec = result.model.spec
    fe = result.fe_params.to_numpy()
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
    with the zero line. Returns the Axes."""
    plt = pyplot()
    sample = residual_sample(result, max_points, seed)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(sample["fitted"], sample["resid"], s=8, alpha=0.6, color="tab:blue",
               label="rows")
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.set_xlabel("fitted values")
    ax.set_ylabel("residuals")
    ax.set_title(f"residuals vs fitted ({_shown(sample)})")
    return ax


def normal_quantiles(n: int) -> np.ndarray:
    """R's ``qnorm(ppoints(n))``: plotting positions ``(i - a) / (n + 1 - 2a)``,
    ``a = 3/8`` for ``n <= 10`` else ``1/2``."""
    a = 0.375 if n <= 10 else 0.5
    return sps.norm.ppf((np.arange(1, n + 1) - a) / (n + 1 - 2 * a))


def residual_qq(result, max_points: int = SAMPLE_ROWS, seed: int = 0, ax=None):
    """Normal QQ plot of ``resid / sqrt(scale)`` (a sample of at most ``max_points``
    rows) with the line ``y = x``. Returns the Axes."""
    plt = pyplot()
    sample = residual_sample(result, max_points, seed)
    z = np.sort(sample["resid"].to_numpy() / np.sqrt(result.scale))
    q = normal_quantiles(z.size)
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.scatter(q, z, s=8, color="tab:blue", label="standardized residuals")
    lim = [min(q.min(), z.min()), max(q.max(), z.max())]
    ax.plot(lim, lim, color="grey", linewidth=0.8, label="y = x")
    ax.set_xlabel("standard normal quantiles")
    ax.set_ylabel("standardized residuals")
    ax.set_title(f"normal QQ of residuals ({_shown(sample)})")
    ax.legend(loc="upper left")
    return ax


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
    plt = pyplot()
    panels = _effect_panels(result, max_groups, seed)
    fig, axes = plt.subplots(1, len(panels), figsize=(3.8 * len(panels), 4), squeeze=False)
    crit = sps.norm.ppf(1 - alpha / 2)
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
    fig.tight_layout()
    return fig


def profile_points(prof, kind: str, index: tuple, zeta_max: float = 2.6,
                   max_steps: int = 12) -> np.ndarray:
    """``(value, zeta)`` along one parameter's profile, walked out from the ML
    estimate on both sides until ``|zeta| >= zeta_max`` (or a bound)."""
    est = prof.estimate(kind, index)
    bounds = {"re_sd": (0.0, np.inf), "vc_sd": (0.0, np.inf), "sigma": (0.0, np.inf),
              "re_cor": (-1.0, 1.0), "fe": (-np.inf, np.inf)}[kind]
    points = [(est, 0.0)]
    for direction in (-1.0, 1.0):
        start, v, step = prof.theta_hat.copy(), est, 0.4 * prof._step(kind, index, est)
        for _ in range(max_steps):
            v_next = v + direction * step
            if not bounds[0] < v_next < bounds[1]:
                break
            theta, llf = prof.profile_llf(kind, index, v_next, start)
            zeta = direction * np.sqrt(max(0.0, 2.0 * (prof.llf_hat - llf)))
            points.append((v_next, zeta))
            start, v, step = theta, v_next, step * 1.3
            if abs(zeta) >= zeta_max:
                break
    return np.asarray(sorted(points))


def lme4_profile_name(result, kind: str, index: tuple, name: str) -> str:
    """lme4's name of a profiled parameter: ``sd_(Intercept)|Subject``,
    ``cor_Days.(Intercept)|Subject``, ``sd_(Intercept)|cask:batch``, ``sd_Days|Subject``
    (the slope of ``(Days || Subject)``), ``sigma``; a fixed effect keeps its name."""
    from .varcorr import profile_label

    re_names = lme4_re_names(result)
    if kind == "re_sd":
        return f"sd_{re_names[index[0]]}|{result.group_name}"
    if kind == "re_cor":
        i, j = index
        return f"cor_{re_names[i]}.{re_names[j]}|{result.group_name}"
    if kind == "vc_sd":
        return f"sd_{profile_label(result, index[0])}"
    if kind == "sigma":
        return "sigma"
    return name


def profile_plot(result, parameters: list[str] | None = None, alpha: float = 0.05,
                 zeta_max: float = 2.6):
    """lme4's ``xyplot(profile(fit))``: one panel per parameter (``parameters``, by
    the names of :meth:`~dlmm.results.MixedLMResults.profile_conf_int`; default
    all; panels titled with lme4's names, :func:`lme4_profile_name`), zeta
    against the parameter with the ``1 - alpha`` limits ``+- z``
    (where the panel's curve crosses them is the profile interval). Returns the
    Figure."""
    from .profile import ProfileLikelihood

    plt = pyplot()
    prof = ProfileLikelihood(result)
    every = prof.parameters()
    if parameters is not None:
        known = {name for name, _, _ in every}
        unknown = [p for p in parameters if p not in known]
        if unknown:
            raise InputError(f"no parameter named {unknown[0]!r} to profile (have "
                             f"{', '.join(n for n, _, _ in every)})")
        every = [p for p in every if p[0] in parameters]
    crit = sps.norm.ppf(1 - alpha / 2)
    fig, axes = plt.subplots(1, len(every), figsize=(3.2 * len(every), 3.4), squeeze=False)
    for ax, (name, kind, index) in zip(axes[0], every):
        pts = profile_points(prof, kind, index, zeta_max)
        ax.plot(pts[:, 0], pts[:, 1], "o-", markersize=3, color="tab:blue")
        for level in (-crit, crit):
            ax.axhline(level, color="grey", linewidth=0.7, linestyle="--")
        ax.axvline(prof.estimate(kind, index), color="grey", linewidth=0.7)
        title = lme4_profile_name(result, kind, index, name)
        ax.set_title(title)
        ax.set_xlabel(title)
    axes[0][0].set_ylabel("zeta")
    fig.tight_layout()
    return fig
