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
    )
    for col in table.columns:
        col.no_wrap = True
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
        )
    console.print(table)
    for s in status["symbols"]:
        if s["last_error"]:
            console.print(f"[red]{s['symbol']} last error:[/] {s['last_error']}")
        _print_training(console, s["symbol"], s.get("training"))


def _print_training(console: Console, symbol: str, training: dict[str, Any] | None) -> None:
    """One line per ML symbol: champion, training state, last cycle."""
    if not training:
        return
    champ = training.get("champion") or {}
    last = training.get("last_cycle") or {}
    console.print(
        f"{symbol} model: {champ.get('model_id', 'no champion yet')}"
        f" ({champ.get('kind', training.get('model', '?'))}, trained "
        f"{champ.get('trained_at', '-')}) · training {training.get('state')} · "
        f"cycles {training.get('cycles', 0)} · last cycle {last.get('duration_s', '-')} s, "
        f"RSS {last.get('rss_before_cleanup_mb', '-')}→{last.get('rss_after_cleanup_mb', '-')} MB"
    )
    if training.get("last_error"):
        console.print(f"[red]{symbol} training error:[/] {training['last_error']}")
