"""Event-driven backtest: the live core and ledger on a simulated clock."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from forexd.actors.core import SymbolCore
from forexd.backtest.data import market_data
from forexd.backtest.request import BacktestRequest
from forexd.backtest.result import BacktestResult
from forexd.backtest.runner import run_backtest, run_strategies
from forexd.brokers.ledger import CostModel, Ledger
from forexd.domain import Bar, get_instrument
from forexd.domain.bars import BarArrays, BarHistory, IntArray
from forexd.feeds.loaders import load_candles
from forexd.strategies import build_strategy
from forexd.strategies.base import NO_CHANGE

HOUR_NS = 3_600 * 1_000_000_000
MONDAY = 1_483_315_200 * 1_000_000_000  # 2017-01-02T00:00Z
SHARED_FX = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fx"


class Scripted:
    """Wants the position written in its script for a bar time (no change elsewhere)."""

    name: ClassVar[str] = "scripted"

    def __init__(self, script: dict[int, int]) -> None:
        self.script = script

    @property
    def warmup_bars(self) -> int:
        """Decides from the first bar."""
        return 1

    def decide(self, history: BarHistory, position_units: int) -> int | None:
        """The scripted target of the newest bar."""
        assert history.last is not None
        return self.script.get(history.last.ts)

    def targets(self, bars: BarArrays) -> IntArray:
        """The same script over a whole series."""
        return np.array([self.script.get(t, NO_CHANGE) for t in bars.ts.tolist()], np.int64)


def frame(opens: list[float], closes: list[float], start: int = MONDAY) -> pd.DataFrame:
    """Hourly candles with the given opens and closes."""
    o, c = np.array(opens), np.array(closes)
    return pd.DataFrame(
        {
            "ts": start + HOUR_NS * np.arange(len(o), dtype=np.int64),
            "open": o,
            "high": np.maximum(o, c),
            "low": np.minimum(o, c),
            "close": c,
            "volume": 0.0,
        }
    )


def scripted_run(
    frames: dict[str, pd.DataFrame],
    scripts: dict[str, list[int | None]],
    engine: str = "event",
    **request: object,
) -> BacktestResult:
    """Backtest scripted targets (one list entry per bar; None = no change)."""
    data = market_data(frames, "H1")
    strategies = [
        Scripted(
            {
                int(t): target
                for t, target in zip(s.ts.tolist(), scripts[s.symbol], strict=True)
                if target is not None
            }
        )
        for s in data.series
    ]
    req = BacktestRequest(symbols=tuple(frames), engine=engine, **request)  # type: ignore[arg-type]
    return run_strategies(req, data, strategies)


def test_orders_fill_at_the_next_open_with_half_spread_slippage_and_commission() -> None:
    """Decide on the close, fill at the next open ± (spread/2 + slippage), pay commission."""
    costs = CostModel(spread_pips=1.0, slippage_pips=0.2, commission_per_million=30.0)
    result = scripted_run(
        {"EURUSD": frame([1.1000, 1.1020, 1.1040, 1.1000], [1.1010, 1.1030, 1.1050, 1.0990])},
        {"EURUSD": [10_000, -10_000, 0, None]},
        costs=costs,
    )
    f = result.fills
    assert [1, 2, 3] == f.bar.tolist()
    assert [10_000, -20_000, 10_000] == f.units.tolist()
    # 0.7 pips against us: buy 1.1020 + 0.00007, sell 1.1040 - 0.00007, buy 1.1000 + 0.00007
    assert [1.10207, 1.10393, 1.10007] == f.price.tolist()
    # 30 USD per 1M USD notional: 11,020.70 / 22,078.60 / 11,000.70 USD of EUR
    assert [0.330621, 0.662358, 0.330021] == pytest.approx(f.commission.tolist(), abs=1e-12)
    # realised: long 10k 1.10207 -> 1.10393 = 18.60; short 10k 1.10393 -> 1.10007 = 38.60
    assert 100_000 + 18.6 + 38.6 - 1.323 == pytest.approx(result.final_balance, abs=1e-9)


def test_trades_are_round_trips_with_their_share_of_commission() -> None:
    """A flip closes one trade and opens the next at the same fill."""
    costs = CostModel(spread_pips=1.0, slippage_pips=0.2, commission_per_million=30.0)
    result = scripted_run(
        {"EURUSD": frame([1.1000, 1.1020, 1.1040, 1.1000], [1.1010, 1.1030, 1.1050, 1.0990])},
        {"EURUSD": [10_000, -10_000, 0, None]},
        costs=costs,
    )
    first, second = result.trades.records(("EURUSD",))
    assert ("long", 10_000, 1.10207, 1.10393) == (
        first["side"],
        first["units"],
        first["entry_price"],
        first["exit_price"],
    )
    assert "2017-01-02T01:00:00Z" == first["entry_time"]
    assert "2017-01-02T02:00:00Z" == first["exit_time"]
    # commission: all of the entry fill (0.330621) + half of the flip fill (0.331179)
    assert 18.6 - 0.6618 == pytest.approx(first["pnl"], abs=1e-9)
    assert ("short", 1.10393, 1.10007) == (
        second["side"],
        second["entry_price"],
        second["exit_price"],
    )
    assert 38.6 - (0.331179 + 0.330021) == pytest.approx(second["pnl"], abs=1e-9)
    assert () == result.open_positions


def test_equity_is_marked_to_each_close_after_that_bars_fills() -> None:
    """Flat on the decision bar; long 10k from the next open, marked at its close."""
    result = scripted_run(
        {"EURUSD": frame([1.1000, 1.1020, 1.1040], [1.1010, 1.1030, 1.1000])},
        {"EURUSD": [10_000, None, None]},
    )
    # no costs: bought at 1.1020, then marked at 1.1030 (+10) and 1.1000 (-20)
    assert [100_000.0, 100_010.0, 99_980.0] == pytest.approx(result.account.equity.tolist())
    assert [False, True, True] == result.account.exposed.tolist()
    (still_open,) = result.open_positions
    assert (10_000, 1.1020, -20.0) == pytest.approx(
        (still_open.units, still_open.avg_price, still_open.unrealized_pnl)
    )


def test_scale_in_and_partial_close_book_trades_at_the_average_price() -> None:
    """Buy 10k @1.10 and 10k @1.11 (avg 1.105), sell 15k @1.12, flip @1.10, cover @1.09."""
    result = scripted_run(
        {"EURUSD": frame([1.0, 1.10, 1.11, 1.12, 1.10, 1.09], [1.0] * 6)},
        {"EURUSD": [10_000, 20_000, 5_000, -5_000, 0, None]},
    )
    trades = result.trades.records(("EURUSD",))
    assert [("long", 15_000), ("long", 5_000), ("short", 5_000)] == [
        (t["side"], t["units"]) for t in trades
    ]
    assert [1.105, 1.105, 1.10] == pytest.approx([t["entry_price"] for t in trades])
    # 15k x 0.015 = 225; 5k x -0.005 = -25; short 5k 1.10 -> 1.09 = 50
    assert [225.0, -25.0, 50.0] == pytest.approx([t["pnl"] for t in trades])
    assert "2017-01-02T01:00:00Z" == trades[1]["entry_time"]  # the first add opened it
    assert 100_250.0 == pytest.approx(result.final_balance)


def test_usdjpy_pnl_is_booked_in_usd() -> None:
    """Long 100k USDJPY 110.00 -> 111.00 makes 100k JPY = 900.90 USD."""
    result = scripted_run(
        {"USDJPY": frame([109.0, 110.0, 111.0], [109.0, 110.0, 111.0])},
        {"USDJPY": [100_000, 0, None]},
    )
    assert 100_000 / 111.0 == pytest.approx(float(result.trades.net_pnl[0]))


def _naive_live_order(
    frames: dict[str, pd.DataFrame], strategies: dict[str, object], costs: CostModel
) -> tuple[list[tuple[str, int, int, float]], list[float]]:
    """Fills and per-bar equity from the live actor's sequence, one bar at a time."""
    ledger = Ledger(100_000.0, costs)
    cores = {
        s: SymbolCore(get_instrument(s), strategies[s], None)  # type: ignore[arg-type]
        for s in frames
    }
    bars = [
        Bar(s, int(r.ts), r.open, r.high, r.low, r.close, r.volume)
        for s, f in frames.items()
        for r in f.itertuples()
    ]
    bars.sort(key=lambda b: (b.ts, b.symbol))
    fills, equity = [], []
    for bar in bars:
        for fill in ledger.on_bar(bar):
            cores[bar.symbol].on_fill(fill)
            fills.append((fill.symbol, fill.ts, fill.units, fill.price))
        order = cores[bar.symbol].on_bar(bar)
        if order is not None:
            ledger.submit(order)
        equity.append(ledger.equity)
    return fills, equity


