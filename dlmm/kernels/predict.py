"""Per-row random-effect contributions for fitted values and predictions."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def random_part(
    z: np.ndarray,
    group_index: np.ndarray,
    re_values: np.ndarray,
    w: sp.csr_array | None = None,
    vc_keys: np.ndarray | None = None,
    vc_values: np.ndarray | None = None,
    n_slots: int = 1,
) -> np.ndarray:
    """``Z_r b_g + W_r v_g`` for each row r of group g; 0 for unseen groups.

    Parameters
    ----------
    z : ndarray (n, k_re)
        Standard random-effects design of the rows.
    group_index : ndarray of int (n,)
        Row of ``re_values`` of each row's group, -1 for a group not in the fit.
    re_values : ndarray (G, k_re)
        Predicted standard random effects of the fitted groups.
    w : sparse array (n, L), optional
        Variance-component design (global slots).
    vc_keys : ndarray of int (m,), sorted
        ``group_index * n_slots + slot`` of every predicted component effect.
    vc_values : ndarray (m,)
        The predicted component effects, matching ``vc_keys``.
    n_slots : int
        Number of global component columns ``L``.
    """
    n = z.shape[0]
    known = group_index >= 0
    out = np.zeros(n)
    if z.shape[1] and re_values.shape[0]:
        rows = np.flatnonzero(known)
        out[rows] = np.einsum("ra,ra->r", z[rows], re_values[group_index[rows]])
    if w is not None and vc_keys is not None and vc_keys.size:
        w = sp.csr_array(w)
        entry_row = np.repeat(np.arange(n), np.diff(w.indptr))
        use = known[entry_row]
        entry_row = entry_row[use]
        key = group_index[entry_row] * n_slots + w.indices[use]
        pos = np.searchsorted(vc_keys, key)
        pos = np.minimum(pos, vc_keys.size - 1)
        found = vc_keys[pos] == key
        contrib = np.where(found, w.data[use] * vc_values[pos], 0.0)
        out += np.bincount(entry_row, weights=contrib, minlength=n)
    return out
