"""Run one of benchmarks/*.py as a process, the way its docs say, for the e2e smoke tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).parent.parent / "benchmarks"


def run_benchmark(script: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python benchmarks/<script> <args>`, its output captured as text."""
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args], capture_output=True, text=True, timeout=timeout
    )
