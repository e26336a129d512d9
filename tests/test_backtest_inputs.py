"""Backtest requests: command-line flags, and typed errors for bad input."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forexd.backtest import BacktestRequest, run_backtest, run_grid
from forexd.backtest.data import symbol_from_path
from forexd.backtest.request import parse_range
from forexd.brokers.ledger import CostModel
from forexd.cli.backtest_args import add_backtest_arguments, request_from_args
from forexd.errors import ConfigError, DataError

HOUR_NS = 3_600 * 1_000_000_000
MONDAY = 1_483_315_200 * 1_000_000_000  # 2017-01-02T00:00Z


def walk(n: int, seed: int = 3) -> pd.DataFrame:
    """``n`` hourly EURUSD candles of a random walk."""
    rng = np.random.default_rng(seed)
    close = np.round(1.1 + np.cumsum(rng.normal(0, 0.0005, n)), 5)
    open_ = np.concatenate(([1.1], close[:-1]))
    return pd.DataFrame(
        {
            "ts": MONDAY + HOUR_NS * np.arange(n, dtype=np.int64),
            "open": open_,
            "high": np.maximum(open_, close) + 0.0002,
            "low": np.minimum(open_, close) - 0.0002,
            "close": close,
            "volume": 0.0,
        }
    )


def parse(*argv: str) -> argparse.Namespace:
    """Parse ``forexd backtest`` flags."""
    parser = argparse.ArgumentParser()
    add_backtest_arguments(parser)
    return parser.parse_args(list(argv))


def test_flags_become_a_request() -> None:
    """Every flag lands in the request, with values parsed to numbers."""
    ns = parse(
        "--data",
        "d/DAT_{symbol}.csv",
        "--symbol",
        "EURUSD",
        "--symbol",
        "usd_jpy",
        "--timeframe",
        "M5",
        "--param",
        "units=5000",
        "--grid",
        "fast=5:15:5",
        "--grid",
        "slow=30,40",
        "--rank-by",
        "sortino",
        "--spread-pips",
        "1.2",
        "--slippage-pips",
        "0.3",
        "--commission-per-million",
        "35",
        "--start",
        "2017-02-01",
        "--end",
        "2017-03-01",
        "--initial-balance",
        "50000",
        "--rollover",
        "-0.5",
        "--rollover",
        "USDJPY=2.25",
        "--engine",
        "vectorised",
    )
    request = request_from_args(ns)
    assert ("EURUSD", "usd_jpy") == request.symbols
    assert {"units": 5000} == dict(request.params)
    assert {"fast": (5, 10, 15), "slow": (30, 40)} == dict(request.grid)
    assert CostModel(1.2, 0.3, 35.0) == request.costs
    assert {"*": -0.5, "USDJPY": 2.25} == dict(request.rollover)
    assert (Path("d/DAT_{symbol}.csv"), "M5", "sortino", 50_000.0, "vectorised") == (
        request.data,
        request.timeframe,
        request.rank_by,
        request.initial_balance,
        request.engine,
    )
    assert 6 == request.grid_size


def test_cost_defaults_are_the_paper_brokers() -> None:
    """Without cost flags the request uses the paper broker's configured defaults."""
    request = request_from_args(parse())
    assert CostModel(0.8, 0.0, 0.0) == request.costs
    assert 100_000.0 == request.initial_balance


