"""`make bench` runs every benchmark through benchmarks/run_all.py in its quick mode."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from benchmarks import run_all

REPO = Path(__file__).resolve().parents[1]


def test_run_all_finds_every_benchmark_script() -> None:
    """Every benchmarks/bench_*.py is one of run_all's benchmarks."""
    scripts = sorted(p.stem for p in (REPO / "benchmarks").glob("bench_*.py"))
    assert len(scripts) >= 3
    assert scripts == run_all.benchmarks()


def test_every_benchmark_has_a_quick_mode() -> None:
    """Each benchmark's --help offers --quick, which run_all passes to it."""
    assert [] == [n for n in run_all.benchmarks() if not run_all.has_quick_mode(n)]


def test_run_all_refuses_an_unknown_benchmark_name() -> None:
    """--only with a name that is not a benchmark is a usage error naming the known ones."""
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "run_all.py"), "--only", "bench_nope"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert 2 == result.returncode
    assert "bench_nope" in result.stderr and "bench_daemon" in result.stderr


def test_the_makefile_bench_target_calls_run_all() -> None:
    """`make bench` is wired to the script that exists."""
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    recipe = makefile.split("\nbench:", 1)[1].split("\n\n", 1)[0]
    assert "benchmarks/run_all.py" in recipe
    assert (REPO / "benchmarks" / "run_all.py").is_file()
