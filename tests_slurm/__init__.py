"""Tests that need a running Slurm (``make test-slurm``); not part of ``make test``."""
