"""statsmodels' own MixedLM test file run against dlmm (issue 25).

``plugin.py`` is a pytest plugin that puts dlmm's ``MixedLM``, ``MixedLMParams``
and ``mixedlm`` where statsmodels' test file imports them from; the
allow-list ``allowed_failures.txt`` names the tests that may fail and why.
``tests/test_statsmodels_suite.py`` runs it (in a subprocess, so that the
substitution never reaches the rest of the suite).
"""
