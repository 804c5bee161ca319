"""Crossed random effects: NumPy/SciPy kernels of a blocked sparse engine (no Dask).

Model: ``y = X beta + sum_k Z_k b_k + e``, ``b_k ~ N(0, sigma^2 I_{l_k} (x) T_k T_k')``,
``V = I + Z Lambda Lambda' Z'``, ``C = Lambda'Z'Z Lambda + I = L L'``. MixedModels.jl's
method: the factor with most random effects first (its block of ``C`` is block
diagonal), the others' Schur complement dense (LAPACK) or, when it stays sparse
under a fill-reducing order, sparse (:mod:`.sparse`, chosen once per system).

``sums``      one pass over rows -> additive keyed sums (per level, per level pair).
``system``    reduced sums -> theta-independent layout of the blocked system (once);
              ``select_columns`` drops columns of ``[X y]``.
``streamed``  compiled loops over the Schur pairs when they are too many to store.
``sparse``    the Schur complement's fill-reducing order, symbolic pattern and sparse
              factor (``sparse_loops``: its compiled Cholesky, solves, selected inverse).
``factor``    theta -> blocked Cholesky factor, ``log|C|``, ``c'c``.
``slopes``    a dense part with several terms per level (streamed pairs): ``Lambda_2``
              applied to ``G22``'s block pairs and ``G21``'s entries, not the matrix.
``inverse``   selected entries of ``C^{-1}`` (Takahashi-style), for variances and gradient.
``modes``     conditional modes ``b_hat`` and their conditional covariance blocks.
``gradient``  ``d log|C| / d theta`` and ``d c'c / d theta``.
``evaluate``  the driver's one call: theta -> :class:`CrossedPieces`.
``single``    the dense Schur complement factored and inverted in float32, solves
              refined to float64 (an optimizer's coarse steps).
``tiles``     the dense part by tiles (intercepts; :mod:`dlmm.structure.crossed_tiled`):
              the system without it, its tiles from ``G21``'s row blocks, the
              gradient's trace terms and the variances' sums per tile.
``theta``     packing of theta (lower triangles of the ``T_k``); moment start values.
``warm``      loads the compiled loops before a timed fit (benchmarks).

Limits: the Schur complement of the factors after the first has order
``Q2 = sum_{k>=2} l_k t_k``; dense it costs ``~16 Q2^2`` bytes and ``Q2^3/3`` flops per
value, sparse (nested or seldom-meeting later factors) the flops of its factor's
columns, ``sum_j c_j^2``. The engine suits designs whose second and later factors
have up to ~10^4 random effects; the first factor may be arbitrarily large. The work
of the Schur update grows
with ``sum_l nnz_l^2`` (``nnz_l``: levels of the other factors seen with level ``l`` of
the first); up to ``STORED_PAIRS_MAX`` of these pairs are stored, beyond they are
walked each step (memory ``O(sum_l nnz_l)``).

Typical use::

    parts = [crossed_sums(codes, terms, x, y, n_levels) for each chunk]
    system = build_system(combine_sums(parts))
    pieces = crossed_pieces(system, theta, gradient=True)
    S = system.xy_cross - pieces.hmh       # then the profiled llf as for nested models
"""

from .counts import (
    factor_order,
    row_entry_count,
    schur_pair_count,
    streamed_work,
    streams_pairs,
    uses_dense_g21,
)
from .evaluate import CrossedPieces, crossed_pieces
from .factor import CrossedFactor, explicit_l21, factorize
from .gradient import CrossedGradient, gradient_pieces
from .inverse import SelectedInverse, selected_inverse
from .modes import conditional_modes, conditional_variances
from .single import SingleRefinementError, SingleSchurFactor, single_supported
from .sums import CrossedSums, PairSums, combine_sums, crossed_sums
from .system import CrossedCost, CrossedSystem, build_system, select_columns
from .theta import (
    moment_covariances,
    moment_theta,
    pack_theta,
    theta_from_covariances,
    theta_index,
    theta_lower_bounds,
    theta_sizes,
    unpack_theta,
)

__all__ = [
    "CrossedCost",
    "CrossedFactor",
    "CrossedGradient",
    "CrossedPieces",
    "CrossedSums",
    "CrossedSystem",
    "PairSums",
    "SelectedInverse",
    "SingleRefinementError",
    "SingleSchurFactor",
    "build_system",
    "combine_sums",
    "conditional_modes",
    "conditional_variances",
    "crossed_pieces",
    "crossed_sums",
    "explicit_l21",
    "factor_order",
    "factorize",
    "gradient_pieces",
    "moment_covariances",
    "moment_theta",
    "pack_theta",
    "row_entry_count",
    "schur_pair_count",
    "select_columns",
    "selected_inverse",
    "single_supported",
    "streamed_work",
    "streams_pairs",
    "uses_dense_g21",
    "theta_from_covariances",
    "theta_index",
    "theta_lower_bounds",
    "theta_sizes",
    "unpack_theta",
]
