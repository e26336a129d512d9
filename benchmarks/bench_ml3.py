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
"""

from __future__ import annotations

import gc
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.bench_gc import GcPauses, apply_policy

ML3_SYMBOLS = ("EURUSD", "GBPUSD", "USDJPY")
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
        settings.symbols = [  # type: ignore[assignment]
            {"symbol": s, "strategy": "ml", "params": params, "data": str(histdata_file(s))}
            for s in ML3_SYMBOLS
        ]
        settings.risk = RiskLimits(
            daily_loss_limit_usd=None, max_drawdown=None, max_orders_per_minute=None
        )
        daemon = Daemon(settings, resolve_paths(settings))
        tagged: list[tuple[float, bool]] = []

        def training() -> bool:
            return any(a.training.running for a in daemon.actors.values())

        class Tap(deque[float]):
            def append(self, lag_s: float) -> None:
                super().append(lag_s)
                tagged.append((lag_s * 1000, training()))

        daemon.lag._samples = Tap(maxlen=6000)

        def done_cycles() -> list[int]:
            out = []
            for a in daemon.actors.values():
                trainer = a.training.trainer
                stats = trainer.stats() if trainer is not None else {}
                out.append(int(stats.get("cycles", 0)) - (1 if a.training.running else 0))
            return out

        async def main() -> None:
            async with anyio.create_task_group() as tg:
                tg.start_soon(daemon.run)
                with anyio.move_on_after(cap_s):
                    # No event per finished cycle: poll twice a second (the bench, not the daemon).
                    while len(daemon.actors) < 3 or min(done_cycles()) < cycles:  # noqa: ASYNC110
                        await anyio.sleep(0.5)
                daemon.request_stop("benchmark done")

        started = time.perf_counter()
        with GcPauses() as pauses:
            anyio.run(main, backend="asyncio", backend_options=event_loop_options())
        wall = time.perf_counter() - started
        finished = done_cycles()
        heap = {"tracked_objects": len(gc.get_objects()), "frozen_objects": gc.get_freeze_count()}
    import numpy as np

    during = np.array([v for v, t in tagged if t]) if any(t for _, t in tagged) else np.zeros(1)
    p50, p99 = np.percentile(during, [50, 99])
    return {
        "predictions": "worker thread" if off_loop else "on the loop",
        "executor": executor,
        "gc_policy": gc_policy,
        "training_stack_preimported": preimport,
        "symbols": len(ML3_SYMBOLS),
        "cycles_finished_per_symbol": finished,
        "wall_s": round(wall, 1),
        "samples_while_training": int(sum(1 for _, t in tagged if t)),
        "p50_ms": round(float(p50), 3),
        "p99_ms": round(float(p99), 3),
        "max_ms": round(float(during.max()), 3),
        "meets_target_p99_5ms": bool(p99 < 5),
        "gc_pauses": pauses.summary(),
        "gc_heap_at_end": heap,
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