def test_float_ranges_include_the_stop_without_drift() -> None:
    """0.1:0.3:0.1 is exactly 0.1, 0.2, 0.3."""
    assert ("x", (0.1, 0.2, 0.3)) == parse_range("x=0.1:0.3:0.1")


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (("--param", "nonsense=1"), "nonsense"),
        (("--param", "fast=0"), "fast"),
        (("--param", "fast=30", "--param", "slow=20"), "must be smaller"),
        (("--param", "fast"), "expected NAME=VALUE"),
        (("--grid", "fast=5:1:1"), "step"),
        (("--grid", "fast=a:b:c"), "not a number"),
        (("--grid", "speed=1:3:1"), "no parameter 'speed'"),
        (("--grid", "fast=1:3:1", "--param", "fast=2"), "both"),
        (("--rollover", "EURUSD=lots"), "PERCENT"),
        (("--rollover", "XAUUSD=1"), "unknown symbol"),
        (("--start", "yesterday"), "ISO 8601"),
        (("--start", "2017-03-01", "--end", "2017-02-01"), "not before"),
        (("--spread-pips", "-1"), "--spread-pips"),
        (("--initial-balance", "0"), "--initial-balance"),
        (("--png-dir", "figs"), "--report"),
    ],
)
def test_bad_flags_are_config_errors_naming_the_input(argv: tuple[str, ...], fragment: str) -> None:
    """Each malformed or out-of-range flag is refused with a message that names it."""
    with pytest.raises(ConfigError, match=fragment):
        request_from_args(parse(*argv))


def test_from_store_without_a_store_is_refused() -> None:
    """--from-store needs the data directory's store."""
    with pytest.raises(ConfigError, match="store"):
        request_from_args(parse("--from-store", "--symbol", "EURUSD", "--timeframe", "H1"))


def test_unknown_strategy_is_a_config_error() -> None:
    """A strategy outside the registry is named in the error."""
    with pytest.raises(ConfigError, match="unknown strategy 'momo'"):
        run_backtest(BacktestRequest(strategy="momo"), frames={"EURUSD": walk(100)})


def test_too_few_bars_for_the_warm_up_is_a_data_error() -> None:
    """20 bars cannot feed SMA(10, 20): it needs 21 (warm-up plus one to fill)."""
    with pytest.raises(DataError, match=r"20 bar.*needs at least 21"):
        run_backtest(BacktestRequest(), frames={"EURUSD": walk(20)})


def test_empty_range_is_a_data_error() -> None:
    """A start/end window without bars says so."""
    request = BacktestRequest(start="2018-01-01", end="2018-02-01")
    with pytest.raises(DataError, match="no bars"):
        run_backtest(request, frames={"EURUSD": walk(100)})


def test_nan_prices_and_unsorted_times_are_data_errors() -> None:
    """Bad rows are refused with the row's position and time, never patched."""
    nan = walk(50)
    nan.loc[7, "close"] = float("nan")
    with pytest.raises(DataError, match=r"bar 7 .*close = nan"):
        run_backtest(BacktestRequest(), frames={"EURUSD": nan})
    unsorted = walk(50)
    unsorted.loc[[10, 11], "ts"] = unsorted.loc[[11, 10], "ts"].to_numpy()
    with pytest.raises(DataError, match="not strictly increasing at row 11"):
        run_backtest(BacktestRequest(), frames={"EURUSD": unsorted})


def test_a_symbol_without_data_is_a_config_error() -> None:
    """Asking for a symbol the frames do not hold names it."""
    with pytest.raises(ConfigError, match="GBPUSD"):
        run_backtest(BacktestRequest(symbols=("GBPUSD",)), frames={"EURUSD": walk(100)})


def test_grid_over_the_memory_limit_is_refused_with_the_estimate() -> None:
    """The estimate and the limit are both in the message; nothing runs."""
    request = BacktestRequest(grid={"fast": tuple(range(2, 40)), "slow": tuple(range(41, 400))})
    with pytest.raises(ConfigError, match=r"13,642 points .* MiB, over the limit of 1 MiB"):
        run_grid(request, frames={"EURUSD": walk(500)}, memory_limit_bytes=2**20)


def test_grid_with_no_valid_point_is_refused() -> None:
    """fast >= slow everywhere: the first reason is shown."""
    request = BacktestRequest(grid={"fast": (30, 40), "slow": (10, 20)})
    with pytest.raises(ConfigError, match=r"no valid parameter combination.*must be smaller"):
        run_grid(request, frames={"EURUSD": walk(500)})


