"""Reference implementations of every algorithm of the course, one module per problem set.

The instructor notebooks' solution regions are checked against these modules
(`make check-source`); the unit tests in `tests/solutions/` check these modules
against independent oracles.
"""
