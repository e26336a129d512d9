"""The backtest's execution, one bar at a time, with the decision supplied from outside.

An RL agent's reward must be the P&L the backtest would book, so this module does not model
costs, fills or limits itself: it drives the backtest's own objects — :class:`SymbolCore`
(target minus held, the order gate for position limits, the sizer) and :class:`Ledger`
(fills at the next bar's open with half the spread and the slippage on the adverse side,
commission per million) — in the order ``backtest.engine`` drives them. Per bar ``t``:
the core decides on bar ``t``'s close with the agent's target, then the ledger fills that
order at bar ``t + 1``'s open and marks to its close. The step's P&L is the change of
``Ledger.equity`` over that bar, so the P&L of an episode telescopes to the backtest's
final equity minus its start (``tests/test_rl.py`` checks it to the cent).

Pure and synchronous; no gymnasium here (the environment in :mod:`forexd.rl.env`
wraps this), so comparison workers and metrics use it without the ``rl`` extra.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from forexd.actors.core import OrderGate, Sizer, SymbolCore
from forexd.brokers.ledger import CostModel, Ledger
from forexd.domain import Bar, Instrument, get_instrument
from forexd.domain.bars import BarHistory, FloatArray, IntArray
from forexd.models.metrics import TradingMetrics, positions_from_proba, summarise
from forexd.models.trainconfig import Candles
from forexd.models.trained import TrainedModel

ACTION_SIGNS = (-1, 0, 1)
"""Action index to target sign: 0 short, 1 flat, 2 long (the order of the classes)."""

WARM_BARS = 64  # bars of history given to the core before the first decision (sizer ATR)


class TargetStrategy:
    """A strategy whose decision is set from outside before each bar (the agent's action)."""

    name: ClassVar[str] = "rl_target"

    def __init__(self) -> None:
        self.target: int | None = None

    @property
    def warmup_bars(self) -> int:
        """No history is needed to follow a target."""
        return WARM_BARS

    def decide(self, history: BarHistory, position_units: int) -> int | None:
        """The target the agent chose for this bar."""
        return self.target


@dataclass(frozen=True, slots=True)
class SimResult:
    """A simulated run over bars ``start..start + len(pnl)``.

    Attributes:
        equity: account equity after bar ``start`` and after each following bar (USD).
        pnl: equity change per step (USD), ``len(equity) - 1`` values.
        costs: spread, slippage and commission paid per step (USD).
        held: signed units held through each step's bar.
        fills: fills booked.
    """

    equity: FloatArray
    pnl: FloatArray
    costs: FloatArray
    held: IntArray
    fills: int

    @property
    def total_pnl(self) -> float:
        """Final equity minus the starting equity (USD)."""
        return float(self.equity[-1] - self.equity[0])

    def metrics(self, periods_per_year: float) -> TradingMetrics:
        """Trading metrics of the run (per-bar returns on equity, after costs)."""
        prev = self.equity[:-1]
        net = self.pnl / prev
        cost = self.costs / prev
        positions = np.sign(self.held).astype(np.float64)
        return summarise(net, cost, positions, periods_per_year)


class BarSim:
    """Steps the backtest's core and ledger through ``candles`` (see the module note).

    Args:
        symbol: the instrument.
        candles: the bars, oldest first.
        costs: the simulated broker's costs (the backtest's ``CostModel``).
        units: position size of a long or short action (before the sizer).
        initial_balance: account start, USD.
        gate: order gate for position limits (as in the backtest), or ``None``.
        sizer: position sizer (as the actor's), or ``None`` for fixed ``units``.
    """

    def __init__(
        self,
        symbol: str,
        candles: Candles,
        *,
        costs: CostModel,
        units: int,
        initial_balance: float = 100_000.0,
        gate: OrderGate | None = None,
        sizer: Sizer | None = None,
    ) -> None:
        if units < 1:
            raise ValueError(f"units must be >= 1, got {units}")
        self.instrument: Instrument = get_instrument(symbol)
        self.candles = candles
        self.costs = costs
        self.units = units
        self.initial_balance = initial_balance
        self.gate = gate
        self.sizer = sizer
        self._cols = (
            candles.ts.tolist(),
            candles.open.tolist(),
            candles.high.tolist(),
            candles.low.tolist(),
            candles.close.tolist(),
        )
        self._strategy = TargetStrategy()
        self.ledger = Ledger(initial_balance, costs)
        self.core = SymbolCore(self.instrument, self._strategy, gate)
        self.t = 0
        self.equity = initial_balance
        self.fills = 0

    def bar(self, i: int) -> Bar:
        """Bar ``i`` of the candles."""
        ts, o, h, lo, c = self._cols
        return Bar(self.instrument.symbol, ts[i], o[i], h[i], lo[i], c[i])

    def reset(self, start: int) -> None:
        """A fresh account, flat, at bar ``start`` (its open/close seen, no decision yet)."""
        if not 0 <= start < len(self.candles) - 1:
            raise ValueError(f"start {start} leaves no bar to trade in {len(self.candles)}")
        self.ledger = Ledger(self.initial_balance, self.costs)
        self.core = SymbolCore(self.instrument, self._strategy, self.gate)
        self.core.sizer = self.sizer
        for j in range(max(0, start - WARM_BARS), start):
            self.core.warm(self.bar(j))
        self.t = start
        self.ledger.on_bar(self.bar(start))  # the backtest's first bar: nothing pending
        self.equity = self.ledger.equity
        self.fills = 0

    @property
    def held_units(self) -> int:
        """Units held now."""
        return self.core.position_units

    def step(self, sign: int) -> tuple[float, float]:
        """Decide ``sign`` (-1/0/+1) on bar ``t``, trade through bar ``t + 1``.

        Returns:
            ``(pnl, costs)`` of the step in USD.

        Raises:
            IndexError: bar ``t + 1`` does not exist.
        """
        if self.t + 1 >= len(self.candles):
            raise IndexError(f"no bar after {self.t}: the candles end there")
        self._strategy.target = sign * self.units
        order = self.core.on_bar(self.bar(self.t))
        if order is not None:
            self.ledger.submit(order)
        self.t += 1
        cost = 0.0
        adverse = (self.costs.spread_pips / 2 + self.costs.slippage_pips) * self.instrument.pip_size
        for fill in self.ledger.on_bar(self.bar(self.t)):
            self.core.on_fill(fill)
            self.fills += 1
            spread = self.instrument.to_account(abs(fill.units) * adverse, fill.price)
            cost += fill.commission + spread
        equity = self.ledger.equity
        pnl = equity - self.equity
        self.equity = equity
        return pnl, cost


def simulate_signs(sim: BarSim, start: int, signs: IntArray | list[int]) -> SimResult:
    """Trade ``signs[i]`` on bar ``start + i`` (needs bars up to ``start + len(signs)``)."""
    sim.reset(start)
    n = len(signs)
    equity = np.empty(n + 1)
    pnl, costs = np.empty(n), np.empty(n)
    held = np.empty(n, dtype=np.int64)
    equity[0] = sim.equity
    for i, sign in enumerate(np.asarray(signs, dtype=np.int64).tolist()):
        pnl[i], costs[i] = sim.step(int(sign))
        held[i] = sim.held_units
        equity[i + 1] = sim.equity
    return SimResult(equity, pnl, costs, held, sim.fills)


def model_signs(
    model: TrainedModel, x: FloatArray, start: int, end: int, threshold: float
) -> IntArray:
    """Target signs of ``model`` for bars ``start..end - 1`` (with its context before).

    An agent's sign is its deterministic action; a classifier's is the walk-forward's
    threshold policy. Rows without a prediction stay flat.
    """
    ctx = model.context_rows
    rows = x[max(0, start - ctx) : end]
    proba = model.predict_proba(rows)[-(end - start) :]
    if model.backend == "rl":
        signs = np.zeros(end - start, dtype=np.int64)
        ok = np.isfinite(proba).all(axis=1)
        signs[ok] = model.classes[np.argmax(proba[ok], axis=1)]
        return signs
    pos = positions_from_proba(
        proba, model.classes, long_threshold=threshold, short_threshold=threshold
    )
    out: IntArray = pos.astype(np.int64)
    return out
