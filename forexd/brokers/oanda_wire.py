"""What crosses the wire to OANDA v20: names, decimals, datetimes, errors, ids, fills.

Pure helpers and wire types shared by the transport (:mod:`forexd.brokers.oanda_api`),
the broker and the feed: one home for both. OANDA sends every price, amount and id as a
JSON *string*; they are read with ``Decimal`` and never through ``float`` until they
leave this adapter. DateTimes come as
``RFC3339`` (nanoseconds) or ``UNIX`` (decimal seconds) per ``Accept-Datetime-Format``;
:func:`parse_time` takes both, so a response is read right whichever was asked for.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from forexd.brokers.base import AccountSnapshot
from forexd.domain import NS_PER_S, Fill, Protection, get_instrument
from forexd.errors import BrokerError, ForexdError

CLIENT_ID_MAX_CHARS = 32  # our guess: OANDA documents no limit
INSTALL_ID_CHARS = 6
_FOREXD_ID = re.compile(r"([A-Z]{6})-(\d{19})-(\d{1,3})")
_PLAIN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_INSTALL_ID = re.compile(rf"[a-z0-9]{{{INSTALL_ID_CHARS}}}")

DatetimeFormat = Literal["RFC3339", "UNIX"]


class OandaApiError(BrokerError):
    """OANDA answered with an error status (or a 201 that cancelled an order).

    Attributes:
        status: the HTTP status.
        error_code: ``errorCode`` from the body, when present.
        reason: the reject or cancel reason (``rejectReason`` / ``reason``), when present.
    """

    def __init__(
        self, message: str, *, status: int, error_code: str | None = None, reason: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.reason = reason


class OandaUnreachableError(BrokerError):
    """No usable answer from OANDA: connection failures, timeouts, 429/5xx past retries."""


class RequestNotSentError(OandaUnreachableError):
    """A request failed before any byte reached OANDA (connect error, pool timeout)."""


class ResponseLostError(OandaUnreachableError):
    """A request was sent but its response did not arrive; its effect is unknown."""


def mask_account_id(account_id: str) -> str:
    """An account id as users see it: only the last group kept (``***-***-***-001``).

    The same form as the log redaction (:mod:`forexd.daemon.redact`), so a message reads
    the same on stderr, in ``ctl status`` and in the JSON log.
    """
    head, _, last = account_id.rpartition("-")
    return "***-***-***-" + last if head else "***"


def malformed(what: str, detail: object) -> BrokerError:
    """The error for a response that does not have the documented shape."""
    return BrokerError(f"OANDA sent a malformed {what} ({detail!r:.120}); report it with the log")


# -- names, numbers, times -----------------------------------------------------------------


def to_instrument(symbol: str) -> str:
    """forexd symbol to OANDA instrument name: ``EURUSD`` -> ``EUR_USD``.

    Raises:
        UnknownSymbolError: the symbol is not one forexd trades.
    """
    sym = get_instrument(symbol).symbol
    return f"{sym[:3]}_{sym[3:]}"


def to_symbol(instrument: str) -> str | None:
    """OANDA instrument name to forexd symbol (``None`` for instruments forexd ignores)."""
    try:
        return get_instrument(instrument).symbol
    except ForexdError:
        return None


def decimal_field(obj: Mapping[str, Any], key: str, what: str) -> Decimal:
    """Read a decimal sent as a JSON string (OANDA never sends prices as numbers)."""
    raw = obj.get(key)
    try:
        return Decimal(str(raw))
    except InvalidOperation:
        raise malformed(f"{what}.{key}", raw) from None


def parse_time(text: str) -> int:
    """Parse an OANDA DateTime (``UNIX`` or ``RFC3339``, up to 9 decimals) to epoch ns.

    Raises:
        BrokerError: the text is neither format.
    """
    try:
        if "T" not in text:
            whole, _, frac = text.partition(".")
            return int(whole) * NS_PER_S + int((frac + "000000000")[:9])
        body = text[:-1] if text.endswith("Z") else text
        offset = ""
        if not text.endswith("Z"):
            body, offset = body[:-6], body[-6:]
        base, _, frac = body.partition(".")
        parsed = datetime.strptime(base + (offset or "+00:00"), "%Y-%m-%dT%H:%M:%S%z")
        return int(parsed.timestamp()) * NS_PER_S + int((frac + "000000000")[:9])
    except ValueError:
        raise malformed("DateTime", text) from None


def format_time(ts_ns: int, fmt: DatetimeFormat) -> str:
    """Format epoch ns as an OANDA DateTime in ``fmt`` (nanosecond precision)."""
    seconds, frac = divmod(ts_ns, NS_PER_S)
    if fmt == "UNIX":
        return f"{seconds}.{frac:09d}"
    stamp = datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{frac:09d}Z"


def api_error(status: int, body: Mapping[str, Any], what: str) -> OandaApiError:
    """Turn an error answer into an :class:`OandaApiError` with a message that helps.

    The message quotes OANDA's ``errorCode``/``errorMessage`` and, for 401/403, says which
    setting to check; it never contains the token.
    """
    code = body.get("errorCode")
    text = body.get("errorMessage")
    reason = None
    for key, value in body.items():
        if key.endswith("RejectTransaction") and isinstance(value, Mapping):
            reason = value.get("rejectReason")
    detail = " ".join(str(p) for p in (code or reason, text) if p)
    message = f"OANDA {what}: HTTP {status}" + (f" {detail}" if detail else "")
    if status == 401:
        message += (
            "; the access token was refused: check broker.oanda.token "
            "(FOREXD_BROKER__OANDA__TOKEN) and that broker.oanda.environment matches it"
        )
    elif status == 403:
        message += "; the token may not do this on this account (check its permissions)"
    return OandaApiError(
        message,
        status=status,
        error_code=str(code) if code else None,
        reason=str(reason) if reason else None,
    )


# -- client ids ------------------------------------------------------------------------


def oanda_client_id(client_id: str, installation_id: str = "") -> str:
    """The ``clientExtensions.id`` sent for a forexd client id (see the module note).

    forexd's ``{symbol}-{bar_ts ns}-{seq}`` is written with the bar time in whole
    seconds (``abc123-EURUSD-1704186000-0``, 25-28 characters); anything else is kept
    when it fits, and hashed when it does not.
    """
    prefix = f"{installation_id}-" if installation_id else ""
    match = _FOREXD_ID.fullmatch(client_id)
    if match is not None and int(match[2]) % NS_PER_S == 0:
        plain = f"{prefix}{match[1]}-{int(match[2]) // NS_PER_S}-{match[3]}"
    else:
        plain = prefix + client_id
    if len(plain) <= CLIENT_ID_MAX_CHARS and _PLAIN_ID.fullmatch(plain):
        return plain
    head = f"{prefix}h"
    digest = hashlib.sha256(client_id.encode()).hexdigest()
    return head + digest[: CLIENT_ID_MAX_CHARS - len(head)]


def check_installation_id(value: str) -> str:
    """Validate an installation id (``INSTALL_ID_CHARS`` of ``a-z0-9``).

    Raises:
        BrokerError: it is malformed (the file in the data dir was edited or damaged).
    """
    if not _INSTALL_ID.fullmatch(value):
        raise BrokerError(
            f"installation id {value!r} is not {INSTALL_ID_CHARS} characters of a-z0-9; "
            "restore the installation_id file of this data dir (never reuse another's)"
        )
    return value


# -- protection on fill ----------------------------------------------------------------

PROTECTIVE_FILL_REASONS = {
    "STOP_LOSS_ORDER": "stop_loss",
    "TAKE_PROFIT_ORDER": "take_profit",
    "TRAILING_STOP_LOSS_ORDER": "trailing_stop",
}
"""``ORDER_FILL.reason`` of a trade's dependent order → forexd's ``Fill.reason``."""


def on_fill_details(
    protection: Protection, symbol: str, units: int, reference: float | None
) -> dict[str, Any]:
    """The ``MarketOrderRequest`` fields that attach ``protection`` to the trade it opens.

    v20: ``stopLossOnFill`` / ``trailingStopLossOnFill`` take a ``distance`` from the fill
    price (so the stop is placed from the real fill), ``takeProfitOnFill`` only a
    ``price``, computed here from ``reference`` (the last close the daemon saw). All GTC.

    Raises:
        BrokerError: a distance rounds to zero at the pair's precision, or a take-profit
            is asked for before any price is known.
    """
    inst = get_instrument(symbol)
    digits = inst.price_precision

    def distance(value: float, what: str) -> str:
        text = f"{value:.{digits}f}"
        if Decimal(text) <= 0:
            raise BrokerError(
                f"{what} distance {value!r} for {symbol} rounds to 0 at {digits} decimals; "
                "use a larger stop_atr"
            )
        return text

    stop = distance(protection.stop_distance, "stop-loss")
    out: dict[str, Any] = {}
    key = "trailingStopLossOnFill" if protection.trailing else "stopLossOnFill"
    out[key] = {"distance": stop, "timeInForce": "GTC"}
    tp = protection.take_profit_distance
    if tp is not None:
        if reference is None:
            raise BrokerError(f"no price seen yet for {symbol}: cannot place a take-profit")
        price = reference + tp if units > 0 else reference - tp
        out["takeProfitOnFill"] = {"price": f"{price:.{digits}f}", "timeInForce": "GTC"}
    return out


# -- transactions ----------------------------------------------------------------------


def fill_from_transaction(txn: Mapping[str, Any], client_id: str) -> Fill:
    """Build a :class:`Fill` from an ``ORDER_FILL`` transaction.

    The price is the units-weighted price of the trades it opened, reduced and closed (the
    fill's top-level ``price`` is deprecated and only a fallback). ``commission`` is the
    fill's cost in the account currency: commission plus guaranteed-execution fee, minus
    financing (OANDA reports commission as a positive charge and financing signed).

    Raises:
        BrokerError: the transaction is not a fill or lacks documented fields.
    """
    if txn.get("type") != "ORDER_FILL":
        raise malformed("fill transaction", txn.get("type"))
    symbol = to_symbol(str(txn.get("instrument")))
    if symbol is None:
        raise malformed("fill instrument", txn.get("instrument"))
    units = decimal_field(txn, "units", "orderFillTransaction")
    legs = [txn[k] for k in ("tradeOpened", "tradeReduced") if isinstance(txn.get(k), Mapping)]
    legs += [leg for leg in txn.get("tradesClosed") or () if isinstance(leg, Mapping)]
    size = sum((abs(decimal_field(leg, "units", "trade")) for leg in legs), Decimal(0))
    if size:
        value = sum(
            abs(decimal_field(leg, "units", "trade")) * decimal_field(leg, "price", "trade")
            for leg in legs
        )
        price = value / size
    else:
        price = decimal_field(txn, "fullVWAP" if "fullVWAP" in txn else "price", "fill")
    cost = Decimal(0)
    for key, sign in (("commission", 1), ("guaranteedExecutionFee", 1), ("financing", -1)):
        if txn.get(key) is not None:
            cost += sign * decimal_field(txn, key, "fill")
    return Fill(
        fill_id=str(txn["id"]),
        client_id=client_id,
        symbol=symbol,
        units=int(units),
        price=float(price),
        commission=float(cost),
        ts=parse_time(str(txn["time"])),
        reason=PROTECTIVE_FILL_REASONS.get(str(txn.get("reason")), ""),
    )


def account_snapshot(summary: Mapping[str, Any]) -> AccountSnapshot:
    """Balance, NAV (as equity), unrealized P&L and margin used of an account summary."""
    return AccountSnapshot(
        balance=float(decimal_field(summary, "balance", "account")),
        equity=float(decimal_field(summary, "NAV", "account")),
        unrealized_pnl=float(decimal_field(summary, "unrealizedPL", "account")),
        margin_used=float(decimal_field(summary, "marginUsed", "account")),
    )


def positions_from(payload: Mapping[str, Any]) -> tuple[dict[str, tuple[int, float]], set[str]]:
    """Net units and average price per forexd symbol of an ``/openPositions`` answer.

    Returns:
        The positions, and the names of instruments forexd does not trade (skipped).
    """
    out: dict[str, tuple[int, float]] = {}
    ignored: set[str] = set()
    for pos in payload.get("positions") or ():
        name = str(pos.get("instrument"))
        symbol = to_symbol(name)
        if symbol is None:
            ignored.add(name)
            continue
        net = Decimal(0)
        price = 0.0
        for side in ("long", "short"):
            leg = pos.get(side) or {}
            units = decimal_field(leg, "units", side)
            net += units
            if units and leg.get("averagePrice") is not None:
                price = float(decimal_field(leg, "averagePrice", side))
        if net:
            before, _ = out.get(symbol, (0, 0.0))
            out[symbol] = (before + int(net), price)
    return out, ignored
