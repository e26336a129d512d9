"""The account behind the fake OANDA server: prices, orders, trades and transactions.

Pure and single-threaded (the server serialises calls with one lock). Amounts are
``Decimal`` and are stored already formatted as the strings OANDA sends; times are epoch
nanoseconds and are formatted per ``Accept-Datetime-Format`` when a response is rendered
(:func:`render`). Section numbers (§) refer to ``shared/docs/oanda-v20-subset.md``.

Orders are executed by ``fake_oanda_orders.py`` and closed by ``fake_oanda_close.py``;
every fill is booked by ``fake_oanda_fill.py``.
Deliberate simplifications: no financing, no 250 ms price conflation, no
``maximumPositionSize``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

D = Decimal
MONEY = D("0.0001")
ZERO = D(0)
MARGIN_RATE = D("0.05")
MAX_ORDER_UNITS = D(100_000_000)
START_BALANCE = D(100_000)
NS = 1_000_000_000
SINCEID_PAGE = 1000  # §7: one sinceid answer has been seen to hold at most 1000
TIME_KEYS = {"time", "openTime", "createTime", "filledTime", "cancelledTime", "createdTime"}
REJECT_MESSAGES = {
    "UNITS_INVALID": "The units specified is invalid",
    "UNITS_PRECISION_EXCEEDED": "The units specified contains more precision than is allowed",
    "UNITS_LIMIT_EXCEEDED": "The units specified exceeds the maximum number of units allowed",
    "TIME_IN_FORCE_INVALID": "The time-in-force specified is invalid",
    "CLIENT_ORDER_ID_ALREADY_EXISTS": (
        "The client Order ID specified is already assigned to another pending Order"
    ),
    "PRICE_BOUND_PRECISION_EXCEEDED": "The price bound specified contains too many digits",
    "INSUFFICIENT_MARGIN": "The Account has insufficient margin for this Order",
    "CLOSEOUT_POSITION_DOESNT_EXIST": "The Position requested to be closed out does not exist",
    "CLOSE_TRADE_UNITS_EXCEED_TRADE_SIZE": "The units specified exceed the size of the Trade",
}


@dataclass(frozen=True)
class Spec:
    """One instrument as ``/instruments`` describes it (§9)."""

    name: str
    display_precision: int
    pip_location: int
    trade_units_precision: int = 0
    maximum_order_units: Decimal = MAX_ORDER_UNITS
    margin_rate: Decimal = MARGIN_RATE

    @property
    def base(self) -> str:
        return self.name[:3]

    @property
    def quote(self) -> str:
        return self.name[4:]

    def px(self, value: Decimal) -> str:
        """A price as OANDA writes it, at ``displayPrecision``."""
        return f"{value:.{self.display_precision}f}"


SPECS = {
    n: Spec(n, 3 if n.endswith("JPY") else 5, -2 if n.endswith("JPY") else -4)
    for n in ("EUR_USD", "GBP_USD", "AUD_USD", "NZD_USD", "USD_JPY", "USD_CHF", "USD_CAD")
}


@dataclass(frozen=True)
class Tick:
    """One price: time (epoch ns), best bid, best ask."""

    ts: int
    bid: Decimal
    ask: Decimal


@dataclass
class Trade:
    """An open or closed trade (§6)."""

    id: str
    instrument: str
    price: Decimal
    open_time: int
    initial_units: Decimal
    current_units: Decimal
    realized_pl: Decimal = ZERO
    client_extensions: dict[str, Any] | None = None
    # Dependent orders (issue 12): kind -> {"id", "price" | "distance", "best"}.
    dependents: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Book:
    """The fake account."""

    account_id: str
    balance: Decimal = START_BALANCE
    hedging: bool = False
    commission_per_million: Decimal = ZERO
    now_ns: int = 0
    user_id: int = 1234567
    halted: bool = False
    ticks: dict[str, list[Tick]] = field(default_factory=dict)
    transactions: list[dict[str, Any]] = field(default_factory=list)
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    client_orders: dict[str, str] = field(default_factory=dict)
    trades: dict[str, Trade] = field(default_factory=dict)
    next_reject: str | None = None
    next_cancel: str | None = None
    realized: Decimal = ZERO
    commission_paid: Decimal = ZERO

    def __post_init__(self) -> None:
        self.txn("CREATE", None, homeCurrency="USD", balance=money(self.balance))

    # -- market -------------------------------------------------------------------------

    def push(self, instrument: str, ts: int, bid: Decimal, ask: Decimal) -> Tick:
        """Record a price; the server clock never goes back."""
        tick = Tick(ts, bid, ask)
        self.ticks.setdefault(instrument, []).append(tick)
        self.now_ns = max(self.now_ns, ts)
        return tick

    def tick(self, instrument: str) -> Tick | None:
        """The latest price of an instrument."""
        series = self.ticks.get(instrument)
        return series[-1] if series else None

    def price_message(self, instrument: str, tick: Tick, tradeable: bool = True) -> dict[str, Any]:
        """A ``PRICE`` line of the pricing stream (§4), also a fill's ``fullPrice``."""
        spec = SPECS[instrument]
        return {
            "type": "PRICE",
            "instrument": instrument,
            "time": tick.ts,
            "tradeable": tradeable,
            "bids": [{"price": spec.px(tick.bid), "liquidity": 10_000_000}],
            "asks": [{"price": spec.px(tick.ask), "liquidity": 10_000_000}],
            "closeoutBid": spec.px(tick.bid),
            "closeoutAsk": spec.px(tick.ask),
        }

    # -- valuation ----------------------------------------------------------------------

    def usd(self, instrument: str, amount_quote: Decimal, price: Decimal) -> Decimal:
        return amount_quote if SPECS[instrument].quote == "USD" else amount_quote / price

    def unit_value(self, instrument: str) -> Decimal:
        tick = self.tick(instrument)
        if SPECS[instrument].base == "USD" or tick is None:
            return D(1)
        return (tick.bid + tick.ask) / 2

    def unrealized(self, trade: Trade) -> Decimal:
        tick = self.tick(trade.instrument)
        if tick is None:
            return ZERO
        close = tick.bid if trade.current_units > 0 else tick.ask
        return self.usd(trade.instrument, (close - trade.price) * trade.current_units, close)

    def open_trades(self) -> list[Trade]:
        """Open trades, oldest first."""
        return sorted((t for t in self.trades.values() if t.current_units), key=lambda t: int(t.id))

    def margin(self, extra: tuple[str, Decimal] | None = None) -> Decimal:
        exposure: dict[str, list[Decimal]] = {}
        for t in self.open_trades():
            exposure.setdefault(t.instrument, []).append(t.current_units)
        if extra is not None:
            exposure.setdefault(extra[0], []).append(extra[1])
        total = ZERO
        for inst, units in exposure.items():
            size = sum((abs(u) for u in units), ZERO) if self.hedging else abs(sum(units, ZERO))
            total += size * self.unit_value(inst) * SPECS[inst].margin_rate
        return total

    def summary(self) -> dict[str, Any]:
        """``GET /summary``'s ``account`` (§2)."""
        unrealized = sum((self.unrealized(t) for t in self.open_trades()), ZERO)
        nav = self.balance + unrealized
        margin = self.margin()
        available = max(ZERO, nav - margin)
        trades = self.open_trades()
        return {
            "id": self.account_id,
            "currency": "USD",
            "balance": money(self.balance),
            "NAV": money(nav),
            "unrealizedPL": money(unrealized),
            "pl": money(self.realized),
            "resettablePL": money(self.realized),
            "financing": money(ZERO),
            "commission": money(self.commission_paid),
            "marginRate": "0.05",
            "marginUsed": money(margin),
            "marginAvailable": money(available),
            "withdrawalLimit": money(available),
            "positionValue": money(margin / D("0.05")),
            "marginCloseoutPercent": f"{(margin / 2 / nav if nav else ZERO):.5f}",
            "openTradeCount": len(trades),
            "openPositionCount": len({t.instrument for t in trades}),
            "pendingOrderCount": 0,
            "hedgingEnabled": self.hedging,
            "createdByUserID": self.user_id,
            "createdTime": self.transactions[0]["time"],
            "lastTransactionID": self.last_id,
        }

    def positions(self) -> list[dict[str, Any]]:
        """``GET /openPositions``'s ``positions`` (§6): a flat side has only zeros."""
        out = []
        for inst in sorted({t.instrument for t in self.open_trades()}):
            pos: dict[str, Any] = {"instrument": inst}
            total_unrealized = ZERO
            for side, sign in (("long", 1), ("short", -1)):
                legs = [t for t in self.open_trades() if t.instrument == inst]
                legs = [t for t in legs if (t.current_units > 0) == (sign > 0)]
                units = sum((t.current_units for t in legs), ZERO)
                unrealized = sum((self.unrealized(t) for t in legs), ZERO)
                total_unrealized += unrealized
                data: dict[str, Any] = {
                    "units": units_str(units),
                    "pl": money(ZERO),
                    "unrealizedPL": money(unrealized),
                    "resettablePL": money(ZERO),
                    "financing": money(ZERO),
                }
                if legs:
                    avg = sum(t.price * t.current_units for t in legs) / units
                    data["averagePrice"] = SPECS[inst].px(avg)
                    data["tradeIDs"] = [t.id for t in legs]
                pos[side] = data
            pos.update(pl=money(ZERO), unrealizedPL=money(total_unrealized))
            pos.update(resettablePL=money(ZERO), financing=money(ZERO), commission=money(ZERO))
            out.append(pos)
        return out

    def trade_view(self, t: Trade) -> dict[str, Any]:
        """A Trade as ``/openTrades`` shows it (§6)."""
        view: dict[str, Any] = {
            "id": t.id,
            "instrument": t.instrument,
            "price": SPECS[t.instrument].px(t.price),
            "openTime": t.open_time,
            "state": "OPEN" if t.current_units else "CLOSED",
            "initialUnits": units_str(t.initial_units),
            "currentUnits": units_str(t.current_units),
            "realizedPL": money(t.realized_pl),
            "unrealizedPL": money(self.unrealized(t)),
            "financing": money(ZERO),
        }
        if t.client_extensions:
            view["clientExtensions"] = t.client_extensions
        return view

    # -- transactions -------------------------------------------------------------------

    @property
    def last_id(self) -> str:
        """``lastTransactionID``."""
        return str(self.transactions[-1]["id"])

    def txn(self, kind: str, batch: str | None, **fields: Any) -> dict[str, Any]:
        txn_id = str(len(self.transactions) + 1)
        txn = {
            "id": txn_id,
            "time": self.now_ns,
            "userID": self.user_id,
            "accountID": self.account_id,
            "batchID": batch or txn_id,
            "type": kind,
            **fields,
        }
        self.transactions.append(txn)
        return txn

    def transaction(self, txn_id: str) -> dict[str, Any] | None:
        """One transaction by id."""
        if not txn_id.isdigit() or not 0 < int(txn_id) <= len(self.transactions):
            return None
        return self.transactions[int(txn_id) - 1]

    def since(self, txn_id: int) -> list[dict[str, Any]]:
        """Transactions after ``txn_id``, oldest first, one page."""
        return self.transactions[max(0, txn_id) : max(0, txn_id) + SINCEID_PAGE]

    def order(self, spec: str) -> dict[str, Any] | None:
        """An order by OANDA id or ``@clientID``."""
        order_id = self.client_orders.get(spec[1:]) if spec.startswith("@") else spec
        return self.orders.get(order_id or "")


