"""Every crossed-kernel test runs three times: with the Schur pairs stored, streamed,
and with a dense ``G21`` in their place."""

from __future__ import annotations

import pytest

from dlmm.kernels.crossed import system


@pytest.fixture(autouse=True, params=["stored", "streamed", "dense"])
def pair_path(request, monkeypatch):
    """``build_system``'s default path: stored pairs, (limit -1) always streamed, or
    (ratio infinite) always a dense ``G21``; the first two never choose it."""
    if request.param == "dense":
        monkeypatch.setattr(system, "DENSE_G21_RATIO", float("inf"))
    else:
        monkeypatch.setattr(system, "DENSE_G21_RATIO", 0.0)
    if request.param == "streamed":
        monkeypatch.setattr(system, "STORED_PAIRS_MAX", -1)
    return request.param
