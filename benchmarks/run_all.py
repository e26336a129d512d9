"""Run every benchmark (``benchmarks/bench_*.py``) in its quick mode: ``make bench``.

Each benchmark runs as its own process (``python -m benchmarks.<name> --quick``, from the
repository root, so they cannot share threads, caches or a warm interpreter) and prints
JSON; this prints one JSON object with each one's exit code, wall time and result, and
exits 1 if any failed. A benchmark without a ``--quick`` flag is an error here rather than
a silent full run: every benchmark must offer a mode that finishes in minutes.

Usage: python benchmarks/run_all.py [--full] [--only NAME ...] [--list] [--timeout S]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
QUICK_FLAG = "--quick"


def benchmarks() -> list[str]:
    """Module names of every benchmark script, sorted."""
    return sorted(p.stem for p in HERE.glob("bench_*.py"))


def has_quick_mode(name: str) -> bool:
    """Whether the benchmark's command line offers ``--quick`` (asked with ``--help``)."""
    result = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{name}", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return result.returncode == 0 and QUICK_FLAG in result.stdout


def _parse(stdout: str) -> Any:
    """The benchmark's JSON output (from its first line starting with ``{``)."""
    lines = stdout.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("{")), None)
    if start is None:
        return None
    try:
        return json.loads("\n".join(lines[start:]))
    except ValueError:
        return None


def run_one(name: str, full: bool, timeout_s: float) -> dict[str, Any]:
    """Run one benchmark; its exit code, seconds, JSON result or the end of its stderr."""
    if not full and not has_quick_mode(name):
        return {"rc": 2, "error": f"benchmarks/{name}.py has no {QUICK_FLAG} mode; add one"}
    cmd = [sys.executable, "-m", f"benchmarks.{name}", *([] if full else [QUICK_FLAG])]
    print(f"run_all: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired:
        return {"rc": 124, "seconds": round(time.perf_counter() - t0, 1), "error": "timed out"}
    out: dict[str, Any] = {"rc": proc.returncode, "seconds": round(time.perf_counter() - t0, 1)}
    result = _parse(proc.stdout)
    if proc.returncode != 0 or result is None:
        out["error"] = (proc.stderr or proc.stdout)[-2000:] or "no JSON output"
        out["rc"] = proc.returncode or 1
    else:
        out["result"] = result
    return out


def main() -> int:
    """Run the benchmarks and print the combined JSON; non-zero if any failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="full runs instead of --quick")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="e.g. bench_daemon")
    parser.add_argument("--list", action="store_true", help="print the benchmark names")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per benchmark")
    args = parser.parse_args()
    names = benchmarks()
    if args.list:
        print("\n".join(names))
        return 0
    unknown = sorted(set(args.only or []) - set(names))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(names)}")
    selected = [n for n in names if not args.only or n in args.only]
    report = {name: run_one(name, args.full, args.timeout) for name in selected}
    print(json.dumps(report, indent=2))
    failed = [n for n, r in report.items() if r["rc"] != 0]
    if failed:
        print(f"run_all: failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