# -- formatting -------------------------------------------------------------------------


def money(value: Decimal) -> str:
    """An amount in the account currency, 4 decimals."""
    return str(value.quantize(MONEY, rounding=ROUND_HALF_EVEN))


def units_str(value: Decimal) -> str:
    """Units as a signed decimal string (whole units for FX)."""
    return str(value.quantize(D(1)))


def decimals(value: Decimal) -> int:
    """Digits after the decimal point."""
    exponent = value.as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def to_decimal(value: Any) -> Decimal | None:
    """A decimal sent as a string, or ``None`` (numbers as JSON numbers are refused)."""
    if not isinstance(value, str):
        return None
    try:
        parsed = D(value)
    except InvalidOperation:
        return None
    return parsed if parsed.is_finite() else None


def format_time(ts_ns: int, fmt: str) -> str:
    """Epoch ns as ``RFC3339`` (nanoseconds, ``Z``) or ``UNIX`` (decimal seconds)."""
    seconds, frac = divmod(ts_ns, NS)
    if fmt == "UNIX":
        return f"{seconds}.{frac:09d}"
    stamp = datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{frac:09d}Z"


def parse_time(text: str) -> int:
    """Either DateTime format to epoch ns (raises ValueError)."""
    if "T" not in text:
        whole, _, frac = text.partition(".")
        return int(whole) * NS + int((frac + "0" * 9)[:9])
    base, _, frac = text.rstrip("Z").partition(".")
    parsed = datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    return int(parsed.timestamp()) * NS + int((frac + "0" * 9)[:9])


def render(obj: Any, fmt: str) -> Any:
    """Copy of a response with every time field formatted per ``fmt``."""
    if isinstance(obj, Mapping):
        return {
            k: format_time(v, fmt) if k in TIME_KEYS and isinstance(v, int) else render(v, fmt)
            for k, v in obj.items()
        }
    if isinstance(obj, list):
        return [render(v, fmt) for v in obj]
    return obj
