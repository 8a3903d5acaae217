"""The `segwarden` command line: run the stack, one service, the demo, audits and benchmarks."""
