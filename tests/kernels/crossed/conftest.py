"""Every crossed-kernel test runs twice: with the Schur pairs stored and streamed; the
modules that check the values (factor, gradient, modes) also run with a dense ``G21``
in their place (``helpers.ALL_PATHS``, their own ``pair_path``)."""

from __future__ import annotations

import pytest

from .helpers import set_pair_path


@pytest.fixture(autouse=True, params=["stored", "streamed"])
def pair_path(request, monkeypatch):
    """Stored or streamed pairs (see :func:`set_pair_path`)."""
    return set_pair_path(request.param, monkeypatch)
