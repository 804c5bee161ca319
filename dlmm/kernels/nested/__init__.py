"""The nested engine's kernels: random effects on factors that nest in one another.

A design whose grouping factors each nest in the one before (``lea``, ``lea:school``,
...) gives, inside each outer group, a tree of random-effect blocks: a node's rows lie
inside its parent's. :mod:`.stats` holds the per-node cross-products the one pass
makes; the other modules turn them, at a parameter value, into the profiled
objective's pieces and into conditional modes, factoring each tree from its leaves up.
"""
