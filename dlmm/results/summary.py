"""Summary of a fit in statsmodels' ``MixedLM`` layout (text and HTML), with lme4's blocks.

Model facts in two columns; then one table: fixed effects with standard
error, z, p-value and Wald interval; then the variance parameters on the data
scale with statsmodels' standard errors (``sqrt(scale)`` times those of the
profile parameters); then lme4's VarCorr (and, on request, lmerTest's
Satterthwaite table: :mod:`dlmm.results.lme4_summary`).

When statsmodels is installed, ``summary()`` is a
``statsmodels.iolib.summary2.Summary`` (a subclass made on first use, so that
importing dlmm does not import statsmodels): its two ``tables`` are the ones
statsmodels' ``MixedLMResults.summary`` adds, rendered by statsmodels, and the
lme4 blocks follow them in the text and HTML. Without statsmodels the same
tables, ``title``, ``as_text``, ``as_html`` and ``as_latex`` come from
:class:`Summary`, dlmm's own rendering of that layout.
"""

from __future__ import annotations

import html
import importlib.util

import numpy as np
import pandas as pd

from ..exceptions import InputError
from .distributions import normal_quantile, normal_sf
from .lme4_summary import lme4_html, lme4_text

_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#",
                  "$": r"\$", "{": r"\{", "}": r"\}", "|": r"$|$", "~": r"\textasciitilde{}",
                  "^": r"\textasciicircum{}"}


def _num(x: float) -> str:
    if x is None or not np.isfinite(x):
        return ""
    return f"{x:.3f}"


