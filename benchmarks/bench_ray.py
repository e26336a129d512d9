"""A 20-trial search locally versus on a 2-node local Ray cluster (issue 13).

Prints JSON with, for the machine it runs on:

- wall time of the same 20-trial Optuna search (real EURUSD H1, logistic and
  hist-gradient-boosting, ``blas_threads = 1``) on the local executor (2 threads) and on a
  Ray cluster of two one-CPU nodes on 127.0.0.1 (``ray.cluster_utils.Cluster``), each in a
  fresh study;
- per-task overhead: the round trip of a no-op job through each executor (median of 30,
  one at a time), and the cluster's start and connect times;
- threads per worker: what a job sees inside a Ray worker (thread variables, the BLAS/OpenMP
  pools' sizes, OS threads of the worker process).

Usage: python benchmarks/bench_ray.py [--trials 20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # keep 127.0.0.1 (docs/scaling.md)
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")) if p
)

from benchmarks.common import SHARED_FX, machine

LOOKBACK = 3000
KINDS = ("logistic", "hist_gradient_boosting")
NOOP_ROUNDS = 30
NODE: dict[str, Any] = {
    "num_cpus": 1,
    "node_ip_address": "127.0.0.1",
    "object_store_memory": 100 * 1024 * 1024,
}


def _noop() -> int:
    return 0


def _overhead_ms(executor: Any) -> float:
    times = []
    for _ in range(NOOP_ROUNDS):
        t0 = time.perf_counter()
        executor.result(executor.submit(_noop))
        times.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(times), 2)


def _search(executor: Any, trials: int, study_dir: Path) -> dict[str, Any]:
    from forexd.feeds.loaders import load_candles
    from forexd.models.search import run_search
    from forexd.models.trainconfig import Candles, periods_per_year
    from forexd.strategies.ml_params import MlParams

    frame = load_candles(SHARED_FX / "lean_oanda" / "hour" / "eurusd.csv.gz", "oanda-lean")
    t0 = time.perf_counter()
    result = run_search(
        Candles.from_frame(frame), MlParams(lookback_candles=LOOKBACK), symbol="EURUSD",
        pip_size=0.0001, study_dir=study_dir, study_name="bench", trials=trials, kinds=KINDS,
        train_workers=2, blas_threads=1, bars_per_year=periods_per_year(3600),
        executor=executor,
    )  # fmt: skip
    return {
        "wall_s": round(time.perf_counter() - t0, 1),
        "trials": result.trials_this_run,
        "failed": result.failed_this_run,
        "best_sharpe": round(result.best_value, 3),
        "best_trades": result.best_trades,
        "backend": result.backend,
    }


def main() -> None:
    """Run both variants and print the figures as JSON."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="4 trials (make bench)")
    args = parser.parse_args()
    if args.quick:
        args.trials = 4
    from forexd.daemon.threads import ThreadLimiter
    from forexd.models.executor import LocalExecutor

    ThreadLimiter().apply(1)
    out: dict[str, Any] = {"machine": machine(), "trials": args.trials, "kinds": KINDS}
    with tempfile.TemporaryDirectory() as tmp:
        local = LocalExecutor(2, 1)
        out["local"] = _search(local, args.trials, Path(tmp) / "local")
        out["local"]["noop_round_trip_ms"] = _overhead_ms(local)
        local.close()

        import ray
        from ray.cluster_utils import Cluster

        from forexd.daemon.backend_ray import RayExecutor, probe_threads

        t0 = time.perf_counter()
        cluster = Cluster(initialize_head=True, head_node_args={**NODE, "include_dashboard": False})
        cluster.add_node(**NODE)
        started = time.perf_counter()
        executor = RayExecutor(cluster.address, blas_threads=1, local_cpus=1)
        connected = time.perf_counter()
        try:
            out["ray"] = _search(executor, args.trials, Path(tmp) / "ray")
            out["ray"]["noop_round_trip_ms"] = _overhead_ms(executor)
            out["ray"]["cluster_start_s"] = round(started - t0, 1)
            out["ray"]["connect_s"] = round(connected - started, 1)
            seen = executor.result(executor.submit(probe_threads))
            out["ray"]["worker_threads"] = {k: v for k, v in seen.items() if k != "node"}
        finally:
            executor.close()
            if ray.is_initialized():
                ray.shutdown()
            cluster.shutdown()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
