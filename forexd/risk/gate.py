"""The risk gate: every order passes here between the strategy and the broker.

Policy, in the order the checks run:

1. Bad input (zero units, a non-finite or non-positive price, non-finite equity, an unknown
   symbol) is denied, never guessed at.
2. The equity is observed: the FX day rolls (re-arming the daily loss limit), the equity
   peak moves up, and a breach changes state — drawdown halts the account until an operator
   resumes it, the daily loss limit switches it to ``reducing`` until the next FX day.
3. States: a halted account or symbol denies everything. In ``reducing`` an order that would
   grow |position| is denied; one that would flip the position is clipped to a flatten.
4. The order rate applies to every order, reducing ones included: a loop that keeps sending
   orders is a bug to stop, whatever the orders do.
5. An order that shrinks |position| without flipping it skips the exposure limits: getting
   out must always be possible, even when limits were lowered below what is held.
6. Anything else is fitted to the limits: a new position beyond ``max_open_positions`` is
   denied; for units, gross and net exposure the order is *clipped* to the largest size that
   fits (rounded toward zero to whole units), and denied only if nothing fits. The
   ``Approval`` names the limit that clipped it. Net exposure (long notional − short
   notional, USD) is limited in the order's own direction only: an order that moves net
   toward zero is a hedge and passes even while net is still beyond the limit.

Clipping rather than denying was chosen because a strategy's target is a desired position:
getting as close as the limits allow is what the strategy would do itself next bar, and
denying would leave it further from its target for no gain in safety.

``check`` is synchronous and allocation-light: one pass over the held positions (at most one
per tradable instrument) and an amortised O(1) trim of the order-rate window.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

from forexd.domain import Instrument
from forexd.risk.book import RiskBook
from forexd.risk.limits import ORDER_RATE_WINDOW_NS, DenialReason, StateCause, TradingState

_REDUCING, _HALTED = TradingState.REDUCING, TradingState.HALTED


class Holding(NamedTuple):
    """A symbol's current position and its latest (mark) price."""

    units: int
    price: float


@dataclass(frozen=True, slots=True)
class Approval:
    """The order may be sent with ``units`` (which may be smaller than requested).

    Attributes:
        symbol: the order's symbol.
        units: signed units to send; same sign as ``requested``, never larger in magnitude.
        requested: the signed units asked for.
        clipped_by: the limit that made ``units`` smaller, or ``None``.
        reducing: the approved order shrinks |position| without flipping it.
    """

    symbol: str
    units: int
    requested: int
    clipped_by: DenialReason | None
    reducing: bool


@dataclass(frozen=True, slots=True)
class Denial:
    """The order must not be sent."""

    symbol: str
    requested: int
    reason: DenialReason
    detail: str


