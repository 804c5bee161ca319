"""Profile zeta plots, lme4's ``xyplot(profile(fit))`` (matplotlib, the ``plot`` extra).

One panel per profiled parameter: the signed square root of the ML profile
deviance ``zeta = sign(v - v_hat) sqrt(2 (llf_hat - llf_profile(v)))`` against
the parameter ``v``, from :class:`dlmm.results.profile.ProfileLikelihood` (a
straight line means the Wald interval is the profile one); dashed lines at
``+- z`` of the ``1 - alpha`` level (where the curve crosses them are the ends
of the profile interval) and the ML estimate as a vertical line.

Layout and labels follow lme4 (lattice):

* the panels form a grid (:func:`dlmm.results.plotting.grid_shape`:
  ``ceil(sqrt(n))`` columns, as many rows as needed; read row by row from the
  top left, where lattice starts at the bottom left), the zeta axis (``ζ``)
  shared, each parameter's axis free;
* each panel is titled with lme4's strip: ``σ1``, ``σ2``, ... for the covariance
  parameters in lme4's order (``.sig01``, ``.sig02``, ...: per random-effects
  term the standard deviations and correlations of the lower triangle row by
  row, then the variance components), ``σ`` for the residual standard
  deviation (``.sigma``), a fixed effect's lme4 name (``(Intercept)``,
  ``Days``);
* as ``σ2`` alone does not say which parameter it is, each panel's parameter
  axis says it in the words of lme4's ``signames = FALSE`` names:
  ``sd (Intercept) | Subject``, ``cor (Intercept), Days | Subject``,
  ``residual sd``, ``fixed effect``.

The numbering always counts every covariance parameter of the fit, so a panel
keeps its lme4 name when only some ``parameters`` are drawn.
"""

from __future__ import annotations

import numpy as np

from ..exceptions import InputError
from .distributions import normal_quantile
from .plotting import grid_shape, new_figure
from .varcorr import FIXED_INTERCEPTS, INTERCEPT, component_label, lme4_re_names

#: inches per panel (width, height) of the profile grid
PANEL_SIZE = (2.9, 2.6)

_BOUNDS = {"re_sd": (0.0, np.inf), "vc_sd": (0.0, np.inf), "sigma": (0.0, np.inf),
           "re_cor": (-1.0, 1.0), "fe": (-np.inf, np.inf)}


def profile_points(prof, kind: str, index: tuple, zeta_max: float = 2.6,
                   max_steps: int = 12) -> np.ndarray:
    """``(value, zeta)`` along one parameter's profile, walked out from the ML
    estimate on both sides until ``|zeta| >= zeta_max`` (or a bound)."""
    est = prof.estimate(kind, index)
    bounds = _BOUNDS[kind]
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


def profile_labels(result, parameters: list[tuple[str, str, tuple]]) -> list[tuple[str, str]]:
    """(strip, axis label) of each of ``parameters`` (all of
    :meth:`ProfileLikelihood.parameters`, in its order; see the module
    docstring): ``($\\sigma_{1}$, "sd (Intercept) | Subject")``,
    ``($\\sigma$, "residual sd")``, ``("(Intercept)", "fixed effect")``."""
    re_names = lme4_re_names(result)
    out, number = [], 0
    for name, kind, index in parameters:
        if kind in ("re_sd", "re_cor", "vc_sd"):
            number += 1
            strip = rf"$\sigma_{{{number}}}$"
            if kind == "re_sd":
                axis = f"sd {re_names[index[0]]} | {result.group_name}"
            elif kind == "re_cor":
                i, j = index
                axis = f"cor {re_names[j]}, {re_names[i]} | {result.group_name}"
            else:
                group, effect = component_label(result, index[0])
                axis = f"sd {effect or INTERCEPT} | {group}"
        elif kind == "sigma":
            strip, axis = r"$\sigma$", "residual sd"
        else:
            strip, axis = (INTERCEPT if name in FIXED_INTERCEPTS else name), "fixed effect"
        out.append((strip, axis))
    return out


def profile_plot(result, parameters: list[str] | None = None, alpha: float = 0.05,
                 zeta_max: float = 2.6):
    """lme4's ``xyplot(profile(fit))`` (see the module docstring).

    Parameters
    ----------
    parameters : list of str, optional
        The parameters to draw, by the names of
        :meth:`~dlmm.results.MixedLMResults.profile_conf_int` (``"Subject SD"``,
        ``"Residual SD"``, ``"Days"``, ...); default all, in lme4's order.
    alpha : float
        The dashed lines are at ``+- z_{1 - alpha/2}``: the curve crosses them at
        the ends of the ``1 - alpha`` profile interval.
    zeta_max : float
        Each profile is walked out until ``|zeta|`` reaches this.

    Returns
    -------
    matplotlib.figure.Figure
        One panel per parameter in ``fig.axes`` (grid order), titled with lme4's
        strip, the parameter axis labelled with what it is.
    """
    from .profile import ProfileLikelihood

    prof = ProfileLikelihood(result)
    every = prof.parameters()
    labels = dict(zip((name for name, _, _ in every), profile_labels(result, every)))
    if parameters is not None:
        unknown = [p for p in parameters if p not in labels]
        if unknown:
            raise InputError(f"no parameter named {unknown[0]!r} to profile (have "
                             f"{', '.join(labels)})")
        every = [p for p in every if p[0] in parameters]
    crit = normal_quantile(1 - alpha / 2)
    rows, columns = grid_shape(len(every))
    width, height = PANEL_SIZE
    fig, axes = new_figure(rows, columns, figsize=(width * columns + 0.3, height * rows + 0.5),
                           sharey=True)
    flat = axes.ravel()
    for ax, (name, kind, index) in zip(flat, every):
        pts = profile_points(prof, kind, index, zeta_max)
        ax.plot(pts[:, 0], pts[:, 1], "o-", markersize=3, color="tab:blue")
        for level in (-crit, crit):
            ax.axhline(level, color="grey", linewidth=0.7, linestyle="--")
        ax.axvline(prof.estimate(kind, index), color="grey", linewidth=0.7)
        strip, axis = labels[name]
        ax.set_title(strip)
        ax.set_xlabel(axis)
    for ax in flat[len(every):]:
        ax.remove()
    for ax in axes[:, 0]:
        ax.set_ylabel(r"$\zeta$")
    fig.suptitle(f"ML profiles, {100 * (1 - alpha):g}% limits at $\\zeta = \\pm${crit:.3g}",
                 fontsize=9)
    return fig
