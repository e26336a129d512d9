"""`ctl status` for people: the table, errors and the model line."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from forexd.cli.ctl_render import print_status


def _status(**symbol: Any) -> dict[str, Any]:
    row = {
        "symbol": "EURUSD",
        "state": "running",
        "last_bar_time": "2018-01-02T10:00:00Z",
        "bars_seen": 1234,
        "position_units": -10000,
        "realized_pnl": 12.5,
        "unrealized_pnl": -3.25,
        "orders_sent": 7,
        "restarts": 1,
        "last_error": None,
        "training": None,
        **symbol,
    }
    return {
        "version": "0.1.0",
        "pid": 42,
        "state": "running",
        "uptime_s": 61.0,
        "broker": "paper",
        "rss_mb": 101.5,
        "threads": {"now": 4, "peak": 6},
        "budget": {
            "usable_cpus": 2,
            "cpu_slots": 2,
            "train_workers": 1,
            "blas_threads": 2,
            "max_concurrent_symbols": 1,
        },
        "loop_lag_ms": {"p50": 0.1, "p99": 0.9, "max": 2.0},
        "account": {"balance": 100_012.5, "equity": 100_009.25},
        "symbols": [row],
    }


def _render(status: dict[str, Any]) -> str:
    console = Console(record=True, width=160)
    print_status(status, console)
    return console.export_text()


def test_the_table_shows_every_symbol_figure_unsquashed() -> None:
    """Symbol, state, position and P&L appear in full, with the account and budget."""
    text = _render(_status())
    for fragment in (
        "EURUSD",
        "-10000",
        "12.50",
        "-3.25",
        "1234",
        "100,009.25",
        "1 workers × 2 BLAS threads",
        "p99 0.9 ms",
    ):
        assert fragment in text


def test_errors_and_the_model_line_are_shown_below_the_table() -> None:
    """A crashed actor's error and an ML symbol's champion/training state are printed."""
    training = {
        "state": "training",
        "cycles": 3,
        "model": "logistic",
        "last_error": "boom",
        "champion": {
            "model_id": "EURUSD-abc",
            "kind": "logistic",
            "trained_at": "2018-01-01T00:00:00Z",
        },
        "last_cycle": {
            "duration_s": 2.5,
            "rss_before_cleanup_mb": 170.0,
            "rss_after_cleanup_mb": 168.0,
        },
    }
    text = _render(_status(last_error="RuntimeError: x", training=training))
    assert "EURUSD last error: RuntimeError: x" in text
    assert "EURUSD model: EURUSD-abc (logistic" in text
    assert "training training · cycles 3 · last cycle 2.5 s, RSS 170.0→168.0 MB" in text
    assert "EURUSD training error: boom" in text
