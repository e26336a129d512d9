"""The OANDA v20 live broker: FOK market orders labelled with forexd's client ids.

The critical path is an order whose answer never came back (connection dropped, timeout,
5xx). OANDA has no idempotency key on ``POST /orders``, so such an order is never resent
blindly: it is looked up by its client id (``GET /orders/@{id}``), waiting out the
documented read-after-write lag during which a fresh order can still answer 404. Found
filled: its fill is read from the filling transaction and returned as if the POST had
answered. Cancelled: a :class:`~forexd.errors.BrokerError`. Absent after the lag window:
it was never created, and only then is it sent again, with the same client id. When even
the lookup fails the outcome is unknown: :class:`OrderOutcomeUnknownError` (deliberately
*not* a ``BrokerError``, which means "not placed") leaves the order pending for
reconciliation, and :meth:`OandaBroker.on_bar` keeps trying to resolve it.

Client ids: forexd's ``{symbol}-{bar_ts}-{seq}`` (28-30 characters) is sent unchanged.
OANDA documents no length or alphabet for a ClientID, so ids that do not look like ours
(over 32 characters, or characters outside ``A-Z a-z 0-9 . _ -``, or not starting with a
letter) are replaced by ``fxh-`` and 28 hex digits of their SHA-256: deterministic, so a
lookup after a restart computes the same id; the limit of 32 is our guess, not OANDA's.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import anyio
import structlog

from forexd.brokers.base import AccountSnapshot, BrokerOrderState
from forexd.brokers.oanda_api import OandaApi
from forexd.brokers.oanda_wire import (
    OandaApiError,
    RequestNotSentError,
    ResponseLostError,
    api_error,
    decimal_field,
    malformed,
    parse_time,
    to_instrument,
    to_symbol,
)
from forexd.domain import ACCOUNT_CURRENCY, Bar, Fill, Order, OrderStatus
from forexd.errors import BrokerError, OrderOutcomeUnknownError

CLIENT_ID_MAX_CHARS = 32  # our guess: OANDA documents no limit
HASHED_ID_PREFIX = "fxh-"
ORDER_TAG = "forexd"
NOT_FOUND_GRACE_S = 2.0  # a fresh order has answered 404 for 0.25-0.5 s (observed)
LOOKUP_POLL_S = 0.25
SUBMIT_ATTEMPTS = 3
_PLAIN_ID = re.compile(r"[A-Za-z][A-Za-z0-9._-]*")
_log = structlog.get_logger().bind(component="oanda_broker")


# OrderOutcomeUnknownError lives in forexd.errors: the actor handles it.
def oanda_client_id(client_id: str) -> str:
    """The ``clientExtensions.id`` sent for a forexd client id (see the module note)."""
    if len(client_id) <= CLIENT_ID_MAX_CHARS and _PLAIN_ID.fullmatch(client_id):
        return client_id
    digest = hashlib.sha256(client_id.encode()).hexdigest()
    return HASHED_ID_PREFIX + digest[: CLIENT_ID_MAX_CHARS - len(HASHED_ID_PREFIX)]


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
    )


@dataclass(frozen=True, slots=True)
class _Found:
    status: OrderStatus
    fills: tuple[Fill, ...] = ()
    cancel_reason: str | None = None


@dataclass(frozen=True, slots=True)
class OandaBrokerStats:
    """Counters of the broker (for ``ctl status``)."""

    order_posts: int
    fills: int
    rejected: int
    recovered_by_lookup: int
    resent_after_lookup: int
    unresolved: int


class OandaBroker:
    """:class:`~forexd.brokers.base.Broker` over OANDA v20 (fills arrive with the order)."""

    name = "oanda"

    def __init__(
        self,
        api: OandaApi,
        *,
        not_found_grace_s: float = NOT_FOUND_GRACE_S,
        lookup_poll_s: float = LOOKUP_POLL_S,
        submit_attempts: int = SUBMIT_ATTEMPTS,
    ) -> None:
        """Wrap an :class:`OandaApi` (the caller owns it and closes it).

        Args:
            api: the account's client, possibly shared with :class:`OandaFeed`.
            not_found_grace_s: how long an order lookup keeps retrying a 404 before it
                concludes the order does not exist.
            lookup_poll_s: spacing of those retries.
            submit_attempts: POSTs of one order at most (resends only follow a lookup that
                proved the order absent, or a request that never left).
        """
        self._api = api
        self._grace_s = not_found_grace_s
        self._poll_s = lookup_poll_s
        self._attempts = max(1, submit_attempts)
        self._outstanding: dict[str, Order] = {}
        self._ignored_instruments: set[str] = set()
        self._counts = dict.fromkeys(("posts", "fills", "rejected", "recovered", "resent"), 0)

    def stats(self) -> OandaBrokerStats:
        """A snapshot of the counters."""
        c = self._counts
        return OandaBrokerStats(
            order_posts=c["posts"],
            fills=c["fills"],
            rejected=c["rejected"],
            recovered_by_lookup=c["recovered"],
            resent_after_lookup=c["resent"],
            unresolved=len(self._outstanding),
        )

    # -- orders -------------------------------------------------------------------------

    async def submit(self, order: Order) -> list[Fill]:
        """Send a FOK market order and return its fill.

        Raises:
            BrokerError: rejected or cancelled by OANDA, or provably never placed.
            OrderOutcomeUnknownError: the answer was lost and the lookup failed too.
        """
        if order.units == 0:
            raise BrokerError(f"order {order.client_id} has 0 units; nothing to send")
        body = {
            "order": {
                "type": "MARKET",
                "instrument": to_instrument(order.symbol),
                "units": str(order.units),
                "timeInForce": "FOK",
                "positionFill": "DEFAULT",
                "clientExtensions": {"id": oanda_client_id(order.client_id), "tag": ORDER_TAG},
            }
        }
        path = self._api.account_path("/orders")
        backoff = self._api.backoff()
        log = _log.bind(client_id=order.client_id, symbol=order.symbol)
        for attempt in range(1, self._attempts + 1):
            self._counts["posts"] += 1
            try:
                status, payload = await self._api.post(path, body)
            except RequestNotSentError as exc:
                log.warning("oanda_order_not_sent", attempt=attempt, error=str(exc))
                if attempt == self._attempts:
                    raise BrokerError(f"order {order.client_id} was not placed: {exc}") from exc
                await anyio.sleep(backoff.next_delay())
                continue
            except ResponseLostError as exc:
                unknown = str(exc)
            else:
                fills = self._parse_create(order, status, payload)
                if fills is not None:
                    return fills
                unknown = f"HTTP {status} {payload.get('errorCode') or ''}".strip()
            log.warning("oanda_order_outcome_unknown", attempt=attempt, cause=unknown)
            found = await self._resolve(order, unknown)
            if found is not None:
                self._counts["recovered"] += 1
                return self._adopt(order, found)
            if attempt < self._attempts:
                # Absent after the lag window means never created (subset doc §7), so
                # sending it again, under the same client id, is the documented safe step.
                self._counts["resent"] += 1
                log.warning("oanda_order_resend", attempt=attempt + 1)
                await anyio.sleep(backoff.next_delay())
        raise BrokerError(
            f"order {order.client_id} was not placed after {self._attempts} attempts; "
            "OANDA did not answer and has no such order"
        )

    def _parse_create(
        self, order: Order, status: int, payload: Mapping[str, Any]
    ) -> list[Fill] | None:
        """Fills of a create answer, ``None`` when its outcome must be looked up."""
        if status in (200, 201):
            fill = payload.get("orderFillTransaction")
            if isinstance(fill, Mapping):
                try:
                    parsed = fill_from_transaction(fill, order.client_id)
                except BrokerError as exc:
                    # Filled but unreadable: never report a placed order as rejected.
                    _log.error("oanda_fill_unparsable", client_id=order.client_id, error=str(exc))
                    return None
                self._counts["fills"] += 1
                return [parsed]
            cancel = payload.get("orderCancelTransaction")
            if isinstance(cancel, Mapping):
                self._counts["rejected"] += 1
                reason = str(cancel.get("reason") or "UNKNOWN")
                raise OandaApiError(
                    f"OANDA cancelled order {order.client_id} instead of filling it: {reason}",
                    status=status,
                    reason=reason,
                )
            return None  # 201 with neither: look it up rather than guess
        if status == 429 or status >= 500:
            return None
        error = api_error(status, payload, f"order {order.client_id}")
        if error.reason == "CLIENT_ORDER_ID_ALREADY_EXISTS":
            return None  # it exists already: adopt its outcome
        self._counts["rejected"] += 1
        raise error

    async def _resolve(self, order: Order, cause: str) -> _Found | None:
        try:
            return await self._find(order.client_id, self._grace_s)
        except BrokerError as exc:
            self._outstanding[order.client_id] = order
            raise OrderOutcomeUnknownError(
                f"order {order.client_id}: {cause}, and looking it up failed ({exc}); it stays"
                " pending and is looked up again on the next bar and at restart"
            ) from exc

    def _adopt(self, order: Order, found: _Found) -> list[Fill]:
        if found.status is OrderStatus.CANCELLED:
            self._counts["rejected"] += 1
            raise OandaApiError(
                f"OANDA cancelled order {order.client_id}: {found.cancel_reason or 'UNKNOWN'}",
                status=201,
                reason=found.cancel_reason,
            )
        if found.status is OrderStatus.FILLED:
            self._counts["fills"] += len(found.fills)
            return list(found.fills)
        self._outstanding[order.client_id] = order
        return []

    async def on_bar(self, bar: Bar) -> list[Fill]:
        """Resolve this symbol's orders whose outcome is still unknown; return their fills.

        OANDA fills market orders on submission, so this is normally a no-op.
        """
        fills: list[Fill] = []
        for client_id, order in list(self._outstanding.items()):
            if order.symbol != bar.symbol:
                continue
            try:
                found = await self._find(client_id, grace_s=0.0)
            except BrokerError as exc:
                _log.warning("oanda_order_still_unknown", client_id=client_id, error=str(exc))
                continue
            if found is not None and found.status is OrderStatus.SUBMITTED:
                continue
            del self._outstanding[client_id]
            if found is None or found.status is OrderStatus.CANCELLED:
                _log.warning(
                    "oanda_order_not_placed",
                    client_id=client_id,
                    reason=found.cancel_reason if found else "no such order",
                )
                continue
            self._counts["fills"] += len(found.fills)
            fills.extend(found.fills)
        return fills

    async def lookup_order(self, client_id: str) -> BrokerOrderState | None:
        """Ask OANDA about ``client_id``; ``None`` once a 404 has outlasted the lag window.

        A filled order comes back with its fill read from the filling transaction, so
        reconciliation can record a fill whose response was lost.

        Raises:
            BrokerError: OANDA could not be asked (the caller must not assume absence).
        """
        found = await self._find(client_id, self._grace_s)
        if found is None:
            return None
        return BrokerOrderState(client_id, found.status, found.fills)

    async def _find(self, client_id: str, grace_s: float) -> _Found | None:
        spec = quote("@" + oanda_client_id(client_id), safe="@")
        path = self._api.account_path(f"/orders/{spec}")
        deadline = anyio.current_time() + grace_s
        while True:
            try:
                payload = await self._api.get(path)
                break
            except OandaApiError as exc:
                if exc.status != 404 or exc.error_code != "NO_SUCH_ORDER":
                    raise
                if anyio.current_time() >= deadline:
                    return None
            await anyio.sleep(self._poll_s)
        order = payload.get("order")
        if not isinstance(order, Mapping):
            raise malformed("order lookup", payload)
        state = order.get("state")
        if state == "FILLED":
            txn = await self._transaction(str(order.get("fillingTransactionID")))
            return _Found(OrderStatus.FILLED, (fill_from_transaction(txn, client_id),))
        if state == "CANCELLED":
            reason = None
            if order.get("cancellingTransactionID"):
                txn = await self._transaction(str(order["cancellingTransactionID"]))
                reason = str(txn.get("reason") or "") or None
            return _Found(OrderStatus.CANCELLED, cancel_reason=reason)
        return _Found(OrderStatus.SUBMITTED)  # PENDING or TRIGGERED

    async def _transaction(self, txn_id: str) -> Mapping[str, Any]:
        if not txn_id.isdigit():
            raise malformed("transaction id", txn_id)
        payload = await self._api.get(self._api.account_path(f"/transactions/{txn_id}"))
        txn = payload.get("transaction")
        if not isinstance(txn, Mapping):
            raise malformed("transaction", payload)
        return txn

    # -- account ------------------------------------------------------------------------

    async def positions(self) -> dict[str, int]:
        """Net units (long side plus the negative short side) per forexd symbol.

        Instruments forexd does not trade are skipped (and logged once).
        """
        payload = await self._api.get(self._api.account_path("/openPositions"))
        out: dict[str, int] = {}
        for pos in payload.get("positions") or ():
            name = str(pos.get("instrument"))
            symbol = to_symbol(name)
            if symbol is None:
                if name not in self._ignored_instruments:
                    self._ignored_instruments.add(name)
                    _log.warning("oanda_position_ignored", instrument=name)
                continue
            net = sum(
                (decimal_field(pos.get(side) or {}, "units", side) for side in ("long", "short")),
                Decimal(0),
            )
            if net:
                out[symbol] = out.get(symbol, 0) + int(net)
        return out

    async def account(self) -> AccountSnapshot:
        """Balance, NAV (as equity), unrealized P&L and margin used, from the summary."""
        return _snapshot(await self._summary())

    async def verify(self) -> AccountSnapshot:
        """Check the token, the account and its currency before trading starts.

        Raises:
            BrokerError: the token or account is refused, or the account is not in USD
                (forexd's risk limits and P&L are in USD).
        """
        summary = await self._summary()
        currency = summary.get("currency")
        if currency != ACCOUNT_CURRENCY:
            raise BrokerError(
                f"OANDA account {self._api.account_id} is in {currency}; forexd keeps its "
                f"books in {ACCOUNT_CURRENCY}: use a {ACCOUNT_CURRENCY} account"
            )
        return _snapshot(summary)

    async def _summary(self) -> Mapping[str, Any]:
        payload = await self._api.get(self._api.account_path("/summary"))
        summary = payload.get("account")
        if not isinstance(summary, Mapping):
            raise malformed("account summary", payload)
        return summary


def _snapshot(summary: Mapping[str, Any]) -> AccountSnapshot:
    return AccountSnapshot(
        balance=float(decimal_field(summary, "balance", "account")),
        equity=float(decimal_field(summary, "NAV", "account")),
        unrealized_pnl=float(decimal_field(summary, "unrealizedPL", "account")),
        margin_used=float(decimal_field(summary, "marginUsed", "account")),
    )
