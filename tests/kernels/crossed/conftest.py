"""Every crossed-kernel test runs twice: with the Schur pairs stored and streamed."""

from __future__ import annotations

import pytest

from dlmm.kernels.crossed import system


@pytest.fixture(autouse=True, params=["stored", "streamed"])
def pair_path(request, monkeypatch):
    """``build_system``'s default path: stored pairs, or (limit -1) always streamed."""
    if request.param == "streamed":
        monkeypatch.setattr(system, "STORED_PAIRS_MAX", -1)
    return request.param
