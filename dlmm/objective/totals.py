"""Checks of the one pass's row totals before any fit: values, row counts, the response.

Each raises an :class:`~dlmm.InputError` whose one line names the column at
fault; all of them read only the small sums of the pass (``RowTotals``).
"""

from __future__ import annotations

import numpy as np

from ..exceptions import InputError
from ..kernels.pieces import RowTotals

#: How the missing-value error names the option (the CLI replaces it with its flag).
MISSING_DROP_HINT = 'missing="drop"'


def check_values(totals: RowTotals, labels: list[str], missing: str) -> None:
    """Infinite values are refused; missing values too unless ``missing="drop"``."""
    infinite = np.asarray(totals.infinite_by_column)
    if infinite.sum():
        worst = int(np.argmax(infinite))
        raise InputError(
            f"column {labels[worst]!r} has {int(infinite[worst])} infinite values; "
            "infinity is not a missing value: fix or remove those rows"
        )
    counts = np.asarray(totals.missing_by_column)
    if totals.n_dropped and missing in ("none", "raise"):
        worst = int(np.argmax(counts))
        detail = ", ".join(f"{labels[j]!r}: {int(counts[j])}" for j in np.flatnonzero(counts))
        raise InputError(
            f"column {labels[worst]!r} has {int(counts[worst])} missing values "
            f"(rows with missing values by column: {detail}); "
            f"pass {MISSING_DROP_HINT} to drop those rows"
        )


def check_weights(totals: RowTotals, residual) -> None:
    """Zero or negative precision weights are refused, in one line naming the column
    and the count (``residual``: the spec's :class:`~dlmm.spec.residual.ResidualModel`)."""
    bad = int(getattr(totals, "bad_weights", 0))
    if bad and residual is not None and residual.weighted:
        from ..spec.residual import weights_error

        raise weights_error(residual.display_name, bad)


def check_rows(totals: RowTotals, k_fe: int) -> None:
    """Some rows, and more rows than fixed effects."""
    if totals.n_rows == 0:
        if totals.n_dropped:
            raise InputError(
                f"no rows left after dropping {int(totals.n_dropped)} rows with missing values"
            )
        raise InputError("the data have no rows")
    if totals.n_rows <= k_fe:
        raise InputError(f"{int(totals.n_rows)} rows cannot fit {k_fe} fixed effects")


def check_response_varies(totals: RowTotals, response: str, centering) -> None:
    """The response must not be constant, nor an exact linear function of the fixed
    effects: then there is no residual variance (``qf = 0``) to estimate.

    With ``K = [X y]'[X y]`` of the centred, scaled pass (``centering``, a
    :class:`~dlmm.spec.centering.Centering`), the least-squares residual sum
    ``K_yy - K_yX K_XX^+ K_Xy`` is compared with the raw ``sum y^2`` in the same
    units (the centred one plus ``n (m_y / d_y)^2``): below 1e-24 of it the
    residual is rounding alone.
    """
    y_shift = centering.xy_shift[-1] / centering.y_scale
    xy = np.asarray(totals.xy_cross, dtype=float)
    p = xy.shape[0] - 1
    s_yy = xy[p, p]
    resid = s_yy - xy[p, :p] @ np.linalg.lstsq(xy[:p, :p], xy[:p, p], rcond=None)[0] \
        if p else s_yy
    raw = s_yy + totals.n_rows * float(y_shift) ** 2
    if not resid > 1e-24 * max(raw, np.finfo(float).tiny):
        raise InputError(
            f"response {response!r} is constant (or an exact linear function of the fixed "
            "effects) in the rows used: there is no residual variance to estimate"
        )
