"""The simulated execution core shared by the paper broker and the backtest.

Pure and synchronous. A market order waits for the next price of its symbol and fills at
that bar's open, plus half the spread and the slippage on the side that hurts (buys pay
more, sells receive less); commission is charged per million USD of notional. The same
object therefore gives the same fills whether a replay drives it through the daemon or a
backtest drives it directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from forexd.domain import Bar, Fill, Instrument, Order, Position, get_instrument


@dataclass(frozen=True, slots=True)
class CostModel:
    """Trading costs of the simulated broker."""

    spread_pips: float = 0.0
    slippage_pips: float = 0.0
    commission_per_million: float = 0.0

    def fill_price(self, instrument: Instrument, reference: float, units: int) -> float:
        """Price paid (buy) or received (sell) for a market order at ``reference``."""
        adverse = (self.spread_pips / 2 + self.slippage_pips) * instrument.pip_size
        price = reference + adverse if units > 0 else reference - adverse
        return round(price, instrument.price_precision + 1)

    def commission(self, instrument: Instrument, units: int, price: float) -> float:
        """Commission in USD for ``units`` at ``price``."""
        if self.commission_per_million == 0.0:
            return 0.0
        return instrument.notional_account(units, price) * self.commission_per_million / 1e6


@dataclass(slots=True)
class Ledger:
    """Positions, pending orders and cash of one simulated account (USD)."""

    initial_balance: float
    costs: CostModel = field(default_factory=CostModel)
    positions: dict[str, Position] = field(default_factory=dict)
    pending: dict[str, Order] = field(default_factory=dict)
    last_price: dict[str, float] = field(default_factory=dict)
    realized: float = 0.0
    commission_paid: float = 0.0
    fill_seq: int = 0

    def submit(self, order: Order) -> None:
        """Queue a market order; it fills on the next bar of its symbol."""
        self.pending[order.client_id] = order

    def on_bar(self, bar: Bar) -> list[Fill]:
        """Fill the symbol's pending orders at ``bar.open``; mark to ``bar.close``.

        Only a bar *after* the order's own bar fills it: after a restart the feed may
        replay bars the order was decided after, and a fill there would be a price from
        before the decision.
        """
        fills: list[Fill] = []
        if self.pending:
            ts = bar.ts
            due = [c for c, o in self.pending.items() if o.symbol == bar.symbol and o.bar_ts < ts]
            for cid in due:
                order = self.pending.pop(cid)
                fills.append(self._fill(order, bar.open, bar.ts))
        self.last_price[bar.symbol] = bar.close
        return fills

    def _fill(self, order: Order, reference: float, ts: int) -> Fill:
        instrument = get_instrument(order.symbol)
        price = self.costs.fill_price(instrument, reference, order.units)
        commission = self.costs.commission(instrument, order.units, price)
        self.fill_seq += 1
        fill = Fill(
            fill_id=f"P{self.fill_seq}",
            client_id=order.client_id,
            symbol=order.symbol,
            units=order.units,
            price=price,
            commission=commission,
            ts=ts,
        )
        self.apply(fill)
        return fill

    def apply(self, fill: Fill) -> float:
        """Book a fill (also used to rebuild the ledger from stored fills)."""
        pos = self.positions.get(fill.symbol)
        if pos is None:
            pos = self.positions[fill.symbol] = Position(fill.symbol)
        realized = pos.apply(fill, get_instrument(fill.symbol))
        self.realized += realized
        self.commission_paid += fill.commission
        self.fill_seq = max(self.fill_seq, _seq_of(fill.fill_id))
        return realized

    @property
    def balance(self) -> float:
        """Cash: initial balance plus realised P&L minus commission."""
        return self.initial_balance + self.realized - self.commission_paid

    def unrealized(self, symbol: str | None = None) -> float:
        """Open P&L in USD at the last seen close (one symbol or all)."""
        total = 0.0
        for sym, pos in self.positions.items():
            if symbol is not None and sym != symbol:
                continue
            price = self.last_price.get(sym)
            if price is not None and pos.units:
                total += pos.unrealized(price, get_instrument(sym))
        return total

    @property
    def equity(self) -> float:
        """Balance plus open P&L."""
        return self.balance + self.unrealized()

    def units(self, symbol: str) -> int:
        """Net units held in ``symbol``."""
        pos = self.positions.get(symbol)
        return pos.units if pos else 0


def _seq_of(fill_id: str) -> int:
    digits = fill_id[1:]
    return int(digits) if fill_id.startswith("P") and digits.isdigit() else 0
