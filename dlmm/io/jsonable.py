"""JSON encoding of results: NumPy and pandas values as plain JSON, and a versions report."""

from __future__ import annotations

import math
import platform
from collections.abc import Mapping
from typing import Any

import numpy as np


def jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON values: numpy and pandas to lists/numbers, NaN to None.

    Parameters
    ----------
    obj : Any
        Nested dicts, lists, tuples, numpy arrays and scalars, pandas Series or
        DataFrames, dataclasses; anything else becomes its ``str``.

    Returns
    -------
    Any
        Something ``json.dumps(..., allow_nan=False)`` accepts.
    """
    import pandas as pd

    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, (int, np.integer)) and not isinstance(obj, np.bool_):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, pd.Series):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, pd.DataFrame):
        return {"names": [str(c) for c in obj.columns], "index": [str(i) for i in obj.index],
                "matrix": jsonable(obj.to_numpy())}
    if isinstance(obj, np.ndarray):
        return [jsonable(v) for v in obj.tolist()] if obj.ndim else jsonable(obj.item())
    if isinstance(obj, (list, tuple, set)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "__dataclass_fields__"):
        return {k: jsonable(getattr(obj, k)) for k in obj.__dataclass_fields__}
    return str(obj)


def versions() -> dict[str, str]:
    """Versions of dlmm, its main dependencies, Python and the platform."""
    from importlib import metadata

    from .. import __version__

    out = {"dlmm": __version__}
    for dist in ("dask", "distributed", "numpy", "scipy", "pandas", "pyarrow", "formulaic"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    out["python"] = platform.python_version()
    out["platform"] = platform.platform()
    return out


