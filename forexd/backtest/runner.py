"""Running one backtest: load and check the data, pick the engine, assemble the result."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import pandas as pd
from pydantic import BaseModel

from forexd.actors.core import OrderGate
from forexd.backtest.data import (
    MarketData,
    check_warmup,
    conform_timeframe,
    load_frames,
    market_data,
)
from forexd.backtest.engine import run_event_driven
from forexd.backtest.request import BacktestRequest
from forexd.backtest.result import BacktestResult, assemble
from forexd.backtest.vectorised import run_vectorised
from forexd.domain import get_instrument
from forexd.errors import ConfigError
from forexd.feeds.frames import clip_frame
from forexd.strategies.base import Strategy, VectorisedStrategy


def prepare_data(
    request: BacktestRequest, frames: Mapping[str, pd.DataFrame] | None = None
) -> MarketData:
    """The request's bars: loaded as it says, or taken from ``frames`` (tests, notebooks).

    With ``frames`` the request's ``symbols`` pick among them (all when empty) and
    ``start``/``end`` still apply.

    Raises:
        ConfigError: a requested symbol is not among ``frames``; bad dates.
        DataError: no usable bars.
    """
    if frames is None:
        loaded, _ = load_frames(request)
    else:
        normal = {get_instrument(k).symbol: v for k, v in frames.items()}
        wanted = [get_instrument(s).symbol for s in request.symbols] or list(normal)
        missing = [s for s in wanted if s not in normal]
        if missing:
            raise ConfigError(f"--symbol {', '.join(missing)}: no candles were given for it")
        loaded = {s: clip_frame(normal[s], request.start, request.end) for s in wanted}
    return market_data(conform_timeframe(loaded, request.timeframe), request.timeframe)


def strategy_params(strategy: Strategy) -> dict[str, Any]:
    """The strategy's effective parameters (defaults included) as plain values."""
    params = getattr(strategy, "params", None)
    if isinstance(params, BaseModel):
        return params.model_dump()
    return {}


def describe(request: BacktestRequest, params: Mapping[str, Any]) -> str:
    """``sma_cross(fast=10, slow=20, units=10000)`` for messages."""
    return f"{request.strategy}({', '.join(f'{k}={v}' for k, v in params.items())})"


def run_on_data(
    request: BacktestRequest,
    data: MarketData,
    overrides: Mapping[str, Any] | None = None,
    gate: OrderGate | None = None,
) -> BacktestResult:
    """One backtest of the request's strategy on already prepared bars.

    Raises:
        ConfigError: bad parameters (see :func:`run_strategies` for the rest).
        DataError: too few bars for the strategy's warm-up.
    """
    strategies = [request.build_strategy(overrides) for _ in data.series]
    return run_strategies(request, data, strategies, gate)


def run_strategies(
    request: BacktestRequest,
    data: MarketData,
    strategies: Sequence[Strategy],
    gate: OrderGate | None = None,
) -> BacktestResult:
    """One backtest with given strategy objects (one per symbol, in ``data.series`` order).

    ``request`` supplies the engine, costs, balance and rollover; its strategy name and
    parameters are only used as labels. This is the entry point for strategies that are not
    in the registry (tests, research code).

    Raises:
        ConfigError: the vectorised engine asked for a strategy without a vectorised form,
            or together with a risk gate.
        DataError: too few bars for the strategy's warm-up.
    """
    params = strategy_params(strategies[0])
    check_warmup(data, max(s.warmup_bars for s in strategies), describe(request, params))
    t0 = time.perf_counter()
    if request.engine == "vectorised":
        if gate is not None:
            raise ConfigError("--engine vectorised cannot apply a risk gate; use --engine event")
        vectorised = [s for s in strategies if isinstance(s, VectorisedStrategy)]
        if len(vectorised) != len(strategies):
            raise ConfigError(
                f"--engine vectorised: strategy {request.strategy!r} has no vectorised form "
                "(targets()); use --engine event"
            )
        fills, paths = run_vectorised(data, vectorised, request.costs, request.initial_balance)
        result = assemble(request, "vectorised", params, data, fills, paths)
    else:
        run = run_event_driven(data, strategies, request.costs, request.initial_balance, gate)
        denials = sum(c.denials for c in run.cores)
        result = assemble(request, "event", params, data, run.fills, denials=denials)
    return replace(result, elapsed_s=time.perf_counter() - t0)


def run_backtest(
    request: BacktestRequest,
    *,
    frames: Mapping[str, pd.DataFrame] | None = None,
    gate: OrderGate | None = None,
) -> BacktestResult:
    """Run one backtest as the request says.

    Args:
        request: what to run (its ``grid`` must be empty; see ``run_grid``).
        frames: candle frames by symbol to use instead of loading ``request.data``.
        gate: optional risk gate for the event-driven engine (as in the daemon).

    Raises:
        ConfigError: a bad request (unknown strategy or parameter, value out of range...).
        DataError: missing, malformed or too short data.
    """
    if request.grid:
        raise ConfigError("this request has --grid values; run it as a sweep (run_grid)")
    request.validate()
    data = prepare_data(request, frames)
    return run_on_data(request, data, gate=gate)
