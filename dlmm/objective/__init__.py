"""Driver math on reduced sums: parameterizations, profiled llf and gradient."""

from .params import MixedLMParams, packed_names
from .profiled import ProfiledValue, grad_profile, grad_sqrt, profiled_value

__all__ = [
    "MixedLMParams",
    "ProfiledValue",
    "grad_profile",
    "grad_sqrt",
    "packed_names",
    "profiled_value",
]
