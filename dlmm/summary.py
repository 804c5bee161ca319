"""Text summary of a fit, in statsmodels' ``MixedLM`` layout."""

from __future__ import annotations

import numpy as np


def _fmt(x: float) -> str:
    if not np.isfinite(x):
        return ""
    return f"{x:.3f}" if abs(x) < 1e6 else f"{x:.4g}"


class Summary:
    """Model facts, fixed effects and variance parameters of a result."""

    def __init__(self, result):
        self.result = result

    def _facts(self) -> list[tuple[str, str]]:
        r = self.result
        return [
            ("Model:", "MixedLM"),
            ("Dependent Variable:", str(r.model.endog_names)),
            ("No. Observations:", str(r.nobs)),
            ("No. Groups:", str(r.n_groups)),
            ("Min. group size:", f"{r.group_size_min:.0f}"),
            ("Max. group size:", f"{r.group_size_max:.0f}"),
            ("Mean group size:", f"{r.group_size_mean:.1f}"),
            ("Method:", r.method),
            ("Scale:", f"{r.scale:.4f}"),
            ("Log-Likelihood:", f"{r.llf:.4f}"),
            ("Converged:", "Yes" if r.converged else "No"),
        ]

    def _rows(self) -> list[tuple[str, list[str]]]:
        r = self.result
        bse = getattr(r, "bse", None)
        rows = []
        for name, value in r.fe_params.items():
            se = bse[name] if bse is not None and name in bse.index else np.nan
            rows.append((name, [_fmt(value), _fmt(se)]))
        k = r.k_re
        for i in range(k):
            for j in range(i + 1):
                label = (f"{r.exog_re_names[i]} Var" if i == j
                         else f"{r.exog_re_names[j]} x {r.exog_re_names[i]} Cov")
                rows.append((label, [_fmt(r.cov_re.iloc[i, j]), ""]))
        for name, v in zip(r.vc_names, r.vcomp):
            rows.append((f"{name} Var", [_fmt(v), ""]))
        return rows

    def as_text(self) -> str:
        facts = self._facts()
        half = (len(facts) + 1) // 2
        left, right = facts[:half], facts[half:]
        lines = []
        for i in range(half):
            a = f"{left[i][0]:<20}{left[i][1]:>16}"
            b = f"{right[i][0]:<20}{right[i][1]:>16}" if i < len(right) else ""
            lines.append(f"{a}    {b}".rstrip())
        rows = self._rows()
        width = max([len(n) for n, _ in rows] + [10])
        head = f"{'':<{width}} {'Coef.':>12} {'Std.Err.':>10}"
        rule = "=" * max(len(head), max(len(s) for s in lines))
        title = "Mixed Linear Model Regression Results".center(len(rule)).rstrip()
        out = [title, rule, *lines, "-" * len(rule), head, "-" * len(rule)]
        for name, cells in rows:
            out.append(f"{name:<{width}} {cells[0]:>12} {cells[1]:>10}")
        out.append(rule)
        return "\n".join(out)

    def __str__(self) -> str:
        return self.as_text()

    def _repr_html_(self) -> str:
        import html

        return f"<pre>{html.escape(self.as_text())}</pre>"
