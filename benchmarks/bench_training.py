"""Training benchmarks (issue 3: models that retrain themselves while the daemon trades).

Prints JSON with, for the machine it runs on:

(a) event-loop lag p50/p99/max (``LoopLagMonitor``, 10 ms ticks) while training jobs
    saturate the compute budget through ``ComputePool`` in a running anyio loop, versus the
    same jobs run inline on the loop; targets for the pool: p99 < 5 ms, max < 50 ms. Also
    with ``sys.setswitchinterval(0.001)`` (the GIL hand-over period; default 5 ms), since
    a busy Python thread can hold the GIL that long before the loop gets it back.
(b) throughput of a batch of training jobs: the budgeted pool (``train_workers`` threads,
    BLAS/OpenMP capped at ``blas_threads``) versus a naive ``ThreadPoolExecutor(os.cpu_count())``
    with uncapped BLAS; wall time, ratio and peak OS threads. Each variant runs in its own
    subprocess so thread caps cannot leak from one into the other.
(d) event-loop lag of a real in-process daemon while THREE ``ml`` symbols retrain
    (:mod:`benchmarks.ml3`, which lists its options); once with forest predictions
    in a worker thread (the daemon's path), once forced onto the loop (the baseline).
    Target p99 < 5 ms.
(c) RSS over 30 consecutive real training cycles (``ModelTrainer.train_cycle``: store read,
    walk-forward, fit, comparison, artifact, registry) with and without the cleanup hooks;
    growth from cycle 5 to cycle 30. One subprocess per variant.

Data: the bundled EURUSD H1 sample. Usage: python benchmarks/bench_training.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

HERE = Path(__file__).resolve()
LAG_JOBS_PER_WORKER = 8  # enough jobs for several hundred lag samples
LOOKBACK = 3000
HGB = {"kind": "hist_gradient_boosting", "hyperparameters": {"max_iter": 80}}
RF = {"kind": "random_forest", "hyperparameters": {"n_estimators": 100, "max_depth": 8}}


def _budget(reserve: int | None = None) -> Any:
    from forexd.daemon.budget import compute_budget
    from forexd.daemon.hardware import detect_hardware

    return compute_budget(detect_hardware().usable_cpus, reserve=reserve)


def _job(model: dict[str, Any], n_jobs: int) -> Any:
    """One training job: a full cycle (walk-forward + final fit) on the bundled sample."""
    from forexd.feeds.loaders import bundled_sample_path, load_candles
    from forexd.models.trainconfig import Candles, TrainConfig
    from forexd.models.trainer import train_challenger

    candles = Candles.from_frame(load_candles(bundled_sample_path(), "oanda-lean"))
    config = TrainConfig(lookback_candles=LOOKBACK, model=model)  # type: ignore[arg-type]

    def run() -> float:
        return float(
            train_challenger(candles, config, pip_size=1e-4, n_jobs=n_jobs).walk_forward.log_loss
        )

    return run


class _PeakThreads:
    def __init__(self) -> None:
        import psutil

        self._proc = psutil.Process()
        self.peak = self._proc.num_threads()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._proc.num_threads())

    def stop(self) -> int:
        self._stop.set()
        self._t.join()
        return self.peak


# --------------------------------------------------------------------------- (a)


def part_lag(switch_interval: float | None, reserve: int | None = None) -> dict[str, Any]:
    """Loop lag while the pool trains, then while the same jobs run inline."""
    import anyio

    from forexd.daemon.compute import ComputePool
    from forexd.daemon.looplag import LoopLagMonitor
    from forexd.daemon.threads import ThreadLimiter

    if switch_interval is not None:
        sys.setswitchinterval(switch_interval)
    budget = _budget(reserve)
    ThreadLimiter().apply(budget.blas_threads)
    n = budget.train_workers * LAG_JOBS_PER_WORKER
    jobs = [_job(HGB if i % 2 else RF, budget.blas_threads) for i in range(n)]
    jobs[0]()  # warm imports (sklearn, OpenMP) outside the measurement

    async def measure(inline: bool) -> dict[str, Any]:
        lag = LoopLagMonitor()
        pool = ComputePool(budget.train_workers, budget.train_workers)
        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            await tg.start(lag.run)
            if inline:
                for job in jobs:
                    job()  # deliberately blocking the loop: the baseline
                    await anyio.lowlevel.checkpoint()
            else:
                async with anyio.create_task_group() as work:
                    for job in jobs:
                        work.start_soon(lambda j=job: pool.run(j, timeout_s=600))
            tg.cancel_scope.cancel()
        s = lag.stats()
        return {"p50_ms": s.p50, "p99_ms": s.p99, "max_ms": s.max, "samples": s.samples,
                "wall_s": round(time.perf_counter() - started, 2)}  # fmt: skip

    pool = anyio.run(measure, False)
    inline = anyio.run(measure, True)
    return {
        "jobs": n,
        "switch_interval_ms": sys.getswitchinterval() * 1000,
        "budget": {
            "train_workers": budget.train_workers,
            "blas_threads": budget.blas_threads,
            "reserve": budget.reserve,
        },
        "pool": pool,
        "inline": inline,
        "pool_meets_target": pool["p99_ms"] < 5 and pool["max_ms"] < 50,
    }


# --------------------------------------------------------------------------- (b)


def part_throughput(variant: str, jobs_n: int) -> dict[str, Any]:
    """Wall time of a batch of jobs: budgeted pool, or naive executor with uncapped BLAS."""
    import anyio

    from forexd.daemon.compute import ComputePool
    from forexd.daemon.threads import ThreadLimiter

    budget = _budget()
    cpus = os.cpu_count() or 1
    if variant == "budgeted":
        ThreadLimiter().apply(budget.blas_threads)
        n_jobs, workers = budget.blas_threads, budget.train_workers
    else:
        n_jobs, workers = cpus, cpus  # what a naive bot does: all cores per job, per worker
    jobs = [_job(HGB if i % 2 else RF, n_jobs) for i in range(jobs_n)]
    jobs[0]()
    peak = _PeakThreads()
    started = time.perf_counter()
    if variant == "budgeted":
        pool = ComputePool(workers, workers)

        async def run_all() -> None:
            async with anyio.create_task_group() as tg:
                for job in jobs:
                    tg.start_soon(lambda j=job: pool.run(j, timeout_s=3600))

        anyio.run(run_all)
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(workers) as ex:
            list(ex.map(lambda j: j(), jobs))
    wall = time.perf_counter() - started
    return {
        "variant": variant,
        "jobs": jobs_n,
        "workers": workers,
        "threads_per_job": n_jobs,
        "wall_s": round(wall, 2),
        "jobs_per_min": round(60 * jobs_n / wall, 2),
        "peak_os_threads": peak.stop(),
    }


# --------------------------------------------------------------------------- (c)


def part_rss(cleanup: bool, cycles: int) -> dict[str, Any]:
    """RSS after each of ``cycles`` real training cycles, with or without cleanup hooks."""
    import anyio
    import psutil
    import structlog

    from forexd.daemon import cleanup as cleanup_mod
    from forexd.daemon import trainer as trainer_mod
    from forexd.daemon.compute import ComputePool
    from forexd.daemon.paths import DaemonPaths
    from forexd.daemon.threads import ThreadLimiter
    from forexd.daemon.trainer import ModelTrainer
    from forexd.daemon.training import TrainContext
    from forexd.domain import Bar, get_instrument
    from forexd.domain.bars import BarHistory
    from forexd.feeds.loaders import bundled_sample_path, load_candles
    from forexd.storage.db import open_sync
    from forexd.strategies import build_strategy

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))  # quiet
    if not cleanup:
        before = psutil.Process().memory_info().rss / 2**20
        noop = cleanup_mod.CleanupReport(before, before, (), ())
        trainer_mod.run_cleanup = lambda: noop  # type: ignore[attr-defined]

    async def _keep(champion: Any) -> None:  # the benchmark trades nothing
        return None

    budget = _budget()
    ThreadLimiter().apply(budget.blas_threads)
    frame = load_candles(bundled_sample_path(), "oanda-lean")
    with tempfile.TemporaryDirectory(prefix="fxb-", dir="/tmp") as tmp:
        paths = DaemonPaths(Path(tmp), Path(tmp) / "run")
        conn = open_sync(paths.db)
        with conn:
            conn.executemany(
                "INSERT INTO candles VALUES ('EURUSD', 'H1', ?, ?, ?, ?, ?, ?)",
                [(int(r[0]), *map(float, r[1:])) for r in frame.itertuples(index=False)],
            )
        conn.close()
        ctx = TrainContext(ComputePool(1, 1), paths, budget, None, structlog.get_logger())
        strategy = build_strategy("ml", {"lookback_candles": 2000, "model": RF})
        trainer = ModelTrainer(ctx, "EURUSD", strategy.params, _keep)  # type: ignore[attr-defined]
        trainer.restore()
        history = BarHistory(get_instrument("EURUSD"), strategy.warmup_bars + 8)
        rss: list[float] = []
        proc = psutil.Process()

        async def cycles_loop() -> None:
            step = 24
            end = 2400
            for _ in range(cycles):
                for r in frame.iloc[end - history.capacity : end].itertuples(index=False):
                    history.append(Bar("EURUSD", int(r.ts), r.open, r.high, r.low, r.close))
                await trainer.train_cycle(history.times(), "bench")
                rss.append(round(proc.memory_info().rss / 2**20, 1))
                end += step

        started = time.perf_counter()
        anyio.run(cycles_loop)
        errors = trainer.stats()["last_error"]
    return {
        "cleanup": cleanup,
        "cycles": cycles,
        "rss_mb": rss,
        "growth_5_to_30_mb": round(rss[-1] - rss[min(4, len(rss) - 1)], 1),
        "wall_s": round(time.perf_counter() - started, 1),
        "last_error": errors,
    }


# --------------------------------------------------------------------------- main


def _sub(*args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, str(HERE), "--part", *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=1800,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    """Run every part in its own subprocess and print one JSON object."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer jobs and cycles")
    parser.add_argument("--part", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part:
        name, *rest = args.part
        if name == "lag":
            switch = float(rest[0]) if rest and rest[0] != "default" else None
            res = part_lag(switch, int(rest[1]) if len(rest) > 1 else None)
        elif name == "ml3":
            from benchmarks.ml3 import part_ml3

            res = part_ml3(
                rest[0] == "thread",
                int(rest[1]),
                float(rest[2]),
                *rest[3:5],
                preimport=rest[5:6] == ["preimport"],
            )
        elif name == "throughput":
            res = part_throughput(rest[0], int(rest[1]))
        else:
            res = part_rss(rest[0] == "on", int(rest[1]))
        print(json.dumps(res))
        return
    from benchmarks.common import machine

    jobs = "4" if args.quick else "8"
    cycles = "10" if args.quick else "30"
    ml3_cycles, ml3_cap = ("1", "240") if args.quick else ("2", "600")
    ml3 = {
        "worker_thread": _sub("ml3", "thread", ml3_cycles, ml3_cap),
        "on_the_loop": _sub("ml3", "loop", ml3_cycles, ml3_cap),
    }
    budgeted = _sub("throughput", "budgeted", jobs)
    naive = _sub("throughput", "naive", jobs)
    report = {
        "machine": machine(),
        "loop_lag": {
            "default_switch": _sub("lag"),
            "switch_1ms": _sub("lag", "0.001"),
            "reserve_1_cpu": _sub("lag", "default", "1"),
            "reserve_1_cpu_switch_1ms": _sub("lag", "0.001", "1"),
        },
        "three_ml_symbols_retraining": ml3,
        "throughput": {
            "budgeted": budgeted,
            "naive": naive,
            "speedup_budgeted_over_naive": round(naive["wall_s"] / budgeted["wall_s"], 2),
        },
        "rss": {
            "with_cleanup": _sub("rss", "on", cycles),
            "without_cleanup": _sub("rss", "off", cycles),
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
