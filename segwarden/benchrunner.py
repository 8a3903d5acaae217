"""Runs every `bench/bench_*.py` script in turn; each prints its own report."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import typer

BENCH_DIR = Path(__file__).resolve().parent.parent / "bench"


def run_benchmarks() -> int:
    scripts = sorted(BENCH_DIR.glob("bench_*.py"))
    if not scripts:
        typer.echo(f"no benchmarks found under {BENCH_DIR}", err=True)
        return 1
    failed = 0
    for script in scripts:
        typer.echo(f"== {script.name}")
        failed += subprocess.run([sys.executable, str(script)], check=False).returncode != 0
    return 1 if failed else 0