@pytest.fixture(scope="module")
def two_symbols() -> dict[str, pd.DataFrame]:
    """A week of real EURUSD and USDJPY M1 (2017-03-06 .. 2017-03-11)."""
    folder = SHARED_FX / "histdata_m1_2017"
    if not folder.is_dir():
        pytest.skip(f"real FX data not found at {folder} (../shared is absent)")
    out = {}
    for symbol in ("EURUSD", "USDJPY"):
        f = load_candles(folder / f"DAT_ASCII_{symbol}_M1_2017.csv.gz", "histdata")
        keep = (f["ts"] >= 1_488_758_400 * 10**9) & (f["ts"] < 1_489_190_400 * 10**9)
        out[symbol] = f.loc[keep].reset_index(drop=True)
    return out


def test_portfolio_equals_the_live_actor_sequence_bar_for_bar(
    two_symbols: dict[str, pd.DataFrame],
) -> None:
    """Two symbols, one ledger: same fills and same per-bar equity as a naive live loop."""
    costs = CostModel(spread_pips=0.8, slippage_pips=0.1, commission_per_million=25.0)
    params = {"fast": 7, "slow": 30, "units": 20_000}
    result = run_backtest(
        BacktestRequest(symbols=("USDJPY", "EURUSD"), params=params, costs=costs),
        frames=two_symbols,
    )
    fills, equity = _naive_live_order(
        two_symbols, {s: build_strategy("sma_cross", params) for s in two_symbols}, costs
    )
    symbols = result.data.symbols
    f = result.fills
    assert fills == [
        (symbols[c], t, u, p)
        for c, t, u, p in zip(
            f.code.tolist(), f.ts.tolist(), f.units.tolist(), f.price.tolist(), strict=True
        )
    ]
    assert equity == result.account.equity.tolist()
    assert {"EURUSD", "USDJPY"} == {symbols[c] for c in f.code.tolist()}


