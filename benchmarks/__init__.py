"""Throughput and scaling benchmarks (issue 6): `python -m benchmarks.run [--quick]`."""
