"""Benchmarks that measure sse-batcher and print their figures; none of them is a test.

Each module is run from a checkout as ``python -m bench.<name>`` (its docstring says with which
options and for how long); most start their own embedded PostgreSQL and servers. The figures that
justify a design choice are kept in ``bench/RESULTS.md``, each with the command that produced it.
The package is not installed with sse-batcher: it backs the code's choices, it is not part of them.
"""
