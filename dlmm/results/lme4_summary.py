"""lme4's blocks in a summary: the VarCorr table and, on request, lmerTest's
Satterthwaite table (``summary(ddf="Satterthwaite")``), as text and HTML.

:class:`dlmm.results.summary.Summary` appends :func:`lme4_text` and
:func:`lme4_html`; ``summary.ddf`` says whether the Satterthwaite table is asked for.
"""

from __future__ import annotations

import html

from .varcorr import varcorr, varcorr_text


def _satterthwaite(summary):
    if getattr(summary, "ddf", None) != "Satterthwaite":
        return None
    from .satterthwaite import satterthwaite_table

    return satterthwaite_table(summary.result)


def lme4_text(summary) -> str:
    """The blocks as text, each after a blank line."""
    blocks = [varcorr_text(summary.result)]
    table = _satterthwaite(summary)
    if table is not None:
        blocks.append("Fixed effects (Satterthwaite's degrees of freedom, lmerTest):\n"
                      + table.to_string(float_format=lambda v: f"{v:.6g}"))
    return "".join("\n\n" + b for b in blocks)


def lme4_html(summary) -> str:
    """The blocks as HTML tables."""
    frame = varcorr(summary.result)
    out = ["<h5>Random effects (lme4's VarCorr)</h5>",
           frame.to_html(index=False, na_rep="", float_format=lambda v: f"{v:.4g}")]
    table = _satterthwaite(summary)
    if table is not None:
        out += [f"<h5>{html.escape('Fixed effects (Satterthwaite df, lmerTest)')}</h5>",
                table.to_html(float_format=lambda v: f"{v:.6g}")]
    return "".join(out)