class RiskGate(RiskBook):
    """Checks orders against :class:`RiskLimits` and keeps the account's risk state.

    One gate per account, shared by all its symbols; it is not thread-safe and needs no
    lock because it is only called from the event loop (or a backtest's single thread).

    Args:
        limits: the limits to enforce.
        state: the state to resume from (``RiskState.fresh`` for a new account).
        instruments: tradable instruments by canonical symbol.
    """

    def check(
        self,
        symbol: str,
        units: int,
        *,
        price: float,
        positions: Mapping[str, Holding],
        equity: float,
        now_ns: int,
        stop_distance: float | None = None,
    ) -> Approval | Denial:
        """Approve (possibly clipped) or deny an order; record it in the state.

        Args:
            symbol: canonical symbol (``EURUSD``).
            units: signed units wanted (> 0 buys the base currency).
            price: current price of ``symbol`` (quote per base), used for its exposure.
            positions: every open position with its mark price; ``symbol`` may be absent.
            equity: account equity now (USD), balance plus unrealised P&L.
            now_ns: current time (epoch ns; the simulated clock in a backtest).
            stop_distance: the order's stop-loss distance (price units), ``None`` without
                one; with ``require_stop`` an order that is not reducing needs one.

        Returns:
            An :class:`Approval` the caller must send as is (it took an order-rate slot),
            or a :class:`Denial`.
        """
        inst = self._instruments.get(symbol)
        if inst is None:
            return self._deny(symbol, units, DenialReason.UNKNOWN_SYMBOL, "not tradable")
        if units == 0 or not (0.0 < price < math.inf) or not math.isfinite(equity):
            detail = f"units={units} price={price} equity={equity}"
            return self._deny(symbol, units, DenialReason.BAD_INPUT, detail)
        self._observe(equity, now_ns)

        account = self._account
        if account.state is _HALTED:
            reason = (
                DenialReason.DRAWDOWN
                if account.cause is StateCause.DRAWDOWN
                else DenialReason.ACCOUNT_HALTED
            )
            return self._deny(symbol, units, reason, account.note)
        sym = self._symbols.get(symbol)
        if sym is not None and sym.state is _HALTED:
            return self._deny(symbol, units, DenialReason.SYMBOL_HALTED, sym.note)

        held = positions.get(symbol)
        pos = 0 if held is None else held.units
        reducing = (pos > 0 and -pos <= units < 0) or (pos < 0 and 0 < units <= -pos)
        allowed = units
        clipped_by: DenialReason | None = None
        if not reducing and self._limits.require_stop and stop_distance is None:
            detail = "[risk] require_stop is on; give the strategy a stop (stop_atr)"
            return self._deny(symbol, units, DenialReason.NO_STOP, detail)
        if not reducing:
            restrict: DenialReason | None = None
            if account.state is _REDUCING:
                restrict = (
                    DenialReason.DAILY_LOSS
                    if account.cause is StateCause.DAILY_LOSS
                    else DenialReason.REDUCING_ONLY
                )
            elif sym is not None and sym.state is _REDUCING:
                restrict = DenialReason.REDUCING_ONLY
            if restrict is not None:
                if pos == 0 or (units > 0) == (pos > 0):
                    return self._deny(symbol, units, restrict, f"position {pos}, order {units}")
                allowed, clipped_by, reducing = -pos, restrict, True

        max_rate = self._limits.max_orders_per_minute
        if max_rate is not None:
            orders = self._orders
            cutoff = now_ns - ORDER_RATE_WINDOW_NS
            while orders and orders[0] <= cutoff:
                orders.popleft()
            if len(orders) >= max_rate:
                detail = f"{len(orders)} orders in the last 60 s (limit {max_rate})"
                return self._deny(symbol, units, DenialReason.ORDER_RATE, detail)

        at_stop: DenialReason | None = None
        cap = self._limits.max_risk_at_stop_usd
        if not reducing and cap is not None and stop_distance is not None:
            # Risk at stop: the new position's units × the stop distance, in USD.
            per_unit = inst.to_account(stop_distance, price)
            most = _floor_units(cap, per_unit, abs(pos + units)) if per_unit > 0 else 0
            if most < abs(pos + units):
                sign = 1 if units > 0 else -1
                if most == 0 or (pos != 0 and (pos > 0) == (sign > 0) and most <= abs(pos)):
                    detail = f"{abs(pos + units)} units × {stop_distance} > {cap} USD"
                    return self._deny(symbol, units, DenialReason.MAX_RISK_AT_STOP, detail)
                units, at_stop = sign * most - pos, DenialReason.MAX_RISK_AT_STOP
        if not reducing:
            fitted = self._fit(symbol, inst, pos, units, price, positions)
            if isinstance(fitted, Denial):
                return fitted
            allowed, clipped_by = fitted
            clipped_by = clipped_by or at_stop
            # A clipped flip can end up a plain reduction; report what is actually sent.
            reducing = (pos > 0 and -pos <= allowed < 0) or (pos < 0 and 0 < allowed <= -pos)

        self._orders.append(now_ns)
        self._approvals += 1
        if clipped_by is not None:
            self._clipped += 1
        self._touch(now_ns)
        return Approval(symbol, allowed, units, clipped_by, reducing)

    def _fit(
        self,
        symbol: str,
        inst: Instrument,
        pos: int,
        units: int,
        price: float,
        positions: Mapping[str, Holding],
    ) -> tuple[int, DenialReason | None] | Denial:
        """Largest order toward ``units`` that the exposure limits allow."""
        lim = self._limits
        sign = 1 if units > 0 else -1
        want = abs(units)
        # Magnitudes beyond this cannot bind; bounding them keeps floor() away from inf.
        bound = want + abs(pos)
        allowed, binding = want, None

        if lim.max_open_positions is not None and pos == 0:
            n_open = sum(1 for s, h in positions.items() if h.units and s != symbol)
            if n_open >= lim.max_open_positions:
                detail = f"{n_open} open (limit {lim.max_open_positions})"
                return self._deny(symbol, units, DenialReason.MAX_OPEN_POSITIONS, detail)

        if lim.max_units_per_symbol is not None:
            cap = lim.max_units_per_symbol - sign * pos
            if cap < allowed:
                allowed, binding = cap, DenialReason.MAX_UNITS

        max_gross, max_net = lim.max_gross_exposure_usd, lim.max_net_exposure_usd
        if max_gross is not None or max_net is not None:
            per_unit = inst.notional_account(1, price)  # USD notional of one unit
            gross_others = net_others = 0.0
            for other, h in positions.items():
                if other == symbol or not h.units:
                    continue
                other_inst = self._instruments.get(other)
                if other_inst is None:
                    detail = f"held position in unknown symbol {other}"
                    return self._deny(symbol, units, DenialReason.UNKNOWN_SYMBOL, detail)
                notional = other_inst.notional_account(h.units, h.price)
                gross_others += notional
                net_others += notional if h.units > 0 else -notional
            if max_gross is not None:
                # |per_unit*new| <= max_gross - gross_others; the binding side is sign*new.
                cap = _floor_units(max_gross - gross_others, per_unit, bound) - sign * pos
                if cap < allowed:
                    allowed, binding = cap, DenialReason.MAX_GROSS_EXPOSURE
            if max_net is not None:
                # |net_others + per_unit*new| <= max_net, solved for sign*new.
                head = max_net - sign * net_others
                cap = _floor_units(head, per_unit, bound) - sign * pos
                if cap < allowed:
                    allowed, binding = cap, DenialReason.MAX_NET_EXPOSURE

        # allowed starts at want > 0, so it can only be <= 0 once a limit has bound.
        if binding is not None and allowed <= 0:
            detail = f"position {pos}, order {units}: no room left"
            return self._deny(symbol, units, binding, detail)
        return sign * allowed, binding

    def _deny(self, symbol: str, units: int, reason: DenialReason, detail: str) -> Denial:
        self._denials[reason] += 1
        self._version += 1
        return Denial(symbol, units, reason, detail)


def _floor_units(headroom_usd: float, per_unit_usd: float, bound: int) -> int:
    """``floor(headroom / per_unit)`` clamped to ``[-bound, bound]``, never above the room.

    The division can round up by one ulp across an integer; the product check takes that
    unit back so an approved order never exceeds a limit by float error.
    """
    q = headroom_usd / per_unit_usd
    if q >= bound:
        return bound
    if q <= -bound:
        return -bound
    n = math.floor(q)
    if n * per_unit_usd > headroom_usd:
        n -= 1
    return n
