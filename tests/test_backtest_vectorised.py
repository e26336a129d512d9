"""Vectorised backtest: the event-driven engine's numbers, computed with numpy."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forexd.backtest import BacktestRequest, run_backtest, run_grid
from forexd.backtest.positions import _replay_loop, replay_positions
from forexd.backtest.result import BacktestResult
from forexd.backtest.vectorised import commissions, fill_prices
from forexd.brokers.ledger import CostModel
from forexd.domain import get_instrument
from forexd.feeds.loaders import load_candles
from tests.test_backtest_engine import frame, scripted_run

SHARED_FX = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fx"
COSTS = CostModel(spread_pips=0.85, slippage_pips=0.15, commission_per_million=27.5)


def real(path: str, start: str | None = None, end: str | None = None) -> pd.DataFrame:
    """A real candle file from ../shared/data/fx, clipped; skip when absent."""
    file = SHARED_FX / path
    if not file.exists():
        pytest.skip(f"real FX data not found at {file} (../shared is absent)")
    f = load_candles(file)
    ts = f["ts"]
    keep = np.ones(len(f), bool)
    if start:
        keep &= ts >= pd.Timestamp(start, tz="UTC").value
    if end:
        keep &= ts < pd.Timestamp(end, tz="UTC").value
    return f.loc[keep].reset_index(drop=True)


def assert_same_run(event: BacktestResult, vector: BacktestResult) -> None:
    """Fills, trades, balances and equity agree to 1e-9 (in practice: bit for bit)."""
    assert ("event", "vectorised") == (event.engine, vector.engine)
    a, b = event.fills, vector.fills
    for name in ("bar", "code", "ts", "units"):
        assert getattr(a, name).tolist() == getattr(b, name).tolist()
    for name in ("price", "commission", "balance_after"):
        np.testing.assert_allclose(getattr(b, name), getattr(a, name), rtol=0, atol=1e-9)
    symbols = event.data.symbols
    assert event.trades.records(symbols) == vector.trades.records(symbols)
    assert event.final_balance == pytest.approx(vector.final_balance, rel=0, abs=1e-9)
    np.testing.assert_allclose(vector.account.equity, event.account.equity, rtol=0, atol=1e-9)
    assert event.metrics == vector.metrics


def both(request: BacktestRequest, frames: dict[str, pd.DataFrame]) -> list[BacktestResult]:
    """The request run by each engine."""
    return [
        run_backtest(replace(request, engine=e), frames=frames) for e in ("event", "vectorised")
    ]


def test_fill_prices_equal_the_cost_models_rounding_exactly() -> None:
    """Half-pip costs put prices on .5 boundaries; numpy still matches round() bit for bit."""
    rng = np.random.default_rng(11)
    for symbol, costs in (
        ("EURUSD", COSTS),
        ("USDJPY", CostModel(0.35, 0.0)),
        ("EURUSD", CostModel()),
    ):
        inst = get_instrument(symbol)
        base = 110.0 if symbol == "USDJPY" else 1.1
        ref = np.round(base + rng.normal(0, base / 100, 20_000), inst.price_precision + 1)
        units = rng.choice([-30_000, -1, 1, 10_000], 20_000)
        expected = [
            costs.fill_price(inst, r, u) for r, u in zip(ref.tolist(), units.tolist(), strict=True)
        ]
        assert expected == fill_prices(costs, inst, ref, units).tolist()


def test_commissions_equal_the_cost_model() -> None:
    """USD notional per million, for a USD-quoted and a USD-based pair."""
    for symbol, price in (("EURUSD", 1.12345), ("USDJPY", 112.345)):
        inst = get_instrument(symbol)
        units = np.array([10_000, -25_000, 1])
        prices = np.full(3, price)
        expected = [COSTS.commission(inst, u, price) for u in units.tolist()]
        assert expected == commissions(COSTS, inst, units, prices).tolist()


def test_scripted_targets_with_scale_ins_match_the_event_engine() -> None:
    """Adds, partial closes and flips (the replay's loop path) give identical runs."""
    frames = {"EURUSD": frame([1.0, 1.10, 1.11, 1.12, 1.10, 1.09, 1.1], [1.05] * 7)}
    script: list[int | None] = [10_000, 20_000, 5_000, -5_000, None, 0, None]
    event = scripted_run(frames, {"EURUSD": script}, costs=COSTS)
    vector = scripted_run(frames, {"EURUSD": script}, engine="vectorised", costs=COSTS)
    assert_same_run(event, vector)


def test_vectorised_position_replay_equals_the_sequential_one() -> None:
    """The numpy replay and the Position.apply loop agree on opens, flips and reductions."""
    rng = np.random.default_rng(5)
    units_list, held = [], 0
    for target in rng.choice([-20_000, -10_000, 0, 10_000, 20_000], 3_000).tolist():
        change = target - held
        if change and (held == 0 or (held > 0) != (change > 0)):  # no scale-ins
            units_list.append(change)
            held = target
    units = np.array(units_list, np.int64)
    ts = np.arange(len(units), dtype=np.int64) * 60_000_000_000
    price = np.round(1.1 + rng.normal(0, 0.01, len(units)), 6)
    fee = np.abs(units) * price * 2.5e-5
    inst = get_instrument("GBPUSD")
    fast = replay_positions(inst, ts, units, price, fee)
    slow = _replay_loop(inst, ts, units, price, fee)
    assert 1_000 < len(units)
    for name in ("units_before", "units_after", "avg_before", "avg_after", "realized"):
        assert getattr(slow, name).tolist() == getattr(fast, name).tolist()
    for name in ("closing", "entry_ts_before"):
        assert getattr(slow, name).tolist() == getattr(fast, name).tolist()
    np.testing.assert_allclose(fast.entry_fee_before, slow.entry_fee_before, rtol=1e-12)


def test_lean_hourly_eurusd_runs_identically_in_both_engines() -> None:
    """Twelve years of real H1 bars with spread, slippage, commission and rollover."""
    frames = {"EURUSD": real("lean_oanda/hour/eurusd.csv.gz")}
    request = BacktestRequest(
        params={"fast": 8, "slow": 21, "units": 25_000}, costs=COSTS, rollover={"*": -0.75}
    )
    event, vector = both(request, frames)
    assert_same_run(event, vector)
    assert 1_000 < len(event.trades)


def test_usdjpy_m1_runs_identically_in_both_engines() -> None:
    """A month of real USDJPY M1: JPY P&L converted to USD the same way."""
    frames = {
        "USDJPY": real(
            "histdata_m1_2017/DAT_ASCII_USDJPY_M1_2017.csv.gz", "2017-05-01", "2017-06-01"
        )
    }
    request = BacktestRequest(params={"fast": 10, "slow": 20}, costs=COSTS, rollover={"*": 2.0})
    assert_same_run(*both(request, frames))


def test_two_symbol_portfolio_runs_identically_in_both_engines() -> None:
    """EURUSD and GBPUSD M1 for a fortnight share one account in both engines."""
    frames = {
        s: real(f"histdata_m1_2017/DAT_ASCII_{s}_M1_2017.csv.gz", "2017-09-04", "2017-09-16")
        for s in ("EURUSD", "GBPUSD")
    }
    request = BacktestRequest(
        symbols=("GBPUSD", "EURUSD"), params={"fast": 12, "slow": 40}, costs=COSTS
    )
    event, vector = both(request, frames)
    assert_same_run(event, vector)
    assert {0, 1} == set(event.fills.code.tolist())


@pytest.mark.slow
def test_a_year_of_real_m1_runs_identically_from_the_file() -> None:
    """All of 2017 EURUSD M1 from HistData's file, loaded by the request itself."""
    path = SHARED_FX / "histdata_m1_2017" / "DAT_ASCII_EURUSD_M1_2017.csv.gz"
    if not path.exists():
        pytest.skip(f"real FX data not found at {path} (../shared is absent)")
    request = BacktestRequest(data=path, params={"fast": 10, "slow": 20}, costs=COSTS)
    event = run_backtest(request)
    vector = run_backtest(replace(request, engine="vectorised"))
    assert_same_run(event, vector)
    assert (371_635, "M1", ("EURUSD",)) == (
        len(event.data),
        event.data.timeframe,
        event.data.symbols,
    )
    assert "2017-01-02T07:00:00Z" == event.to_dict()["first_bar"]  # 02:00 New York, EST
    assert len(event.fills) == len(event.trades) + len(event.open_positions)


def test_sweep_ranks_points_and_its_best_run_reproduces_the_ranked_metrics() -> None:
    """The best point, re-run by the event engine, has the metrics it was ranked with."""
    frames = {"EURUSD": real("lean_oanda/hour/eurusd.csv.gz", "2016-01-01", "2018-01-01")}
    request = BacktestRequest(
        params={"units": 10_000},
        grid={"fast": (3, 5, 8, 13), "slow": (13, 21, 34)},
        rank_by="sharpe",
        costs=COSTS,
    )
    one = run_grid(request, frames=frames, workers=1)
    two = run_grid(request, frames=frames, workers=2, detail_best=False)
    assert [r.params for r in one.rows] == [r.params for r in two.rows]
    assert [{"fast": 13, "slow": 13}] == [p for p, _ in one.skipped]
    sharpes = [r.metrics.sharpe for r in one.rows]
    assert sorted(sharpes, reverse=True) == sharpes
    assert one.best is not None
    assert ("event", one.rows[0].metrics) == (one.best.engine, one.best.metrics)
    off = {"stop_atr": None, "take_profit_atr": None, "trailing": False}  # no stops
    assert {**one.rows[0].params, "units": 10_000, **off} == one.best.params


@pytest.mark.parametrize(
    "protection",
    [
        {"stop_atr": 2.0, "take_profit_atr": 3.0},
        {"stop_atr": 1.5, "trailing": True},
    ],
    ids=["stop-and-target", "trailing"],
)
def test_lean_hourly_eurusd_with_stops_runs_identically_in_both_engines(
    protection: dict[str, object],
) -> None:
    """Twelve years of real H1 with protective exits: same fills, reasons aside, bit for bit."""
    frames = {"EURUSD": real("lean_oanda/hour/eurusd.csv.gz")}
    request = BacktestRequest(
        params={"fast": 8, "slow": 21, "units": 25_000, **protection},
        costs=COSTS,
        rollover={"*": -0.75},
    )
    event, vector = both(request, frames)
    assert_same_run(event, vector)
    plain = run_backtest(
        replace(request, params={"fast": 8, "slow": 21, "units": 25_000}), frames=frames
    )
    # The stops changed the run: exits between the crossings add fills.
    assert len(event.fills.units) > len(plain.fills.units) + 500


def test_two_symbols_with_stops_run_identically_in_both_engines() -> None:
    """EURUSD and GBPUSD M1 with stops and targets share one account in both engines."""
    frames = {
        s: real(f"histdata_m1_2017/DAT_ASCII_{s}_M1_2017.csv.gz", "2017-09-04", "2017-09-16")
        for s in ("EURUSD", "GBPUSD")
    }
    request = BacktestRequest(
        symbols=("GBPUSD", "EURUSD"),
        params={"fast": 12, "slow": 40, "stop_atr": 3.0, "take_profit_atr": 4.0},
        costs=COSTS,
    )
    assert_same_run(*both(request, frames))
