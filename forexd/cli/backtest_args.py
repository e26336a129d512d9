"""The ``forexd backtest`` flags, and the request they describe.

:mod:`forexd.cli.backtest` calls :func:`add_backtest_arguments` on its sub-parser and
:func:`request_from_args` on the parsed namespace. Choices and defaults come from the
registries they describe (strategies, timeframes, candle formats, rank metrics, the paper
broker's cost defaults), so the command line cannot drift from them.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from forexd.backtest.metrics import RANK_METRICS
from forexd.backtest.request import (
    ALL_SYMBOLS,
    ENGINES,
    BacktestRequest,
    parse_assignments,
    parse_range,
    parse_value,
)
from forexd.brokers.ledger import CostModel
from forexd.cli.options import add_candle_format, add_json, add_timeframe
from forexd.cli.parser import check_param_names
from forexd.config import BrokerConfig
from forexd.domain import get_instrument
from forexd.domain.strategy_registry import BUILTIN_STRATEGIES, STRATEGY_NAMES, strategy_class
from forexd.errors import ConfigError, UnknownSymbolError


def _broker_default(name: str) -> Any:
    return BrokerConfig.model_fields[name].default


def add_backtest_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every ``forexd backtest`` flag to ``parser``."""
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--data",
        type=Path,
        metavar="FILE",
        help="candle file ({symbol} in the name is replaced per symbol); "
        "default: the bundled EURUSD H1 sample",
    )
    source.add_argument(
        "--from-store", action="store_true", help="read candles from the SQLite store"
    )
    add_candle_format(parser)
    parser.add_argument(
        "--symbol",
        action="append",
        default=[],
        help="symbol to trade (repeat for a portfolio); default: from the file name",
    )
    add_timeframe(
        parser,
        default=None,
        help="bar timeframe; finer data is resampled to it (default: the data's own)",
    )
    parser.add_argument("--strategy", default="sma_cross", choices=STRATEGY_NAMES)
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="strategy parameter (repeatable), e.g. --param fast=10",
    )
    parser.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="NAME=START:STOP:STEP",
        help="sweep a parameter, STOP included (repeatable; or NAME=V1,V2,...)",
    )
    parser.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="--grid on Ray: auto, host:port of the head, or local (docs/scaling.md)",
    )
    parser.add_argument(
        "--rank-by",
        default="sharpe",
        choices=tuple(RANK_METRICS),
        help="metric that ranks a sweep (default: sharpe)",
    )
    parser.add_argument(
        "--engine",
        default="event",
        choices=ENGINES,
        help="event: the live core and ledger bar by bar (default); vectorised: numpy, "
        "same fills (sweeps always use it when the strategy allows)",
    )
    parser.add_argument(
        "--spread-pips", type=float, default=_broker_default("spread_pips"), help="full spread"
    )
    parser.add_argument(
        "--slippage-pips",
        type=float,
        default=_broker_default("slippage_pips"),
        help="adverse slippage per fill",
    )
    parser.add_argument(
        "--commission-per-million",
        type=float,
        default=_broker_default("commission_per_million"),
        help="USD per 1M USD of notional",
    )
    parser.add_argument("--start", help="first bar time, ISO 8601 (UTC if naive)")
    parser.add_argument("--end", help="stop before this time, ISO 8601 (UTC if naive)")
    parser.add_argument(
        "--initial-balance",
        type=float,
        default=_broker_default("initial_balance"),
        help="account start, USD",
    )
    parser.add_argument(
        "--rollover",
        action="append",
        default=[],
        metavar="[SYMBOL=]PCT",
        help="annual interest differential in percent (base minus quote) a long earns per "
        "night at 17:00 New York; repeat per symbol, or give one for all",
    )
    add_json(parser)
    parser.add_argument("--report", type=Path, metavar="OUT.html", help="write an HTML report")
    parser.add_argument(
        "--png-dir", type=Path, help="also write the report's figures as PNG files here"
    )


def _rollover(items: list[str]) -> dict[str, float]:
    rates: dict[str, float] = {}
    for item in items:
        key, sep, value = item.rpartition("=")
        try:
            symbol = get_instrument(key).symbol if sep else ALL_SYMBOLS
        except UnknownSymbolError as exc:
            raise ConfigError(f"--rollover {item!r}: {exc}") from None
        number = parse_value(value.strip())
        if isinstance(number, bool) or not isinstance(number, int | float):
            raise ConfigError(f"--rollover {item!r}: expected [SYMBOL=]PERCENT, e.g. EURUSD=-1.2")
        rates[symbol] = float(number)
    return rates


def request_from_args(ns: argparse.Namespace, *, db_path: Path | None = None) -> BacktestRequest:
    """The request described by parsed ``forexd backtest`` flags.

    Args:
        ns: the namespace from a parser set up by :func:`add_backtest_arguments`.
        db_path: the store (``forexd.db`` of the resolved data directory), needed with
            ``--from-store``.

    Raises:
        ConfigError: a malformed flag, an unknown strategy or parameter, a value out of
            range, or contradictory flags.
    """
    grid = dict(parse_range(spec) for spec in ns.grid)
    params = parse_assignments(ns.param, "--param")
    if ns.strategy in BUILTIN_STRATEGIES:  # a plugin (module:Class) is checked when built
        cls = strategy_class(ns.strategy, "--strategy")
        check_param_names("--param", ns.strategy, cls.Params, params)
        check_param_names("--grid", ns.strategy, cls.Params, grid)
    request = BacktestRequest(
        symbols=tuple(ns.symbol),
        strategy=ns.strategy,
        params=params,
        grid=grid,
        rank_by=ns.rank_by,
        data=ns.data,
        data_format=ns.data_format,
        from_store=bool(ns.from_store),
        db_path=db_path,
        timeframe=ns.timeframe,
        start=ns.start,
        end=ns.end,
        costs=CostModel(ns.spread_pips, ns.slippage_pips, ns.commission_per_million),
        initial_balance=ns.initial_balance,
        rollover=_rollover(ns.rollover),
        engine=ns.engine,
    )
    if request.from_store and db_path is None:
        raise ConfigError("--from-store: the store location is unknown (no data directory)")
    if ns.png_dir is not None and ns.report is None:
        raise ConfigError("--png-dir writes the report's figures; give --report too")
    request.validate()
    return request
