"""A race in Dask's expression singletons, closed where dlmm runs a scheduler in process.

``dask._expr.SingletonExpr.__new__`` looks an expression up in a
``WeakValueDictionary`` in two steps: ``name in cls._instances`` and then
``cls._instances[name]``. With a scheduler in the client's process (the embedded
cluster, ``LocalCluster``) the scheduler's thread rebuilds a submitted expression
while the client's thread drops its own copies of the same expressions; when the
last copy dies between the two steps the lookup raises ``KeyError`` and the
scheduler refuses the whole graph ("Error during deserialization of the task
graph ... different environments"). It happened in about one fit in 2,000 on a busy
machine, in any step that submits a collection.

:func:`close_singleton_race` replaces the two steps by one ``get`` (the entry is
either alive and returned or absent), which is what the lookup means. It changes
nothing else: same cache, same instances, and it is applied once, only to a Dask
whose ``SingletonExpr.__new__`` is the two-step one it was written for.
"""

from __future__ import annotations

import inspect
import weakref

_CLOSED = "_dlmm_race_free"


def _two_step_lookup(new) -> bool:
    """Whether ``new`` is Dask's two-step lookup (the code this module replaces)."""
    try:
        source = inspect.getsource(new)
    except (OSError, TypeError):
        return False
    return "in cls._instances" in source and "return cls._instances[" in source


def close_singleton_race() -> bool:
    """Make ``SingletonExpr``'s cache lookup one step; True if Dask's was replaced.

    Idempotent; a Dask without ``dask._expr.SingletonExpr``, or whose lookup is
    already different, is left as it is.
    """
    try:
        from dask._expr import Expr, SingletonExpr
    except ImportError:
        return False
    current = SingletonExpr.__dict__.get("__new__")
    current = getattr(current, "__func__", current)
    if current is None or getattr(current, _CLOSED, False):
        return False
    if not _two_step_lookup(current):
        return False

    def __new__(cls, *args, _determ_token=None, **kwargs):
        if not hasattr(cls, "_instances"):
            cls._instances = weakref.WeakValueDictionary()
        inst = Expr.__new__(cls, *args, _determ_token=_determ_token, **kwargs)
        if cls.__init__ == object.__init__:
            alive = cls._instances.get(inst._name)
            if alive is not None:
                return alive
        cls._instances[inst._name] = inst
        return inst

    setattr(__new__, _CLOSED, True)
    SingletonExpr.__new__ = __new__
    return True
