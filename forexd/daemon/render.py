"""Human-readable rendering of ``ctl status`` (rich tables)."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.table import Table


def print_status(status: dict[str, Any], console: Console | None = None) -> None:
    """Print the status object as a summary and a per-symbol table."""
    # Piped output has no terminal width; do not squash the symbol column to "EURU…".
    console = console or (Console() if sys.stdout.isatty() else Console(width=160))
    b, lag, acct = status["budget"], status["loop_lag_ms"], status["account"]
    console.print(
        f"[bold]forexd {status['version']}[/] pid {status['pid']} · {status['state']} · "
        f"up {status['uptime_s']:.0f} s · broker {status['broker']}"
    )
    console.print(
        f"budget: {b['usable_cpus']} CPUs usable, {b['cpu_slots']} slots = "
        f"{b['train_workers']} workers × {b['blas_threads']} BLAS threads, "
        f"{b['max_concurrent_symbols']} symbol(s) in the heavy phase"
    )
    console.print(
        f"threads {status['threads']['now']} (peak {status['threads']['peak']}) · "
        f"RSS {status['rss_mb']} MB · loop lag p50 {lag['p50']} ms, p99 {lag['p99']} ms, "
        f"max {lag['max']} ms"
    )
    console.print(f"account: balance {acct['balance']:,.2f} · equity {acct['equity']:,.2f} USD")
    table = Table(
        "symbol",
        "state",
        "last bar",
        "bars",
        "position",
        "realized",
        "unrealized",
        "orders",
        "restarts",
        "last error",
    )
    for s in status["symbols"]:
        table.add_row(
            s["symbol"],
            s["state"],
            s["last_bar_time"] or "-",
            str(s["bars_seen"]),
            str(s["position_units"]),
            f"{s['realized_pnl']:,.2f}",
            f"{s['unrealized_pnl']:,.2f}",
            str(s["orders_sent"]),
            str(s["restarts"]),
            s["last_error"] or "",
        )
    console.print(table)
