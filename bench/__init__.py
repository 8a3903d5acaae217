"""The benchmarks: `python -m bench.bench_<name>` from the repository root (`make bench` runs them all)."""
