"""What crosses the wire to OANDA v20: instrument names, decimal strings, datetimes, errors.

Pure helpers shared by the transport (:mod:`forexd.brokers.oanda_api`), the broker and the
feed. OANDA sends every price, amount and id as a JSON *string*; they are read with
``Decimal`` and never through ``float`` until they leave this adapter. DateTimes come as
``RFC3339`` (nanoseconds) or ``UNIX`` (decimal seconds) per ``Accept-Datetime-Format``;
:func:`parse_time` takes both, so a response is read right whichever was asked for.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from forexd.domain import NS_PER_S, get_instrument
from forexd.errors import BrokerError, ForexdError

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
