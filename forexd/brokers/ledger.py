"""The simulated execution core shared by the paper broker and the backtest.

Pure and synchronous. A market order waits for the next price of its symbol and fills at
that bar's open, plus half the spread and the slippage on the side that hurts (buys pay
more, sells receive less); commission is charged per million USD of notional. The same
object therefore gives the same fills whether a replay drives it through the daemon or a
backtest drives it directly.

Protective exits (an order's :class:`~forexd.domain.Protection`) are simulated here too,
so paper trading and both backtest engines share one rule. When an order that opens, grows
or flips a position fills, its stop-loss (and take-profit) levels are set from the fill
price and rounded to the instrument's precision; a position closed or flipped by an order
loses the old levels, as OANDA cancels a trade's dependent orders when the trade closes.
On every later bar of the symbol, and on the fill bar itself after the fill at the open:

1. **Gap**: the bar opens at or beyond a level (long: ``open <= stop`` or
   ``open >= take_profit``) → the whole position exits at the open.
2. **Intrabar**: otherwise, the bar's range touching the stop (long: ``low <= stop``)
   exits at the stop; else touching the target (``high >= take_profit``) exits at the
   target. A bar touching both exits at the **stop**: bars do not say which came first,
   and assuming the loss never flatters a backtest.
3. **Trailing**: after the checks, a trailing stop moves to ``high - distance`` (long) or
   ``low + distance`` (short) if that is tighter; it never loosens and only takes effect on
   the next bar (within a bar the order of high and low is unknown).

An exit is a market fill at the level (or the open) with the usual spread, slippage and
commission; its ``Fill.reason`` is ``stop_loss``, ``take_profit`` or ``trailing_stop`` and
its client id is the entry order's id plus ``:`` and the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from forexd.domain import (
    EXIT_STOP_LOSS,
    EXIT_TAKE_PROFIT,
    EXIT_TRAILING_STOP,
    Bar,
    Fill,
    Instrument,
    Order,
    Position,
    Protection,
    get_instrument,
)


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
class Protective:
    """The live stop-loss/take-profit levels of one symbol's position.

    Attributes:
        client_id: the order whose fill placed them.
        side: +1 for a long position, -1 for a short one.
        stop: stop-loss price.
        take_profit: take-profit price, or ``None``.
        trail: trailing distance (price units), or ``None`` for a fixed stop.
    """

    client_id: str
    side: int
    stop: float
    take_profit: float | None = None
    trail: float | None = None

    @classmethod
    def place(
        cls, client_id: str, side: int, price: float, p: Protection, instrument: Instrument
    ) -> Protective:
        """Levels for a fill at ``price`` on ``side``, rounded as a broker quotes them."""
        digits = instrument.price_precision
        tp = p.take_profit_distance
        return cls(
            client_id,
            side,
            round(price - side * p.stop_distance, digits),
            None if tp is None else round(price + side * tp, digits),
            p.stop_distance if p.trailing else None,
        )

    def exit_at(self, bar: Bar) -> tuple[float, str] | None:
        """Reference price and reason of the exit this bar triggers (module rule 1-2)."""
        stop, tp, side = self.stop, self.take_profit, self.side
        stop_reason = EXIT_TRAILING_STOP if self.trail is not None else EXIT_STOP_LOSS
        if side > 0:
            if bar.open <= stop:
                return bar.open, stop_reason
            if tp is not None and bar.open >= tp:
                return bar.open, EXIT_TAKE_PROFIT
            if bar.low <= stop:
                return stop, stop_reason
            if tp is not None and bar.high >= tp:
                return tp, EXIT_TAKE_PROFIT
            return None
        if bar.open >= stop:
            return bar.open, stop_reason
        if tp is not None and bar.open <= tp:
            return bar.open, EXIT_TAKE_PROFIT
        if bar.high >= stop:
            return stop, stop_reason
        if tp is not None and bar.low <= tp:
            return tp, EXIT_TAKE_PROFIT
        return None

    def trail_after(self, bar: Bar, digits: int) -> None:
        """Tighten a trailing stop from this bar's extreme (module rule 3)."""
        if self.trail is None:
            return
        if self.side > 0:
            self.stop = max(self.stop, round(bar.high - self.trail, digits))
        else:
            self.stop = min(self.stop, round(bar.low + self.trail, digits))


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
    protective: dict[str, Protective] = field(default_factory=dict)
    fill_balances: list[float] = field(default_factory=list)
    """Balance after each fill of the last :meth:`on_bar` that filled (for fill tables)."""

    def submit(self, order: Order) -> None:
        """Queue a market order; it fills on the next bar of its symbol."""
        self.pending[order.client_id] = order

    def on_bar(self, bar: Bar) -> list[Fill]:
        """Fill the symbol's pending orders at ``bar.open``, then its protective exits.

        Only a bar *after* the order's own bar fills it: after a restart the feed may
        replay bars the order was decided after, and a fill there would be a price from
        before the decision. Protective exits follow the module's intrabar rule. Marks
        the symbol to ``bar.close``.
        """
        fills: list[Fill] = []
        if self.pending:
            ts = bar.ts
            due = [c for c, o in self.pending.items() if o.symbol == bar.symbol and o.bar_ts < ts]
            if due:
                self.fill_balances = []
            for cid in due:
                order = self.pending.pop(cid)
                fills.append(self._fill(order, bar.open, bar.ts))
                self.fill_balances.append(self.balance)
        if self.protective:
            guard = self.protective.get(bar.symbol)
            if guard is not None:
                hit = guard.exit_at(bar)
                if hit is not None:
                    if not fills:
                        self.fill_balances = []
                    fills.append(self._exit(guard, bar, *hit))
                    self.fill_balances.append(self.balance)
                else:
                    guard.trail_after(bar, get_instrument(bar.symbol).price_precision)
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
        if order.protection is None and not self.protective:
            self.apply(fill)  # nothing protected anywhere: the plain path
            return fill
        before = self.units(order.symbol)
        self.apply(fill)
        self.protect(order, before, fill.price)
        return fill

    def protect(self, order: Order, before: int, price: float) -> None:
        """Update the symbol's protective levels after ``order`` filled at ``price``.

        A position that is now flat, or flipped by an order without protection, loses its
        levels; an order with protection that opened, grew or flipped the position sets
        new ones from its fill price; a reduction keeps the levels it had.
        """
        after = self.units(order.symbol)
        if after == 0:
            self.protective.pop(order.symbol, None)
            return
        flipped = before != 0 and (before > 0) != (after > 0)
        grew = abs(after) > abs(before) and not flipped
        if order.protection is not None and (flipped or grew or before == 0):
            side = 1 if after > 0 else -1
            self.protective[order.symbol] = Protective.place(
                order.client_id, side, price, order.protection, get_instrument(order.symbol)
            )
        elif flipped:
            self.protective.pop(order.symbol, None)

    def _exit(self, guard: Protective, bar: Bar, reference: float, reason: str) -> Fill:
        """Close the whole position at ``reference`` for a protective exit."""
        del self.protective[bar.symbol]
        instrument = get_instrument(bar.symbol)
        units = -self.units(bar.symbol)
        price = self.costs.fill_price(instrument, reference, units)
        self.fill_seq += 1
        fill = Fill(
            fill_id=f"P{self.fill_seq}",
            client_id=f"{guard.client_id}:{reason}",
            symbol=bar.symbol,
            units=units,
            price=price,
            commission=self.costs.commission(instrument, units, price),
            ts=bar.ts,
            reason=reason,
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
