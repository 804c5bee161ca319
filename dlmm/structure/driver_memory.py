"""The driver's memory limit of a fit: what the engines may hold on the driver.

Users set it per fit (``MixedLM.fit(driver_memory=...)``, ``dlmm fit
--driver-memory``): a number of bytes, or a size such as ``"8GB"`` or ``"512MiB"``.
The one pass reads it while it runs (:func:`driver_limit`), so that it does not
travel through every engine's signature: the fit sets it around the pass
(:func:`driver_memory`). Without it, the engines' own default holds
(:data:`dlmm.structure.crossed.MAX_DRIVER_BYTES`, 8 GB).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from contextvars import ContextVar

from ..exceptions import InputError

_LIMIT: ContextVar[float | None] = ContextVar("dlmm_driver_memory", default=None)

_UNITS = {"": 1, "b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_memory(value: float | int | str, name: str = "driver_memory") -> float:
    """Bytes of ``value``: a positive number of bytes or a size (``"8GB"``, ``"512 MiB"``).

    Raises :class:`~dlmm.exceptions.InputError` naming ``name`` otherwise.
    """
    if isinstance(value, str):
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-zA-Z]*)\s*", value)
        unit = match.group(2).lower() if match else None
        if match is None or unit not in _UNITS:
            raise InputError(f"{name} must be a number of bytes or a size such as '8GB' or "
                             f"'512MiB', not {value!r}")
        out = float(match.group(1)) * _UNITS[unit]
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        out = float(value)
    else:
        raise InputError(f"{name} must be a number of bytes or a size such as '8GB', "
                         f"not {value!r}")
    if not out > 0 or out == float("inf"):
        raise InputError(f"{name} must be a positive size, not {value!r}")
    return out


@contextlib.contextmanager
def driver_memory(limit: float | int | str | None) -> Iterator[None]:
    """Within the block, the driver's limit is ``limit`` (None: the default)."""
    token = _LIMIT.set(None if limit is None else parse_memory(limit))
    try:
        yield
    finally:
        _LIMIT.reset(token)


def driver_limit(default: float) -> float:
    """The limit set around the running pass, else ``default`` (bytes)."""
    value = _LIMIT.get()
    return default if value is None else value


def user_limit() -> float | None:
    """The limit the user set around the running pass, or None."""
    return _LIMIT.get()
