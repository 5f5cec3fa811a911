"""Tools for tests, benchmarks and the demo: private service processes on loopback.

Nothing here is used on the send path.
"""
