"""Whole-process figures of issue 15, each beside its peer, measured interleaved in one run.

Every command is a fresh process timed from outside (fork to exit, imports and file
reading included), round robin so that a change of load hits every command alike, best
of ``--repeat``; the 1-minute load average is recorded with every round. Figures:

* ``forexd backtest`` vs backtesting.py (``peer_backtesting.py``) on EURUSD M1 2017
  (371,635 bars) and on EURUSD H1 2016-2018 (OANDA via Lean), SMA(10, 20), no costs;
* ``forexd ctl status`` (no daemon running: exit 3 after the whole client path up to the
  socket) vs ``python -c pass``.

Usage: python benchmarks/bench_process.py [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import SHARED_FX, histdata_file, machine

HERE = Path(__file__).resolve().parent
PY = sys.executable
SMA = ["--param", "fast=10", "--param", "slow=20", "--spread-pips", "0"]
H1 = SHARED_FX / "lean_oanda" / "hour" / "eurusd.csv.gz"
H1_SPAN = ("2016-01-01", "2019-01-01")


def commands(tmp: str) -> dict[str, list[str]]:
    """name -> argv of every timed process."""
    m1 = str(histdata_file("EURUSD"))
    forexd = [PY, "-m", "forexd", "backtest"]
    return {
        "forexd_m1": [*forexd, "--data", m1, *SMA],
        "peer_m1": [PY, str(HERE / "peer_backtesting.py"), m1, "histdata"],
        "forexd_h1": [*forexd, "--data", str(H1), *SMA, "--start", H1_SPAN[0], "--end", H1_SPAN[1]],
        "peer_h1": [PY, str(HERE / "peer_backtesting.py"), str(H1), "oanda-lean", *H1_SPAN],
        "ctl_status": [PY, "-m", "forexd", "ctl", "status", "--data-dir", tmp],
        "python_pass": [PY, "-c", "pass"],
    }


def run_once(argv: list[str]) -> float:
    """Seconds from start to exit of one process (its output discarded)."""
    t0 = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    seconds = time.perf_counter() - t0
    if done.returncode not in (0, 3):  # ctl status exits 3: no daemon, as intended
        raise RuntimeError(f"{argv} failed: {done.stderr.decode()[-500:]}")
    return seconds


def main() -> None:
    """Time every command round robin and print the pairs as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one round (make bench)")
    args = parser.parse_args()
    if args.quick:
        args.repeat = 1
    with tempfile.TemporaryDirectory(prefix="fxp-", dir="/tmp") as tmp:
        cmds = commands(tmp)
        times: dict[str, list[float]] = {name: [] for name in cmds}
        loads = []
        for _ in range(args.repeat):
            loads.append(round(os.getloadavg()[0], 2))
            for name, argv in cmds.items():
                times[name].append(run_once(argv))
    best = {name: min(values) for name, values in times.items()}

    def pair(ours: str, peer: str, target: float) -> dict[str, Any]:
        ratio = best[peer] / best[ours]
        return {
            "forexd_s": round(best[ours], 3),
            "peer_s": round(best[peer], 3),
            "speedup": round(ratio, 2),
            "target": f">= {target}x",
            "met": ratio >= target,
        }

    extra_ms = (best["ctl_status"] - best["python_pass"]) * 1000
    report = {
        "machine": machine(),
        "load_average_1m_per_round": loads,
        "repeat": args.repeat,
        "backtest_m1_2017_whole_process": pair("forexd_m1", "peer_m1", 3.0),
        "backtest_h1_2016_2018_whole_process": pair("forexd_h1", "peer_h1", 3.0),
        "ctl_status_new_process": {
            "ctl_s": round(best["ctl_status"], 3),
            "python_pass_s": round(best["python_pass"], 3),
            "extra_ms": round(extra_ms, 1),
            "target": "< 150 ms more than python -c pass",
            "met": extra_ms < 150,
        },
        "all_times_s": {k: [round(v, 3) for v in vs] for k, vs in times.items()},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
