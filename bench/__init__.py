"""Benchmarks: ``twinsync bench`` (``python -m bench.run``). Not part of the test suite."""

__all__: list[str] = []
