"""Backtest/live parity: `forexd run` on a replay and `forexd backtest` trade identically."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from forexd.domain import ns_to_iso
from tests.daemon_proc import DaemonProc, run_cli, write_config

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(("fast", "slow", "spread"), [(10, 20, 0.0), (5, 30, 1.2)])
def test_live_replay_and_backtest_make_the_same_fills(
    short_tmp: Path, daemon_factory: type[DaemonProc], fast: int, slow: int, spread: float
) -> None:
    """Same bars, same strategy, same costs: identical fill times, units and prices."""
    cfg = write_config(
        short_tmp / "p.toml",
        f"""
[broker]
spread_pips = {spread}
[feed]
source = "bundled"
speed = 0
end = "2017-09-01"
[[symbols]]
symbol = "EURUSD"
params = {{ fast = {fast}, slow = {slow}, units = 10000 }}
""",
    )
    data = short_tmp / "data"
    assert 0 == daemon_factory(data, cfg, "--exit-when-done").wait()
    with sqlite3.connect(data / "forexd.db") as conn:
        live = conn.execute("SELECT ts, units, price FROM fills ORDER BY ts, rowid").fetchall()
        balance = conn.execute("SELECT balance FROM equity ORDER BY rowid DESC LIMIT 1").fetchone()[
            0
        ]

    res = run_cli(
        "backtest",
        "--symbol",
        "EURUSD",
        "--strategy",
        "sma_cross",
        "--param",
        f"fast={fast}",
        "--param",
        f"slow={slow}",
        "--param",
        "units=10000",
        "--spread-pips",
        str(spread),
        "--end",
        "2017-09-01",
        "--json",
    )
    assert 0 == res.returncode, res.stderr
    out = json.loads(res.stdout)
    trades = out["trades"]
    assert len(live) > 20
    # Every round trip of the backtest closed on a fill the daemon also made.
    live_fills = {(ns_to_iso(ts), round(price, 6)) for ts, _units, price in live}
    assert len(trades) >= len(live) - 2
    for trade in trades:
        assert (trade["exit_time"], round(trade["exit_price"], 6)) in live_fills
    assert len(live) == out["fills"]
    assert out["final_balance"] == pytest.approx(balance, abs=1e-6)


def test_backtest_fills_equal_live_fills_exactly(
    short_tmp: Path, daemon_factory: type[DaemonProc]
) -> None:
    """The engine's fill table equals the daemon's fills table row for row."""
    from forexd.backtest import run_backtest
    from forexd.backtest.request import BacktestRequest
    from forexd.brokers.ledger import CostModel

    cfg = write_config(
        short_tmp / "p.toml",
        """
[broker]
spread_pips = 0
[feed]
speed = 0
end = "2018-01-01"
""",
    )
    data = short_tmp / "data"
    assert 0 == daemon_factory(data, cfg, "--exit-when-done").wait()
    with sqlite3.connect(data / "forexd.db") as conn:
        live = conn.execute("SELECT ts, units, price FROM fills ORDER BY ts, rowid").fetchall()
    result = run_backtest(
        BacktestRequest(
            symbols=("EURUSD",),
            strategy="sma_cross",
            params={"fast": 10, "slow": 20},
            end="2018-01-01",
            costs=CostModel(spread_pips=0.0),
        )
    )
    f = result.fills
    backtest = list(zip(f.ts.tolist(), f.units.tolist(), f.price.tolist(), strict=True))
    assert live == backtest


@pytest.mark.parametrize(
    "protection",
    ["stop_atr = 2.0, take_profit_atr = 3.0", "stop_atr = 1.5, trailing = true"],
    ids=["stop-and-target", "trailing"],
)
def test_with_stops_the_daemons_fills_equal_the_backtests_row_for_row(
    short_tmp: Path, daemon_factory: type[DaemonProc], protection: str
) -> None:
    """Protective exits on the paper broker are the backtest's, time, units and price."""
    from forexd.backtest import run_backtest
    from forexd.backtest.request import BacktestRequest
    from forexd.brokers.ledger import CostModel

    cfg = write_config(
        short_tmp / "p.toml",
        f"""
[broker]
spread_pips = 0.8
[feed]
source = "bundled"
speed = 0
end = "2017-09-01"
[[symbols]]
symbol = "EURUSD"
params = {{ fast = 10, slow = 20, units = 10000, {protection} }}
""",
    )
    data = short_tmp / "data"
    assert 0 == daemon_factory(data, cfg, "--exit-when-done").wait()
    with sqlite3.connect(data / "forexd.db") as conn:
        live = conn.execute("SELECT ts, units, price FROM fills ORDER BY ts, rowid").fetchall()
        exits = conn.execute("SELECT COUNT(*) FROM fills WHERE client_id LIKE '%:%'").fetchone()[0]
    params: dict[str, object] = {"fast": 10, "slow": 20, "units": 10000}
    for item in protection.split(", "):
        key, value = item.split(" = ")
        params[key] = value == "true" or (value != "false" and float(value))
    result = run_backtest(
        BacktestRequest(
            symbols=("EURUSD",),
            strategy="sma_cross",
            params=params,
            end="2017-09-01",
            costs=CostModel(spread_pips=0.8),
        )
    )
    f = result.fills
    backtest = list(zip(f.ts.tolist(), f.units.tolist(), f.price.tolist(), strict=True))
    assert exits > 10
    assert live == backtest
