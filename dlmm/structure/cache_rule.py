"""When the statistics cache pays: the rule a cached run decides on, from measurements.

A cached refit (:mod:`dlmm.structure.cached`) replaces reading the rows of
the unchanged files by loading their sums, one row of sums a group, then
merges every group by key and writes the merged sums again. Reading a row
and handling a group's sums cost about the same, so the cache saves time in
proportion to the rows per group: with one or two rows a group it costs as
much as it saves. The rule: use the cache from :data:`MIN_ROWS_PER_GROUP`
rows per group (all rows read over all groups, at the last run), else make
a plain pass over every file.

The measurements behind it (2 cores, 2 worker processes of 1 thread, a
scheduler already running, other work on the machine; 20 files in the cache
and 2 new, about 2e6 rows; the data pass of the refit against a full pass,
best and median of 3 to 5 runs, ``dlmm simulate ... --partitions 22``):

====================  ==========  ==================
rows per group        groups      cached / full pass
====================  ==========  ==================
2 (``~1``)            1.0e6       0.97 to 1.19
3 (``~1``)            6.7e5       0.62 to 0.73
3 (``~x1``)           6.0e5       0.80 to 0.87
4 (``~x1``)           5.0e5       0.74 to 0.79
10 (``~x1``)          2.0e4-4e5   0.38 to 0.59
100, 1,000 (``~x1``)  2e4, 2e3    0.25 to 0.32
====================  ==========  ==================

A refit that reads most of its files anew (the cache far behind: 2 cached
files and 20 new) costs more than a full pass (1.6 times): that run fills the
cache, as the first one does, and the next ones gain.
"""

from __future__ import annotations

from typing import Any

#: Rows per group (rows read over groups, at the last run) below which a full pass is
#: as fast as a cached one or faster (see the table above).
MIN_ROWS_PER_GROUP = 2.5


def cache_pays(shape: dict[str, Any] | None) -> tuple[bool, str]:
    """Whether a cached pass is expected to be faster than a full pass, and why.

    Parameters
    ----------
    shape : dict or None
        ``rows`` (read, dropped ones included) and ``groups`` of the whole data at
        the last run (a manifest's ``shape``); None: no run yet (the cache is filled).

    Returns
    -------
    (bool, str)
        True when there are at least :data:`MIN_ROWS_PER_GROUP` rows per group (or
        no shape yet), and a sentence for the log.
    """
    if not shape or not shape.get("groups"):
        return True, "no previous run to decide on: filling the cache"
    per_group = shape["rows"] / shape["groups"]
    text = (f"{per_group:.3g} rows per group at the last run ({shape['rows']} rows, "
            f"{shape['groups']} groups)")
    if per_group < MIN_ROWS_PER_GROUP:
        return False, (f"{text}, fewer than {MIN_ROWS_PER_GROUP:g}: loading and merging "
                       "the cached sums would cost as much as reading the rows; a full "
                       "pass over every file instead")
    return True, f"{text}, at least {MIN_ROWS_PER_GROUP:g}"
