"""``dlmm bench``: dlmm beside statsmodels and lme4 on the same data, in one run.

``grouped``  nested designs of growing size (groups x rows per group).
``cases``    named data sets of one kind each, dlmm (pandas and Parquet) beside its peers.
``crossed``  crossed designs: InstEval and simulated users x items.
``nested``   nested designs: Chem97 and Chem97-shaped authorities x schools x pupils.
``io_limit`` one grouped fit beside the bare read of its columns (the floor), part by part.
``peers``    statsmodels and lme4 (through ``Rscript``), peers and never dependencies.
``report``   the table, the JSON document and the plot.
"""

from .grouped import run_bench
from .peers import lme4_available
from .report import format_table, plot, write_report

__all__ = ["format_table", "lme4_available", "plot", "run_bench", "write_report"]
