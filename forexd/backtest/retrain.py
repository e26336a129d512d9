"""Retraining inside a backtest, as the daemon's trainer would, on the simulated clock.

Same learning code (:func:`~forexd.rl.trainer.train_cycle`), same schedule and the
same :func:`~forexd.models.champion.promote` as :mod:`forexd.daemon.trainer`; the winner
is handed to the strategy and trades from the next bar. Differences from live, by
construction: nothing is written to a registry, and live training finishes some bars after
it starts (it runs in the background) while here it is instantaneous in simulated time. A
failing cycle is recorded and the champion keeps trading, as live.
"""

from __future__ import annotations

from typing import Any

from forexd.domain import get_instrument, ns_to_iso
from forexd.errors import ForexdError
from forexd.models.champion import LiveChampion, RetrainSchedule, promote
from forexd.models.trainconfig import Candles, periods_per_year
from forexd.rl.trainer import train_cycle
from forexd.strategies.base import Strategy
from forexd.strategies.ml import MlStrategy


class BacktestTrainer:
    """Retrains one symbol's ``ml`` strategy on the bars a backtest has replayed so far.

    Args:
        strategy: the strategy that trades (it receives every promoted champion).
        symbol: the instrument.
    """

    def __init__(self, strategy: MlStrategy, symbol: str) -> None:
        self.strategy = strategy
        self.symbol = symbol
        p = strategy.params
        self._schedule = RetrainSchedule(p.lookback_candles, p.retrain_every_bars)
        self.cycles: list[dict[str, Any]] = []
        self.last_error: str | None = None

    def wants_training(self, bars_seen: int) -> bool:
        """Whether a scheduled cycle is due after this bar."""
        return self._schedule.due(bars_seen, has_champion=self.strategy.champion is not None)

    def train(self, candles: Candles, *, timeframe_seconds: int, n_jobs: int = 1) -> dict[str, Any]:
        """Run one cycle on ``candles`` (up to and including this bar); return its outcome.

        Args:
            candles: the symbol's bars so far.
            timeframe_seconds: bar length, for annualising the out-of-sample metrics.
            n_jobs: threads for the model (the backtest's compute budget).
        """
        params = self.strategy.params
        cycle_id = f"{self.symbol}-bt{len(self.cycles) + 1}"
        until = ns_to_iso(int(candles.ts[-1]))
        outcome: dict[str, Any] = {"cycle_id": cycle_id, "until": until}
        current = self.strategy.champion
        try:
            result = train_cycle(
                candles,
                params,
                symbol=self.symbol,
                pip_size=get_instrument(self.symbol).pip_size,
                n_jobs=n_jobs,
                bars_per_year=periods_per_year(timeframe_seconds),
                champion=current.champion if current is not None else None,
            )
            metrics = result.metrics()
            info = {
                "model_id": cycle_id,
                "kind": params.model.kind,
                "trained_at": until,
                "oos_log_loss": metrics.get("oos_log_loss"),
                "oos_sharpe": metrics.get("oos_sharpe"),
            }
            promoted: LiveChampion | None = promote(result, cycle_id, info)
            if promoted is not None:
                self.strategy.set_champion(promoted)
        except ForexdError as exc:
            self.last_error = outcome["error"] = f"{type(exc).__name__}: {exc}"
            self.cycles.append(outcome)
            return outcome
        self.last_error = None
        outcome["decision"] = "promoted" if promoted is not None else "kept_champion"
        outcome["decision_reason"] = result.comparison.reason
        self.cycles.append(outcome)
        return outcome


def backtest_trainer(strategy: Strategy, symbol: str) -> BacktestTrainer | None:
    """The trainer a strategy needs in a backtest (``None`` for one without a model)."""
    return BacktestTrainer(strategy, symbol) if isinstance(strategy, MlStrategy) else None
