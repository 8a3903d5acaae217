"""Runs every `bench/bench_*.py` script in turn; each prints its own report."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import typer

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "bench"


def run_benchmarks() -> int:
    scripts = sorted(BENCH_DIR.glob("bench_*.py"))
    if not scripts:
        typer.echo(f"no benchmarks found under {BENCH_DIR}", err=True)
        return 1
    failed = 0
    for script in scripts:
        typer.echo(f"== {script.name}")
        # As a module from the root: `bench.common` and `tests.support` import without a path hack.
        run = subprocess.run([sys.executable, "-m", f"bench.{script.stem}"], cwd=ROOT, check=False)
        failed += run.returncode != 0
    return 1 if failed else 0
