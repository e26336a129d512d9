"""What a backtest produced, and how it is assembled from either engine's fills."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from forexd.backtest.account import AccountPath, build_account
from forexd.backtest.data import MarketData
from forexd.backtest.metrics import Metrics, compute_metrics
from forexd.backtest.positions import PositionPath
from forexd.backtest.request import BacktestRequest
from forexd.backtest.trades import FillTable, OpenPosition, TradeTable, build_trades, replay_all
from forexd.domain import ns_to_iso
from forexd.domain.bars import IntArray


@dataclass(frozen=True, slots=True)
class BacktestResult:
    """One backtest run.

    Attributes:
        request: what was asked (with the grid point's parameters merged into ``params``
            when the run is a sweep's best).
        engine: ``event`` or ``vectorised``.
        params: the strategy's effective parameters (defaults filled in).
        data: the bars that were traded.
        fills: every fill.
        trades: closed round trips.
        open_positions: positions still held after the last bar.
        account: equity, exposure and financing per bar.
        metrics: the figures.
        commission: total commission paid, USD.
        elapsed_s: wall time of the engine and the bookkeeping (not the data loading).
        denials: orders the risk gate refused (event engine with a gate only).
    """

    request: BacktestRequest
    engine: str
    params: dict[str, Any]
    data: MarketData
    fills: FillTable
    trades: TradeTable
    open_positions: tuple[OpenPosition, ...]
    account: AccountPath
    metrics: Metrics
    commission: float
    elapsed_s: float
    denials: int = 0

    @property
    def financing(self) -> float:
        """Total rollover booked, USD (positive = earned)."""
        return float(self.account.financing[-1]) if len(self.account.financing) else 0.0

    @property
    def final_balance(self) -> float:
        """Cash after the run: the ledger's balance plus financing."""
        base = float(self.fills.balance_after[-1]) if len(self.fills) else self.initial_balance
        return base + self.financing

    @property
    def initial_balance(self) -> float:
        """Account start, USD."""
        return self.request.initial_balance

    def to_dict(self, *, trades: bool = True) -> dict[str, Any]:
        """JSON-ready summary: run description, metrics, money, trades, open positions."""
        d = self.data
        out: dict[str, Any] = {
            "engine": self.engine,
            "strategy": self.request.strategy,
            "params": self.params,
            "symbols": list(d.symbols),
            "timeframe": d.timeframe,
            "first_bar": ns_to_iso(int(d.ts[0])),
            "last_bar": ns_to_iso(int(d.ts[-1])),
            "costs": {
                "spread_pips": self.request.costs.spread_pips,
                "slippage_pips": self.request.costs.slippage_pips,
                "commission_per_million": self.request.costs.commission_per_million,
            },
            "rollover_pct_per_year": dict(self.request.rollover),
            "metrics": self.metrics.to_dict(),
            "initial_balance": self.initial_balance,
            "final_balance": self.final_balance,
            "final_equity": self.metrics.final_equity,
            "commission": self.commission,
            "financing": self.financing,
            "fills": len(self.fills),
            "denials": self.denials,
            "elapsed_s": round(self.elapsed_s, 4),
            "open_positions": [p.to_dict() for p in self.open_positions],
        }
        if trades:
            out["trades"] = self.trades.records(d.symbols)
        return out


def assemble(
    request: BacktestRequest,
    engine: str,
    params: dict[str, Any],
    data: MarketData,
    fills: FillTable,
    paths: list[tuple[IntArray, PositionPath]] | None = None,
    denials: int = 0,
) -> BacktestResult:
    """Trades, account and metrics from an engine's fills (the same for both engines).

    ``elapsed_s`` is left at 0; the caller that timed the run sets it.
    """
    if paths is None:
        paths = replay_all(data, fills)
    trades, still_open = build_trades(data, fills, paths)
    rates = {s: request.rollover_rate(s) for s in data.symbols}
    account = build_account(data, fills, paths, request.initial_balance, rates)
    metrics = compute_metrics(
        account.equity,
        data.ts,
        request.initial_balance,
        trades.net_pnl,
        account.exposed,
        data.timeframe,
    )
    return BacktestResult(
        request=request,
        engine=engine,
        params=params,
        data=data,
        fills=fills,
        trades=trades,
        open_positions=tuple(still_open),
        account=account,
        metrics=metrics,
        # a running sum, like Ledger.commission_paid (np.sum adds pairwise)
        commission=float(np.cumsum(fills.commission)[-1]) if len(fills) else 0.0,
        elapsed_s=0.0,
        denials=denials,
    )
