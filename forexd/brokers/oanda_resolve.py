"""Resolving an OANDA order whose answer was lost, from the account's own record.

An order POST that timed out, answered 5xx or came back without a fill or a cancel may
have executed, may execute later (OANDA can finish a market order after the client gave
up on the answer), or may never have reached OANDA. Guessing is what doubled orders: a
lookup by client id answers ``404 NO_SUCH_ORDER`` for a while after creation, and
``CLIENT_ORDER_ID_ALREADY_EXISTS`` only protects *pending* orders, so a resend of a
filled FOK order fills again.

So nothing is resent. An :class:`Unresolved` order is resolved only by evidence:

1. the transaction history, ``GET /transactions/sinceid?id=N`` from the last transaction
   known before the POST, paged in ID order, matched on the order's
   ``clientExtensions.id`` (``MARKET_ORDER``/``MARKET_ORDER_REJECT``) or ``clientOrderID``
   (``ORDER_FILL``/``ORDER_CANCEL``);
2. the order itself, ``GET /orders/@{clientID}`` (``FILLED``/``CANCELLED``/``PENDING``).

A fill proves execution. A reject or a cancel proves it never executed. Absence proves
nothing at first; only when neither source has heard of the order ``absent_after_s``
after it was sent is it taken as never created (our bound, not OANDA's: see
docs/oanda.md). Until one of these, the order stays unresolved and its symbol may only
reduce (:mod:`forexd.daemon.brokerguard`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

import anyio

from forexd.brokers.oanda_api import OandaApi
from forexd.brokers.oanda_wire import (
    PROTECTIVE_FILL_REASONS,
    OandaApiError,
    fill_from_transaction,
    malformed,
    to_symbol,
)
from forexd.domain import Fill, Order

SINCEID_PAGES_PER_PASS = 10  # one sinceid answer holds at most 1000 (observed, subset §7)

Verdict = Literal["filled", "not_executed", "unknown"]


@dataclass(slots=True)
class Unresolved:
    """An order whose outcome is not known yet.

    Attributes:
        order: the order as forexd wrote it.
        wire_id: the ``clientExtensions.id`` it was sent with.
        cursor: transactions up to this id have been searched for it.
        sent_at: ``anyio.current_time()`` when it was sent.
        cause: why its outcome is unknown (for ``ctl status``).
        created: a ``MARKET_ORDER`` with its id has been seen (it reached OANDA).
    """

    order: Order
    wire_id: str
    cursor: int
    sent_at: float
    cause: str
    created: bool = False


@dataclass(frozen=True, slots=True)
class UnresolvedView:
    """An unresolved order as ``ctl status`` shows it."""

    client_id: str
    symbol: str
    units: int
    age_s: float
    cause: str
    reached_oanda: bool


@dataclass(frozen=True, slots=True)
class Resolution:
    """The outcome of one resolution pass."""

    verdict: Verdict
    fill_txn: Mapping[str, Any] | None = None
    reason: str = ""
    cancel_reason: str | None = None  # OANDA's reason code when it cancelled or rejected


def _matches(txn: Mapping[str, Any], wire_id: str) -> bool:
    ext = txn.get("clientExtensions")
    if isinstance(ext, Mapping) and ext.get("id") == wire_id:
        return True
    return txn.get("clientOrderID") == wire_id


async def scan_transactions(api: OandaApi, item: Unresolved) -> Resolution:
    """Search the transactions after ``item.cursor`` for the order; advance the cursor.

    Raises:
        BrokerError: OANDA could not be asked (nothing is concluded).
    """
    path = api.account_path("/transactions/sinceid")
    for _ in range(SINCEID_PAGES_PER_PASS):
        payload = await api.get(path, {"id": str(item.cursor)})
        txns = payload.get("transactions")
        if not isinstance(txns, list):
            raise malformed("transactions page", payload)
        if not txns:
            break
        for txn in txns:
            if not isinstance(txn, Mapping) or not str(txn.get("id", "")).isdigit():
                raise malformed("transaction", txn)
            if _matches(txn, item.wire_id):
                kind = txn.get("type")
                if kind == "ORDER_FILL":
                    return Resolution("filled", txn)
                if kind in ("ORDER_CANCEL", "MARKET_ORDER_REJECT"):
                    code = str(txn.get("rejectReason") or txn.get("reason") or kind)
                    return Resolution("not_executed", reason=f"{kind} {code}", cancel_reason=code)
                if kind == "MARKET_ORDER":
                    item.created = True
            item.cursor = max(item.cursor, int(txn["id"]))
    return Resolution("unknown")


async def lookup_order(api: OandaApi, wire_id: str) -> Mapping[str, Any] | None:
    """``GET /orders/@{wire_id}``: the order, or ``None`` on ``404 NO_SUCH_ORDER``.

    Raises:
        BrokerError: any other failure (nothing is concluded).
    """
    spec = quote("@" + wire_id, safe="@")
    try:
        payload = await api.get(api.account_path(f"/orders/{spec}"))
    except OandaApiError as exc:
        if exc.status == 404 and exc.error_code == "NO_SUCH_ORDER":
            return None
        raise
    order = payload.get("order")
    if not isinstance(order, Mapping):
        raise malformed("order lookup", payload)
    return order


async def get_transaction(api: OandaApi, txn_id: str) -> Mapping[str, Any]:
    """``GET /transactions/{id}``.

    Raises:
        BrokerError: not found, malformed, or OANDA unreachable.
    """
    if not txn_id.isdigit():
        raise malformed("transaction id", txn_id)
    payload = await api.get(api.account_path(f"/transactions/{txn_id}"))
    txn = payload.get("transaction")
    if not isinstance(txn, Mapping):
        raise malformed("transaction", payload)
    return txn


async def resolve(api: OandaApi, item: Unresolved, absent_after_s: float) -> Resolution:
    """One pass over both sources (see the module note).

    Raises:
        BrokerError: OANDA could not be asked; the order stays unresolved.
    """
    found = await scan_transactions(api, item)
    if found.verdict != "unknown":
        return found
    order = await lookup_order(api, item.wire_id)
    if order is not None:
        item.created = True
        state = order.get("state")
        if state == "FILLED" and order.get("fillingTransactionID"):
            return Resolution(
                "filled", await get_transaction(api, str(order["fillingTransactionID"]))
            )
        if state == "CANCELLED":
            code = None
            if order.get("cancellingTransactionID"):
                txn = await get_transaction(api, str(order["cancellingTransactionID"]))
                code = str(txn.get("reason") or "") or None
            return Resolution(
                "not_executed", reason=f"ORDER_CANCEL {code or ''}".strip(), cancel_reason=code
            )
        return Resolution("unknown")
    if not item.created and anyio.current_time() - item.sent_at >= absent_after_s:
        return Resolution(
            "not_executed",
            reason=f"no transaction and no order with this client id {absent_after_s:g} s "
            "after it was sent",
        )
    return Resolution("unknown")


async def protective_fills_since(api: OandaApi, cursor: int) -> tuple[list[Fill], int]:
    """Fills made by trades' dependent orders after transaction ``cursor``, and the new cursor.

    A stop-loss, take-profit or trailing stop that OANDA triggered (``ORDER_FILL`` with
    reason ``STOP_LOSS_ORDER``, ``TAKE_PROFIT_ORDER`` or ``TRAILING_STOP_LOSS_ORDER``) of
    an instrument forexd trades. Their client id is ``oanda-trade-{tradeID}:{reason}``
    (the trade it closed: the id of the fill that opened it). Pages the same
    ``/transactions/sinceid`` as :func:`scan_transactions`; the cursor only advances over
    pages that were read, so an interrupted pass resumes where it stopped.

    Raises:
        BrokerError: OANDA could not be asked, or a page is malformed.
    """
    path = api.account_path("/transactions/sinceid")
    found: list[Fill] = []
    for _ in range(SINCEID_PAGES_PER_PASS):
        payload = await api.get(path, {"id": str(cursor)})
        txns = payload.get("transactions")
        if not isinstance(txns, list):
            raise malformed("transactions page", payload)
        if not txns:
            break
        for txn in txns:
            if not isinstance(txn, Mapping) or not str(txn.get("id", "")).isdigit():
                raise malformed("transaction", txn)
            reason = PROTECTIVE_FILL_REASONS.get(str(txn.get("reason")))
            if (
                txn.get("type") == "ORDER_FILL"
                and reason is not None
                and to_symbol(str(txn.get("instrument"))) is not None
            ):
                closed = [leg for leg in txn.get("tradesClosed") or () if isinstance(leg, Mapping)]
                trade = str(closed[0].get("tradeID")) if closed else str(txn.get("orderID"))
                found.append(fill_from_transaction(txn, f"oanda-trade-{trade}:{reason}"))
            cursor = max(cursor, int(txn["id"]))
    return found, cursor
