"""Loop lag of a real in-process daemon while three ML symbols retrain (issue 9 target).

Three ``ml`` symbols (random forest, 2017 M1 HistData EURUSD/GBPUSD/USDJPY, replayed at
100 bars/s each) trade and retrain back to back under the default budget: p50/p99/max over
the lag samples taken while at least one symbol was in a training cycle. Target p99 < 5 ms.
Every cyclic-GC pass in the process is timed too (``gc_pauses``: a pass holds the GIL, so
it is loop lag wherever it runs).

Run through ``benchmarks/bench_training.py --part ml3 PREDICTIONS CYCLES CAP_S [EXECUTOR
[GC_POLICY [PREIMPORT]]]``: PREDICTIONS ``thread`` (the daemon's path) or ``loop`` (forced
baseline), CYCLES per symbol, CAP_S a wall-clock cap, EXECUTOR ``threads``/``processes``,
GC_POLICY ``daemon`` (as shipped) or a :mod:`benchmarks.bench_gc` policy (``legacy``,
``2:never``...), PREIMPORT ``preimport`` to load sklearn and skops before the supervisor's
start-up freeze (a what-if).

Diagnostics: ``cpu_s_by_thread`` (who competes with the loop), ``late_over_5ms_while_training``
(how many late wake-ups a gc pass overlapped), ``p99_ms_not_training`` (the same run's floor
without training). Environment: ``BENCH_SLOW_CALLBACK_MS=N`` turns on asyncio debug and
reports loop steps slower than N ms; ``BENCH_RESERVE_CPUS=N`` sets ``compute.reserve_cpus``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import re
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.bench_gc import GcPauses, apply_policy

ML3_SYMBOLS = ("EURUSD", "GBPUSD", "USDJPY")
SLOW_CALLBACK_MS = float(os.environ.get("BENCH_SLOW_CALLBACK_MS", "0"))  # 0: no loop debug
RESERVE_CPUS = os.environ.get("BENCH_RESERVE_CPUS")  # unset: the default budget
LATE_S = 0.005  # the target: a wake-up later than this is explained (gc or not)
RF = {"kind": "random_forest", "hyperparameters": {"n_estimators": 100, "max_depth": 8}}


def part_ml3(
    off_loop: bool,
    cycles: int,
    cap_s: float,
    executor: str = "threads",
    gc_policy: str = "daemon",
    preimport: bool = False,
) -> dict[str, Any]:
    """Loop lag of an in-process daemon while three ML symbols retrain (see the module note)."""
    from collections import deque

    import anyio

    from benchmarks.common import histdata_file
    from forexd.config import load_settings
    from forexd.daemon.logsetup import configure_logging
    from forexd.daemon.paths import resolve_paths
    from forexd.daemon.runner import GIL_SWITCH_INTERVAL_S, event_loop_options
    from forexd.daemon.supervisor import Daemon
    from forexd.risk import RiskLimits
    from forexd.strategies.ml import MlStrategy

    if not off_loop:  # the baseline: every forest prediction on the loop
        MlStrategy.predicts_off_loop = property(lambda self: False)  # type: ignore[method-assign,assignment]
    if gc_policy != "daemon":
        apply_policy(gc_policy)
    if preimport:  # what-if: the training stack loaded before the supervisor's gc.freeze()
        import sklearn.ensemble  # noqa: F401
        import skops.io  # noqa: F401
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)  # as `forexd run` does
    configure_logging("warning", "json")
    params = {
        "lookback_candles": 2000,
        "retrain_every_bars": 1000,
        "walk_forward": {"n_folds": 3, "min_train_rows": 200},
        "model": RF,
    }
    with tempfile.TemporaryDirectory(prefix="fxb-", dir="/tmp") as tmp:
        settings = load_settings(None, data_dir=Path(tmp))
        settings.feed.timeframe = "M1"
        settings.feed.speed = 6000  # 100 M1 bars per second per symbol
        settings.feed.start = "2017-03-01"
        settings.compute.executor = executor  # type: ignore[assignment]
        if RESERVE_CPUS is not None:  # what-if: CPUs kept for the event loop
            settings.compute.reserve_cpus = int(RESERVE_CPUS)
        settings.symbols = [  # type: ignore[assignment]
            {"symbol": s, "strategy": "ml", "params": params, "data": str(histdata_file(s))}
            for s in ML3_SYMBOLS
        ]
        settings.risk = RiskLimits(
            daily_loss_limit_usd=None, max_drawdown=None, max_orders_per_minute=None
        )
        daemon = Daemon(settings, resolve_paths(settings))
        tagged: list[tuple[float, bool]] = []
        late: list[tuple[float, float]] = []  # (start, end) of each late part > 5 ms, training

        def training() -> bool:
            return any(a.training.running for a in daemon.actors.values())

        class Tap(deque[float]):
            def append(self, lag_s: float) -> None:
                super().append(lag_s)
                busy = training()
                tagged.append((lag_s * 1000, busy))
                if busy and lag_s > LATE_S:
                    now = time.perf_counter()
                    late.append((now - lag_s, now))

        daemon.lag._samples = Tap(maxlen=6000)

        def done_cycles() -> list[int]:
            out = []
            for a in daemon.actors.values():
                trainer = a.training.trainer
                stats = trainer.stats() if trainer is not None else {}
                out.append(int(stats.get("cycles", 0)) - (1 if a.training.running else 0))
            return out

        thread_cpu: dict[str, float] = {}
        slow: dict[str, list[float]] = {}

        async def main() -> None:
            if SLOW_CALLBACK_MS:  # asyncio debug: log every loop step slower than this
                loop = asyncio.get_running_loop()
                loop.set_debug(True)
                loop.slow_callback_duration = SLOW_CALLBACK_MS / 1000
                logging.getLogger("asyncio").addHandler(_SlowSteps(slow))
            async with anyio.create_task_group() as tg:
                tg.start_soon(daemon.run)
                with anyio.move_on_after(cap_s):
                    # No event per finished cycle: poll twice a second (the bench, not the daemon).
                    while len(daemon.actors) < 3 or min(done_cycles()) < cycles:  # noqa: ASYNC110
                        await anyio.sleep(0.5)
                thread_cpu.update(_cpu_by_thread())
                daemon.request_stop("benchmark done")

        started = time.perf_counter()
        pauses = GcPauses()
        with pauses:
            anyio.run(main, backend="asyncio", backend_options=event_loop_options())
        wall = time.perf_counter() - started
        finished = done_cycles()
        risk_writes = getattr(daemon.risk, "writes", None)  # None: a tree before issue 9
        heap = {"tracked_objects": len(gc.get_objects()), "frozen_objects": gc.get_freeze_count()}
    import numpy as np

    during = np.array([v for v, t in tagged if t]) if any(t for _, t in tagged) else np.zeros(1)
    p50, p99 = np.percentile(during, [50, 99])
    idle = [v for v, t in tagged if not t] or [0.0]
    return {
        "predictions": "worker thread" if off_loop else "on the loop",
        "executor": executor,
        "reserve_cpus": RESERVE_CPUS,
        "gc_policy": gc_policy,
        "training_stack_preimported": preimport,
        "symbols": len(ML3_SYMBOLS),
        "cycles_finished_per_symbol": finished,
        "wall_s": round(wall, 1),
        "samples_while_training": int(sum(1 for _, t in tagged if t)),
        "p50_ms": round(float(p50), 3),
        "p99_ms": round(float(p99), 3),
        "max_ms": round(float(during.max()), 3),
        "p99_ms_not_training": round(float(np.percentile(idle, 99)), 3),
        "meets_target_p99_5ms": bool(p99 < 5),
        "gc_pauses": pauses.summary(),
        "cpu_s_by_thread": dict(sorted(thread_cpu.items(), key=lambda kv: -kv[1])[:8]),
        "slow_loop_steps": dict(sorted(slow.items(), key=lambda kv: -kv[1][1])[:8]),
        "late_over_5ms_while_training": {
            "samples": len(late),
            "during_a_full_gc_pass": sum(pauses.overlaps(a, b, 2) for a, b in late),
            "during_any_gc_pass": sum(pauses.overlaps(a, b) for a, b in late),
        },
        "gc_heap_at_end": heap,
        "risk_state_writes": risk_writes,
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def _cpu_by_thread() -> dict[str, float]:
    """CPU seconds (user + system) of each OS thread so far, by Python thread name."""
    import psutil

    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, float] = {}
    for t in psutil.Process().threads():
        name = re.sub(r"\d+", "N", names.get(t.id, "native (BLAS/OpenMP/uvloop)"))
        out[name] = out.get(name, 0.0) + t.user_time + t.system_time
    return {k: round(v, 2) for k, v in out.items()}


class _SlowSteps(logging.Handler):
    """Counts asyncio's "Executing <step> took N seconds" warnings (debug mode) by step.

    ``counts[step]`` is ``[how many, longest seconds]``.
    """

    def __init__(self, counts: dict[str, list[float]]) -> None:
        super().__init__()
        self.counts = counts

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        took = re.search(r" took (\d+\.\d+) seconds", message)
        if took is not None:
            step = message.split(" took")[0]
            step = re.sub(r" at 0x[0-9a-f]+|coro=<.*running at |created at .*", "", step)
            entry = self.counts.setdefault(step[:140], [0, 0.0])
            entry[0] += 1
            entry[1] = max(entry[1], float(took.group(1)))