class SummaryContent:
    """What a summary says, whoever renders it: the model facts, the coefficient table
    (formatted strings, statsmodels' columns) and the title."""

    def _setup(self, result, alpha: float = 0.05, yname: str | None = None,
               xname_fe: list[str] | None = None, xname_re: list[str] | None = None,
               title: str | None = None, ddf: str | None = None) -> None:
        self.result = result
        self.alpha = alpha
        self.yname = yname
        self.ddf = ddf
        names = list(result.param_names)
        k = result.k_fe
        for given, lo, hi, what in ((xname_fe, 0, k, "xname_fe"),
                                    (xname_re, k, len(names), "xname_re")):
            if given is not None:
                if len(given) != hi - lo:
                    raise InputError(f"{what} has {len(given)} names; expected {hi - lo}")
                names[lo:hi] = [str(n) for n in given]
        self.names = names
        self.title = title or "Mixed Linear Model Regression Results"

    def facts(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """The two columns of model facts (label, value)."""
        r = self.result
        left = [
            ("Model:", "MixedLM"),
            ("No. Observations:", str(r.nobs)),
            ("No. Groups:", str(r.n_groups)),
            ("Min. group size:", f"{r.group_size_min:.0f}"),
            ("Max. group size:", f"{r.group_size_max:.0f}"),
            ("Mean group size:", f"{r.group_size_mean:.1f}"),
        ]
        right = [
            ("Dependent Variable:", str(self.yname or r.endog_name)),
            ("Method:", r.method),
            ("Scale:", f"{r.scale:.4f}"),
            ("Log-Likelihood:", f"{r.llf:.4f}"),
            ("Converged:", "Yes" if r.converged else "No"),
        ]
        if getattr(r, "n_dropped", 0):
            right.append(("Rows dropped (NaN):", str(r.n_dropped)))
        if getattr(r, "weights", None):  # residual variance scale / w (dlmm.spec.residual)
            right.append(("Precision weights:", str(r.weights)))
        res = getattr(r, "residual", None)  # dlmm.results.residual_estimates
        if res is not None and res.column is not None:  # nlme's varIdent
            right.append(("Residual by:", str(res.column)))
            right += [(f"  Scale {level}:", f"{v:.4f}")
                      for level, v in zip(res.levels, res.variances)]
        if res is not None and res.time_column is not None:  # nlme's corAR1
            right.append((f"AR(1) in {res.time_column}:", f"{res.rho:.4f} ({res.rho_se:.4f})"))
        if len(right) > len(left):
            left.append(("", ""))
        return left, right

    def table(self) -> pd.DataFrame:
        """Coefficient table as formatted strings (statsmodels' columns)."""
        r = self.result
        a = self.alpha
        lo_name, hi_name = f"[{a / 2:g}", f"{1 - a / 2:g}]"
        bse = np.asarray(r.bse, dtype=float)
        k = r.k_fe
        coef = np.concatenate([
            np.asarray(r.fe_params, dtype=float),
            np.asarray(r.cov_re, dtype=float)[np.tril_indices(r.k_re)],
            np.asarray(r.vcomp, dtype=float),
        ])
        se = np.concatenate([bse[:k], np.sqrt(r.scale) * bse[k:]])
        z = np.full(coef.shape, np.nan)
        p = np.full(coef.shape, np.nan)
        lo = np.full(coef.shape, np.nan)
        hi = np.full(coef.shape, np.nan)
        with np.errstate(divide="ignore", invalid="ignore"):
            z[:k] = coef[:k] / se[:k]
        p[:k] = 2 * normal_sf(np.abs(z[:k]))
        crit = normal_quantile(1 - a / 2)
        lo[:k] = coef[:k] - crit * se[:k]
        hi[:k] = coef[:k] + crit * se[:k]
        frame = pd.DataFrame(
            {"Coef.": coef, "Std.Err.": se, "z": z, "P>|z|": p, lo_name: lo, hi_name: hi},
            index=self.names,
        )
        return frame.apply(lambda col: [_num(v) for v in col])

    def info(self) -> dict[str, str]:
        """The facts as statsmodels' ``add_dict`` takes them: the left column's, then
        the right's (never longer), which its split into two halves gives back."""
        left, right = self.facts()
        return dict(left + right)


class Summary(SummaryContent):
    """Text and HTML summary of a :class:`~dlmm.results.MixedLMResults`, rendered by dlmm
    (the one :func:`make_summary` returns when statsmodels is not installed).

    As statsmodels' ``Summary``: ``tables`` (the model facts in four columns: label,
    value, label, value; the coefficient table), ``title``, ``extra_txt``,
    ``as_text()``, ``as_html()``, ``as_latex()``.
    """

    def __init__(self, result, alpha: float = 0.05, yname: str | None = None,
                 xname_fe: list[str] | None = None, xname_re: list[str] | None = None,
                 title: str | None = None, ddf: str | None = None):
        self._setup(result, alpha, yname, xname_fe, xname_re, title, ddf)
        left, right = self.facts()
        n = max(len(left), len(right))
        pad = [("", "")] * n
        rows = [(*(left + pad)[i], *(right + pad)[i]) for i in range(n)]
        self.tables = [pd.DataFrame(rows), self.table()]
        self.settings = [{"index": False, "header": False, "align": "l"},
                         {"index": True, "header": True, "align": "r"}]
        self.extra_txt: list[str] = []

    def as_text(self) -> str:
        left, right = self.facts()
        lw = max(len(a) + len(b) for a, b in left) + 2
        rw = max(len(a) + len(b) for a, b in right) + 2
        lines = []
        for i in range(max(len(left), len(right))):
            a = f"{left[i][0]} {left[i][1]:>{lw - len(left[i][0]) - 1}}" if i < len(left) else ""
            b = f"{right[i][0]} {right[i][1]:>{rw - len(right[i][0]) - 1}}" if i < len(right) \
                else ""
            lines.append(f"{a:<{lw}}   {b}".rstrip())
        table = self.tables[1]
        name_w = max(len(n) for n in table.index)
        widths = [max(len(c), *(len(v) for v in table[c])) for c in table.columns]
        head = " " * name_w + "".join(f" {c:>{w}}" for c, w in zip(table.columns, widths))
        body = [f"{name:<{name_w}}" + "".join(f" {v:>{w}}" for v, w in zip(row, widths))
                for name, row in zip(table.index, table.to_numpy())]
        width = max(len(head), *(len(s) for s in lines))
        title = self.title.center(width).rstrip()
        return "\n".join([title, "=" * width, *lines, "-" * width, head, "-" * width, *body,
                          "=" * width]) + lme4_text(self)

    def as_html(self) -> str:
        """The summary as an HTML fragment (the notebook's rendering)."""
        return self._repr_html_()

    def as_latex(self) -> str:
        """The summary as LaTeX: the facts and the coefficient table, one ``tabular``
        each, in a ``table`` environment."""
        facts, coef = self.tables

        def tex(text) -> str:
            return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in str(text))

        lines = [r"\begin{table}", r"\caption{" + tex(self.title) + "}",
                 r"\begin{center}", r"\begin{tabular}{llll}", r"\hline"]
        lines += [" & ".join(tex(v) for v in row) + r" \\" for row in facts.to_numpy()]
        lines += [r"\hline", r"\end{tabular}", r"\begin{tabular}{l" + "r" * coef.shape[1]
                  + "}", r"\hline", " & " + " & ".join(tex(c) for c in coef.columns)
                  + r" \\", r"\hline"]
        lines += [tex(name) + " & " + " & ".join(tex(v) for v in row) + r" \\"
                  for name, row in zip(coef.index, coef.to_numpy())]
        lines += [r"\hline", r"\end{tabular}", r"\end{center}", r"\end{table}"]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.as_text()

    def __repr__(self) -> str:
        return self.as_text()

    def _repr_html_(self) -> str:
        left, right = self.facts()
        rows = []
        for i in range(max(len(left), len(right))):
            cells = []
            for col in (left, right):
                label, value = col[i] if i < len(col) else ("", "")
                cells.append(f"<th>{html.escape(label)}</th><td>{html.escape(value)}</td>")
            rows.append("<tr>" + "".join(cells) + "</tr>")
        facts = "<table class='dlmm-facts'>" + "".join(rows) + "</table>"
        return (f"<div class='dlmm-summary'><h4>{html.escape(self.title)}</h4>"
                f"{facts}{self.tables[1].to_html()}{lme4_html(self)}</div>")