def test_merged_timeline_orders_by_time_then_symbol() -> None:
    """Equal times go EURUSD before USDJPY whatever order the frames come in."""
    data = market_data(
        {
            "USDJPY": frame([110.0] * 3, [110.0] * 3, start=MONDAY),
            "EURUSD": frame([1.1] * 2, [1.1] * 2, start=MONDAY + HOUR_NS),
        },
        "H1",
    )
    assert ("EURUSD", "USDJPY") == data.symbols
    assert [1, 0, 1, 0, 1] == data.code.tolist()
    assert [0, 0, 1, 1, 2] == data.local.tolist()


def test_trade_pnl_and_open_position_add_up_to_the_ledger(
    two_symbols: dict[str, pd.DataFrame],
) -> None:
    """Net trade P&L + open positions' entry fees = ledger realised - commission."""
    costs = CostModel(spread_pips=0.8, commission_per_million=25.0)
    result = run_backtest(
        BacktestRequest(symbols=("EURUSD",), params={"fast": 5, "slow": 12}, costs=costs),
        frames=two_symbols,
    )
    realised_net = result.final_balance - 100_000.0
    (pos,) = result.open_positions
    last_fill_fee = float(result.fills.commission[-1])
    open_entry_fee = last_fill_fee * abs(pos.units) / abs(int(result.fills.units[-1]))
    assert realised_net == pytest.approx(
        float(result.trades.net_pnl.sum()) - open_entry_fee, abs=1e-6
    )


def _at(day: str, hour: int) -> int:
    return int(pd.Timestamp(day, tz="UTC").value) + hour * HOUR_NS


def test_rollover_is_charged_at_17_new_york_on_positions_held_across_it() -> None:
    """Summer roll at 21:00 UTC: 100k EUR at 1.10 earning 2 %/year gets 6.03 USD a night."""
    start = _at("2017-07-04", 18)  # a Tuesday; bars 18:00 .. 23:00 UTC
    result = scripted_run(
        {"EURUSD": frame([1.10] * 6, [1.10] * 6, start=start)},
        {"EURUSD": [100_000, None, None, None, None, None]},
        rollover={"EURUSD": 2.0},
    )
    night = 100_000 * 1.10 * 0.02 / 365
    # held from the 19:00 open; the 21:00 bar is the first at or after the roll
    assert [0.0, 0.0, 0.0, night, night, night] == pytest.approx(result.account.financing.tolist())
    assert 100_000 + night == pytest.approx(result.final_balance)


def test_winter_roll_is_at_22_utc_and_wednesday_counts_three_nights() -> None:
    """On Wednesday 2017-01-04 a short pays three nights, booked at the 22:00 UTC bar."""
    start = _at("2017-01-04", 19)
    result = scripted_run(
        {"EURUSD": frame([1.05] * 5, [1.05] * 5, start=start)},
        {"EURUSD": [-10_000, None, None, None, None]},
        rollover={"*": 1.0},
    )
    nights = -3 * 10_000 * 1.05 * 0.01 / 365
    assert [0.0, 0.0, 0.0, nights, nights] == pytest.approx(result.account.financing.tolist())


def test_rollover_over_a_weekend_gap_books_the_friday_roll_once() -> None:
    """Friday 20:00 UTC -> Sunday 22:00 UTC crosses one roll (Friday's), USDJPY in USD."""
    friday = _at("2017-01-06", 20)
    sunday = _at("2017-01-08", 22)
    f = pd.concat(
        [frame([110.0] * 2, [110.0] * 2, start=friday), frame([111.0], [111.0], start=sunday)]
    ).reset_index(drop=True)
    result = scripted_run({"USDJPY": f}, {"USDJPY": [50_000, None, None]}, rollover={"*": 2.5})
    # 50k USD x 110 JPY x 2.5 % / 365 in JPY, divided by 110 back to USD
    assert 50_000 * 0.025 / 365 == pytest.approx(result.financing)


@pytest.mark.parametrize("engine", ["event", "vectorised"])
def test_a_run_without_any_order_keeps_the_initial_balance(engine: str) -> None:
    """Flat prices tie the averages: no order, no trade, equity flat, ratios undefined."""
    flat = frame([1.1] * 40, [1.1] * 40)
    result = run_backtest(BacktestRequest(engine=engine), frames={"EURUSD": flat})  # type: ignore[arg-type]
    assert (0, 0, 100_000.0) == (len(result.fills), len(result.trades), result.final_balance)
    assert [100_000.0] * 40 == result.account.equity.tolist()
    assert result.to_dict()["metrics"]["sharpe"] is None
