"""Parameter sweeps: every grid point backtested, in parallel, ranked by one metric.

Each point runs the vectorised engine when the strategy has a vectorised form (the event
engine otherwise) and keeps only its metrics, so memory grows with the number of workers
(their working arrays) and not with the grid. Workers are threads: the vectorised engine
spends its time in numpy calls that release the GIL, and threads share the bars instead
of copying them into each process. The caller passes the worker count from the compute
budget (``train_workers``). The event engine holds the GIL, so an event-driven sweep gains
nothing from more workers; it is there for strategies without ``targets()``.

Before anything is allocated the sweep's peak memory is estimated and compared with a
limit (by default half of the memory available now); a grid over the limit is refused
with both numbers, rather than found out by the OOM killer.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd
import psutil

from forexd.backtest.data import MarketData, check_warmup
from forexd.backtest.metrics import RANK_METRICS, Metrics
from forexd.backtest.request import BacktestRequest, EngineKind, GridValue
from forexd.backtest.result import BacktestResult
from forexd.backtest.runner import describe, prepare_data, run_on_data, strategy_params
from forexd.domain.strategy_registry import strategy_class
from forexd.errors import ConfigError, ForexdError
from forexd.models.executor import JobExecutor, map_jobs

# Working set of one evaluation, in bytes per bar. Measured with tracemalloc on a year of
# EURUSD M1 with sma_cross: 85 B/bar (fast 10, slow 20) to 122 B/bar (fast 2, slow 5, 84k
# fills), the same for both engines; rounded up for other strategies and the allocator.
VECTORISED_BYTES_PER_BAR = 320
# The event engine also keeps a Python tuple per fill (~150 B, at most one fill per bar).
EVENT_BYTES_PER_BAR = 480
RESULT_BYTES_PER_POINT = 4_096  # metrics object, parameter dict, ranking row (guessed)
DEFAULT_MEMORY_FRACTION = 0.5  # of the memory available when the sweep starts


@dataclass(frozen=True, slots=True)
class GridRow:
    """One grid point and its metrics."""

    params: dict[str, GridValue]
    metrics: Metrics


@dataclass(frozen=True, slots=True)
class GridResult:
    """A ranked sweep.

    Attributes:
        request: the sweep's request.
        rank_by: the ranking metric.
        axes: the swept parameter names, in grid order.
        rows: evaluated points, best first (``nan`` metrics last).
        skipped: points whose parameters were invalid, with the reason.
        best: the best point re-run in full with the request's engine (or ``None``).
        engine: the engine that evaluated the points.
        workers: threads used.
        estimate_bytes: the peak memory estimate the sweep was admitted with.
        elapsed_s: wall time of the sweep (without the best point's re-run).
    """

    request: BacktestRequest
    rank_by: str
    axes: tuple[str, ...]
    rows: tuple[GridRow, ...]
    skipped: tuple[tuple[dict[str, GridValue], str], ...]
    best: BacktestResult | None
    engine: str
    workers: int
    estimate_bytes: int
    elapsed_s: float

    def to_dict(self, *, trades: bool = False) -> dict[str, Any]:
        """JSON-ready: the ranking table, skipped points and the best run's summary."""
        return {
            "rank_by": self.rank_by,
            "axes": list(self.axes),
            "engine": self.engine,
            "workers": self.workers,
            "points": len(self.rows),
            "elapsed_s": round(self.elapsed_s, 4),
            "estimate_bytes": self.estimate_bytes,
            "ranking": [{"params": r.params, **r.metrics.to_dict()} for r in self.rows],
            "skipped": [{"params": p, "reason": why} for p, why in self.skipped],
            "best": None if self.best is None else self.best.to_dict(trades=trades),
        }


def estimate_bytes(data: MarketData, points: int, workers: int, engine: str) -> int:
    """Peak memory of a sweep: the bars, each worker's working set, the results."""
    per_bar = VECTORISED_BYTES_PER_BAR if engine == "vectorised" else EVENT_BYTES_PER_BAR
    bars = sum(s.ts.nbytes * 6 for s in data.series) + data.ts.nbytes * 3
    working = min(workers, max(points, 1)) * per_bar * len(data)
    return bars + working + points * RESULT_BYTES_PER_POINT


def _sort_key(metric: str) -> Any:
    higher = RANK_METRICS[metric]

    def key(row: GridRow) -> tuple[bool, float]:
        value = row.metrics.value(metric)
        if math.isnan(value):
            return (True, 0.0)
        return (False, -value if higher else value)

    return key


def evaluate_point(job: tuple[BacktestRequest, MarketData], point: dict[str, GridValue]) -> GridRow:
    """One grid point's metrics: a job function (runs in a thread here or as a Ray task)."""
    request, data = job
    return GridRow(point, run_on_data(request, data, point).metrics)


def run_grid(
    request: BacktestRequest,
    *,
    workers: int = 1,
    frames: Mapping[str, pd.DataFrame] | None = None,
    memory_limit_bytes: int | None = None,
    detail_best: bool = True,
    executor: JobExecutor | None = None,
) -> GridResult:
    """Backtest every point of ``request.grid`` and rank the points.

    Args:
        request: the sweep (``grid`` non-empty; ``params`` hold the fixed parameters).
        workers: threads evaluating points at once (the compute budget's train workers).
        frames: candle frames by symbol instead of loading ``request.data``.
        memory_limit_bytes: refuse sweeps estimated above this; default half the memory
            available now.
        detail_best: re-run the best point in full with ``request.engine`` (for the report).
        executor: run the points there (a Ray cluster: the bars are sent once, each point
            is a task); ``None``: ``workers`` threads here.

    Raises:
        ConfigError: no grid, an unknown rank metric or parameter, no valid point, or a
            sweep whose memory estimate exceeds the limit.
        DataError: missing, malformed or too short data.
    """
    if not request.grid:
        raise ConfigError("no --grid given; a single backtest runs with run_backtest")
    if request.rank_by not in RANK_METRICS:
        raise ConfigError(f"--rank-by {request.rank_by!r}: choose one of {', '.join(RANK_METRICS)}")
    if workers < 1:
        raise ConfigError(f"workers = {workers}: at least one is needed")
    request.validate()
    data = prepare_data(request, frames)
    # Admit the sweep on its full size before any point is expanded or run.
    vectorised = callable(getattr(strategy_class(request.strategy, "--strategy"), "targets", None))
    engine: EngineKind = "vectorised" if vectorised else "event"
    estimate = estimate_bytes(data, request.grid_size, workers, engine)
    limit = memory_limit_bytes
    if limit is None:
        limit = int(psutil.virtual_memory().available * DEFAULT_MEMORY_FRACTION)
    if estimate > limit:
        raise ConfigError(
            f"--grid: {request.grid_size:,} points on {len(data):,} bars with {workers} "
            f"worker(s) need about {estimate / 2**20:,.0f} MiB, over the limit of "
            f"{limit / 2**20:,.0f} MiB; sweep fewer points, a shorter --start/--end range, "
            "or fewer workers"
        )
    points, skipped = _valid_points(request, data)
    point_request = replace(request, grid={}, engine=engine)
    t0 = time.perf_counter()

    job = (point_request, data)
    if executor is not None:
        rows = map_jobs(executor, evaluate_point, job, points)
        workers = executor.slots
    elif workers == 1:
        rows = [evaluate_point(job, p) for p in points]
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grid") as pool:
            rows = list(pool.map(lambda p: evaluate_point(job, p), points))
    elapsed = time.perf_counter() - t0
    ranked = tuple(sorted(rows, key=_sort_key(request.rank_by)))
    best = None
    if detail_best:
        best_request = replace(request, grid={}, params={**request.params, **ranked[0].params})
        best = run_on_data(best_request, data)
    return GridResult(
        request=request,
        rank_by=request.rank_by,
        axes=tuple(request.grid),
        rows=ranked,
        skipped=tuple(skipped),
        best=best,
        engine=engine,
        workers=workers,
        estimate_bytes=estimate,
        elapsed_s=elapsed,
    )


def _valid_points(
    request: BacktestRequest, data: MarketData
) -> tuple[list[dict[str, GridValue]], list[tuple[dict[str, GridValue], str]]]:
    """Split the grid into points to run and points with invalid parameters."""
    points: list[dict[str, GridValue]] = []
    skipped: list[tuple[dict[str, GridValue], str]] = []
    for point in request.grid_points():
        try:
            strategy = request.build_strategy(point)
            check_warmup(data, strategy.warmup_bars, describe(request, strategy_params(strategy)))
        except ForexdError as exc:
            skipped.append((point, str(exc)))
            continue
        points.append(point)
    if not points:
        reason = skipped[0][1] if skipped else "the grid is empty"
        raise ConfigError(f"--grid: no valid parameter combination; for example: {reason}")
    return points, skipped
