"""Throughput, scaling and memory benchmarks, judged against issue 14's goals: `python -m benchmarks.run [--quick]`."""
