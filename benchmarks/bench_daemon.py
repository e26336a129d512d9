"""Daemon benchmarks (issue: the walking skeleton).

Prints, for the machine it runs on:
- replay through the live actor path at speed 0, bars/s, 1 and 6 symbols (2017 M1 HistData);
- bar-to-order latency p50/p99 in paper mode (paced replay, so the disk is not saturated);
- daemon start to ready (subprocess, median of 5), and whether torch got imported;
- ``ctl status`` round trip p50/p99 over 200 requests; idle RSS and OS threads.

Usage: python benchmarks/bench_daemon.py [--quick] [--json] [--only FIGURE ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import HISTDATA_SYMBOLS, histdata_file, machine
from forexd.config import load_settings
from forexd.daemon.control import request
from forexd.daemon.logsetup import configure_logging
from forexd.daemon.paths import resolve_paths
from forexd.daemon.runner import event_loop_options
from forexd.daemon.supervisor import Daemon
from forexd.risk import RiskLimits


def _symbols(symbols: tuple[str, ...], strategy: dict[str, int]) -> list[dict[str, Any]]:
    return [
        {"symbol": s, "strategy": "sma_cross", "params": strategy, "data": str(histdata_file(s))}
        for s in symbols
    ]


def replay_throughput(symbols: tuple[str, ...], limit_end: str | None) -> dict[str, Any]:
    """Run a Daemon in-process at speed 0 until every feed is exhausted."""
    with tempfile.TemporaryDirectory(prefix="fxb-", dir="/tmp") as tmp:
        settings = load_settings(None, data_dir=Path(tmp))
        settings.feed.timeframe = "M1"
        settings.feed.speed = 0
        settings.feed.end = limit_end
        settings.symbols = _symbols(symbols, {"fast": 10, "slow": 20})  # type: ignore[assignment]
        # Measure the path, not the risk rules: a daily-loss stop would cut the order count.
        settings.risk = RiskLimits(
            daily_loss_limit_usd=None, max_drawdown=None, max_orders_per_minute=None
        )
        daemon = Daemon(settings, resolve_paths(settings), exit_when_done=True)
        anyio.run(daemon.run, backend="asyncio", backend_options=event_loop_options())
        assert daemon.ready_at is not None
        wall = time.time() - daemon.ready_at
        bars = sum(a.core.bars_seen for a in daemon.actors.values())
        orders = sum(a.orders_sent for a in daemon.actors.values())
        lat = [a.stats().bar_to_order_ms for a in daemon.actors.values()]
    return {
        "symbols": len(symbols),
        "bars": bars,
        "orders": orders,
        "wall_s": round(wall, 2),
        "bars_per_s": round(bars / wall),
        "bar_to_order_ms_at_speed_0": lat[0],
    }


def paced_latency(bars_per_s: float, end: str) -> dict[str, Any]:
    """Bar-to-order latency with the bundled H1 sample paced at ``bars_per_s``."""
    with tempfile.TemporaryDirectory(prefix="fxb-", dir="/tmp") as tmp:
        settings = load_settings(None, data_dir=Path(tmp))
        settings.feed.speed = 3600 * bars_per_s
        settings.feed.max_sleep_s = 1 / bars_per_s
        settings.feed.end = end
        # A short SMA pair trades often, so the percentiles rest on many orders.
        settings.symbols = [{"symbol": "EURUSD", "params": {"fast": 3, "slow": 7}}]  # type: ignore[list-item]
        daemon = Daemon(settings, resolve_paths(settings), exit_when_done=True)
        anyio.run(daemon.run, backend="asyncio", backend_options=event_loop_options())
        stats = daemon.actors["EURUSD"].stats()
    return {"bars_per_s": bars_per_s, "orders": stats.orders_sent, **stats.bar_to_order_ms}


def _start_daemon(data_dir: str, until_event: str) -> tuple[subprocess.Popen[str], float]:
    """Start ``forexd run`` on the bundled default; return it once ``until_event`` is logged,
    with the seconds that took."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "forexd", "run", "--data-dir", data_dir, "--log-format", "json"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if f'"event": "{until_event}"' in line:
            return proc, time.perf_counter() - t0
    raise RuntimeError(f"forexd exited (rc={proc.wait()}) before logging {until_event!r}")


def start_to_ready(runs: int) -> dict[str, Any]:
    """Median wall time from process start to the ``ready`` log line."""
    times = []
    torch_loaded = False
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="fxb-", dir="/tmp") as tmp:
            proc, elapsed = _start_daemon(tmp, "ready")
            times.append(elapsed)
            status = request(resolve_paths(load_settings(None, data_dir=Path(tmp))), "status")
            torch_loaded = torch_loaded or bool(status.get("torch_imported"))
            proc.terminate()
            proc.wait(timeout=30)
    return {
        "runs": runs,
        "median_s": round(statistics.median(times), 3),
        "min_s": round(min(times), 3),
        "max_s": round(max(times), 3),
        "torch_imported": torch_loaded,
    }


def ctl_round_trip(n: int) -> dict[str, Any]:
    """``ctl status`` round trips against an idle daemon (replay finished)."""
    with tempfile.TemporaryDirectory(prefix="fxb-", dir="/tmp") as tmp:
        proc, _ = _start_daemon(tmp, "feed_exhausted")
        paths = resolve_paths(load_settings(None, data_dir=Path(tmp)))
        samples = []
        for _ in range(n):
            t0 = time.perf_counter()
            status = request(paths, "status")
            samples.append((time.perf_counter() - t0) * 1000)
        cli = []
        for _ in range(5):
            t0 = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "forexd", "ctl", "status", "--json", "--data-dir", tmp],
                check=True,
                capture_output=True,
            )
            cli.append((time.perf_counter() - t0) * 1000)
        proc.terminate()
        proc.wait(timeout=30)
    samples.sort()
    return {
        "requests": n,
        "socket_p50_ms": round(samples[n // 2], 3),
        "socket_p99_ms": round(samples[int(n * 0.99) - 1], 3),
        "cli_process_median_ms": round(statistics.median(cli), 1),
        "idle_rss_mb": status["rss_mb"],
        "idle_threads": status["threads"]["now"],
    }


def main() -> None:
    """Run every benchmark and print the figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="one month of M1 instead of a year")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--only",
        choices=("replay_1_symbol", "replay_6_symbols", "latency", "start_to_ready", "ctl_status"),
        action="append",
        help="run only these figures (repeatable); default: all",
    )
    args = parser.parse_args()
    configure_logging("error", "json")
    end = "2017-02-01" if args.quick else None
    figures = {
        "replay_1_symbol": lambda: replay_throughput(HISTDATA_SYMBOLS[:1], end),
        "replay_6_symbols": lambda: replay_throughput(HISTDATA_SYMBOLS, end),
        "latency": lambda: paced_latency(1000.0, "2017-10-01"),
        "start_to_ready": lambda: start_to_ready(5),
        "ctl_status": lambda: ctl_round_trip(200),
    }
    results: dict[str, Any] = {"machine": machine(), "load_average_at_start": os.getloadavg()}
    for name, figure in figures.items():
        if not args.only or name in args.only:
            results[name] = figure()
    results["load_average_at_end"] = os.getloadavg()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