class StatsmodelsRendered(SummaryContent):
    """The summary as a ``statsmodels.iolib.summary2.Summary`` (a mixin: the class
    :func:`summary_class` makes puts statsmodels' class after it): statsmodels' two
    tables and rendering, then lme4's blocks in the text and HTML."""

    def __init__(self, result, alpha: float = 0.05, yname: str | None = None,
                 xname_fe: list[str] | None = None, xname_re: list[str] | None = None,
                 title: str | None = None, ddf: str | None = None):
        super().__init__()  # statsmodels' empty summary
        self._setup(result, alpha, yname, xname_fe, xname_re, title, ddf)
        self.add_dict(self.info())
        self.add_title(self.title)
        self.add_df(self.table(), align="r")

    def as_text(self) -> str:
        return super().as_text().rstrip("\n") + lme4_text(self)

    def as_html(self) -> str:
        return super().as_html() + lme4_html(self)

    def __repr__(self) -> str:
        return self.as_text()


_MADE: dict[str, type] = {}


def summary_class() -> type:
    """The class of ``summary()``: a subclass of statsmodels' ``summary2.Summary`` when
    statsmodels can be imported (made on first call), else :class:`Summary`."""
    cls = _MADE.get("Summary")
    if cls is None:
        cls = Summary
        if importlib.util.find_spec("statsmodels") is not None:
            try:
                from statsmodels.iolib.summary2 import Summary as base
            except Exception:  # a broken statsmodels installation is not our failure
                base = None
            if base is not None:
                cls = type("Summary", (StatsmodelsRendered, base),
                           {"__doc__": StatsmodelsRendered.__doc__, "__module__": __name__})
        _MADE["Summary"] = cls
    return cls


def make_summary(result, alpha: float = 0.05, yname: str | None = None,
                 xname_fe: list[str] | None = None, xname_re: list[str] | None = None,
                 title: str | None = None, ddf: str | None = None):
    """``result.summary(...)``: an instance of :func:`summary_class`."""
    return summary_class()(result, alpha=alpha, yname=yname, xname_fe=xname_fe,
                           xname_re=xname_re, title=title, ddf=ddf)