def test_unknown_rank_metric_is_refused() -> None:
    """--rank-by takes a metric name from the registry."""
    request = BacktestRequest(grid={"fast": (3, 4)}, rank_by="luck")
    with pytest.raises(ConfigError, match="--rank-by 'luck'"):
        run_grid(request, frames={"EURUSD": walk(500)})


def test_symbol_is_read_from_the_file_name() -> None:
    """HistData and Lean names carry the pair; ambiguous names give None."""
    assert "EURUSD" == symbol_from_path(Path("DAT_ASCII_EURUSD_M1_2017.csv.gz"))
    assert "USDJPY" == symbol_from_path(Path("lean/usd_jpy.csv"))
    assert symbol_from_path(Path("candles.csv")) is None


def test_several_symbols_need_a_symbol_placeholder_in_the_file(tmp_path: Path) -> None:
    """One file cannot hold two symbols' bars."""
    request = BacktestRequest(symbols=("EURUSD", "GBPUSD"), data=tmp_path / "x.csv")
    with pytest.raises(ConfigError, match=r"\{symbol\}"):
        run_backtest(request)


def test_missing_file_is_a_data_error(tmp_path: Path) -> None:
    """The missing path is named."""
    with pytest.raises(DataError, match="no such file"):
        run_backtest(BacktestRequest(data=tmp_path / "DAT_ASCII_EURUSD_M1_2017.csv"))


def test_bundled_sample_runs_without_any_data_flag() -> None:
    """No --data and no --from-store: the bundled EURUSD H1 sample is traded."""
    result = run_backtest(BacktestRequest(end="2017-03-01"))
    assert (("EURUSD",), "H1") == (result.data.symbols, result.data.timeframe)
    assert 0 < len(result.trades)


def test_store_candles_are_backtested_with_from_store(tmp_path: Path) -> None:
    """Candles imported into the SQLite store run like the file they came from."""
    from forexd.feeds.candle_import import import_candles
    from forexd.feeds.loaders import bundled_sample_path

    db = tmp_path / "forexd.db"
    import_candles(db, bundled_sample_path(), "EURUSD", "H1", "auto")
    window = {"start": "2017-01-01", "end": "2017-04-01"}
    stored = run_backtest(
        BacktestRequest(symbols=("EURUSD",), from_store=True, db_path=db, timeframe="H1", **window)
    )
    filed = run_backtest(BacktestRequest(data=bundled_sample_path(), **window))
    assert filed.fills.price.tolist() == stored.fills.price.tolist()
    assert filed.metrics == stored.metrics


SHARED_M1 = (
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fx" / "histdata_m1_2017"
)


def test_symbol_placeholder_loads_one_file_per_symbol_and_resamples() -> None:
    """DAT_ASCII_{symbol}_M1 for two symbols, run as H1 bars over one week."""
    if not SHARED_M1.is_dir():
        pytest.skip(f"real FX data not found at {SHARED_M1} (../shared is absent)")
    result = run_backtest(
        BacktestRequest(
            symbols=("EURUSD", "GBPUSD"),
            data=SHARED_M1 / "DAT_ASCII_{symbol}_M1_2017.csv.gz",
            timeframe="H1",
            start="2017-03-06",
            end="2017-03-11",
            params={"fast": 3, "slow": 8},
        )
    )
    assert (("EURUSD", "GBPUSD"), "H1") == (result.data.symbols, result.data.timeframe)
    # Monday 00:00 UTC to the Friday close at 17:00 New York (22:00 UTC): 4 x 24 + 22 hours
    assert [118, 118] == [len(s) for s in result.data.series]
    assert {0, 1} == set(result.fills.code.tolist())


def test_data_coarser_than_the_timeframe_is_refused() -> None:
    """H1 candles cannot be run as M5."""
    with pytest.raises(DataError, match="coarser than --timeframe M5"):
        run_backtest(BacktestRequest(timeframe="M5"), frames={"EURUSD": walk(100)})
