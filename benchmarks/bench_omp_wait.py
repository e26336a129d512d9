"""Does ``OMP_WAIT_POLICY=PASSIVE`` help the event loop while a model trains? (issue 15)

A main thread measures the lag of a 1 ms timer (as ``daemon/looplag.py`` does for the
loop) while a worker thread fits scikit-learn's histogram gradient boosting (OpenMP, 2
threads) in a loop, with 50 ms of Python work between fits — when idle OpenMP workers
spin by default. Each policy runs in a fresh process (the OpenMP runtime reads the
variable when it loads), interleaved, ``--rounds`` times; the load average is recorded.

Usage: python benchmarks/bench_omp_wait.py [--rounds N] [--seconds S]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time

CHILD = "--child"


def child(seconds: float) -> None:
    """Train in a thread, sample timer lag here, print the figures as JSON."""
    import numpy as np
    from sklearn.ensemble import HistGradientBoostingClassifier

    stop = threading.Event()

    def train() -> None:
        rng = np.random.default_rng(0)
        x = rng.normal(size=(20_000, 20))
        y = (x[:, 0] + rng.normal(size=20_000) > 0).astype(int)
        while not stop.is_set():
            HistGradientBoostingClassifier(max_iter=30).fit(x, y)
            until = time.perf_counter() + 0.05
            while time.perf_counter() < until:  # features, I/O: Python between fits
                sum(range(1000))

    worker = threading.Thread(target=train, daemon=True)
    worker.start()
    time.sleep(1.0)  # a timer of the benchmark itself: let the first fit start
    lags: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        time.sleep(0.001)
        lags.append((time.perf_counter() - t0 - 0.001) * 1000)
    stop.set()
    lags.sort()
    print(
        json.dumps(
            {
                "mean_ms": round(sum(lags) / len(lags), 3),
                "p50_ms": round(lags[len(lags) // 2], 3),
                "p99_ms": round(lags[int(len(lags) * 0.99)], 3),
                "max_ms": round(lags[-1], 3),
                "timer_wakeups": len(lags),
            }
        )
    )


def main() -> None:
    """Run both policies interleaved and print every round."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument(CHILD, action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="one short round (make bench)")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.seconds = 1, 2.0
    if args.child:
        child(args.seconds)
        return
    rounds = []
    for _ in range(args.rounds):
        row: dict[str, object] = {"load_1m": round(os.getloadavg()[0], 2)}
        for policy in ("default", "PASSIVE"):
            env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
            env["OMP_NUM_THREADS"] = "2"
            if policy != "default":
                env["OMP_WAIT_POLICY"] = policy
            done = subprocess.run(
                [sys.executable, __file__, CHILD, "--seconds", str(args.seconds)],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            row[policy] = json.loads(done.stdout.strip().splitlines()[-1])
        rounds.append(row)
    print(json.dumps({"rounds": rounds}, indent=2))


if __name__ == "__main__":
    main()
