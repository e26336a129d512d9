"""The OANDA v20 live broker: FOK market orders labelled with per-installation client ids.

At most one fill per decision, proven by the broker's record. An order POST is sent
once. When its answer is lost (timeout, dropped connection, 5xx, 429, a 201 with neither
fill nor cancel, or ``CLIENT_ORDER_ID_ALREADY_EXISTS``) it is *never resent*: it becomes
:class:`~forexd.brokers.oanda_resolve.Unresolved` and is resolved from the transaction
history and the order lookup (:mod:`forexd.brokers.oanda_resolve`), once at once and
then by :meth:`OandaBroker.run` in the background. A resolved fill is handed to the
actor by :meth:`OandaBroker.on_bar`; an order proven never executed by
:meth:`OandaBroker.take_released`, which lets the actor release its in-flight units and
mark the row cancelled. Until then ``submit`` raises
:class:`~forexd.errors.OrderOutcomeUnknownError` and the order counts as in flight.

Account state is not fetched per bar: :meth:`OandaBroker.run` refreshes the summary every
``account_refresh_s`` with backoff on errors, and :meth:`account` returns the last good
snapshot. :meth:`health` says whether the broker is reachable (``ok``) or ``degraded``,
with the reason.

Client ids: every ``clientExtensions.id`` starts with the installation id (kept in the
data dir), so two installations, or one data dir reset, never reuse an id on the same
account: ``{install}-{symbol}-{bar seconds}-{seq}`` (see :func:`oanda_client_id`) when
that fits :data:`CLIENT_ID_MAX_CHARS`, else ``{install}-h`` and hex digits of the
SHA-256 of the forexd id (deterministic, so a restart computes the same id). OANDA
documents no length or alphabet for a ClientID; the limit of 32 is our guess
(docs/oanda.md).

Protective stops (issue 12) are attached on fill (:func:`~.oanda_wire.on_fill_details`);
the stop fills OANDA makes are read from the same transaction history
(:func:`~.oanda_resolve.protective_fills_since`) and handed over like resolved fills.

Why it is over 400 lines: submission, the bookkeeping of unresolved orders, the
watch on stop fills and the account refresh share one state; the resolution itself is in
:mod:`forexd.brokers.oanda_resolve` and the wire types in :mod:`~.oanda_wire`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import structlog
from anyio.abc import TaskStatus

from forexd.brokers.base import AccountSnapshot, BrokerOrderState
from forexd.brokers.oanda_api import OandaApi
from forexd.brokers.oanda_resolve import (
    Resolution,
    Unresolved,
    UnresolvedView,
    get_transaction,
    lookup_order,
    protective_fills_since,
    resolve,
)
from forexd.brokers.oanda_wire import (  # fill_from_transaction & co: re-exported
    CLIENT_ID_MAX_CHARS,
    OandaApiError,
    RequestNotSentError,
    ResponseLostError,
    account_snapshot,
    api_error,
    check_installation_id,
    fill_from_transaction,
    malformed,
    oanda_client_id,
    on_fill_details,
    positions_from,
    to_instrument,
)
from forexd.domain import ACCOUNT_CURRENCY, NS_PER_S, Fill, Order, OrderStatus, get_instrument
from forexd.errors import BrokerError, OrderOutcomeUnknownError

__all__ = [
    "CLIENT_ID_MAX_CHARS",
    "OandaBroker",
    "OrderOutcomeUnknownError",
    "check_installation_id",
    "fill_from_transaction",
    "oanda_client_id",
]

ORDER_TAG = "forexd"
ACCOUNT_REFRESH_S = 5.0
RESOLVE_EVERY_S = 1.0
ABSENT_AFTER_S = 60.0  # our bound: an order unheard of this long after sending never ran
NOT_FOUND_GRACE_S = 2.0  # start-up lookups: a fresh order has answered 404 for 0.25-0.5 s
LOOKUP_POLL_S = 0.25
_log = structlog.get_logger().bind(component="oanda_broker")


@dataclass(frozen=True, slots=True)
class OandaBrokerStats:
    """Counters of the broker (for ``ctl status``)."""

    order_posts: int
    fills: int
    rejected: int
    outcome_unknown: int
    resolved_filled: int
    resolved_not_executed: int
    unresolved: int


class OandaBroker:
    """:class:`~forexd.brokers.base.Broker` over OANDA v20 (fills arrive with the order)."""

    name = "oanda"

    def __init__(
        self,
        api: OandaApi,
        *,
        installation_id: str = "",
        account_refresh_s: float = ACCOUNT_REFRESH_S,
        resolve_every_s: float = RESOLVE_EVERY_S,
        absent_after_s: float = ABSENT_AFTER_S,
        not_found_grace_s: float = NOT_FOUND_GRACE_S,
        lookup_poll_s: float = LOOKUP_POLL_S,
    ) -> None:
        """Wrap an :class:`OandaApi` (the caller owns it and closes it).

        Args:
            api: the account's client, shared with :class:`OandaFeed`.
            installation_id: prefix of every client id (from the data dir).
            account_refresh_s: how often :meth:`run` refreshes the account summary.
            resolve_every_s: how often :meth:`run` works on unresolved orders.
            absent_after_s: an order neither the transaction history nor the order
                lookup knows this long after it was sent is taken as never executed.
            not_found_grace_s: how long :meth:`lookup_order` (start-up reconciliation)
                keeps retrying a 404 before it concludes the order does not exist.
            lookup_poll_s: spacing of those retries.
        """
        self._api = api
        self.installation_id = check_installation_id(installation_id) if installation_id else ""
        self._refresh_s = account_refresh_s
        self._resolve_s = resolve_every_s
        self._absent_s = absent_after_s
        self._grace_s = not_found_grace_s
        self._poll_s = lookup_poll_s
        self._unresolved: dict[str, Unresolved] = {}
        self._resolved_fills: list[Fill] = []
        self._released: list[tuple[Order, str]] = []
        self._ignored_instruments: set[str] = set()
        self._snapshot: AccountSnapshot | None = None
        self._last_txn = 0
        self._last_close: dict[str, float] = {}  # for take-profit prices
        self._protect_cursor: int | None = None  # stops watched after this transaction
        self._levels: dict[str, dict[str, Any]] = {}  # stop/target placed per symbol
        # The run loop and the drift check both scan: one at a time, each fill once.
        self._scan_lock = anyio.Lock()
        self._protective_seen: set[str] = set()
        self._problem: str | None = None
        self._problem_since: float | None = None
        self._counts = dict.fromkeys(
            ("posts", "fills", "rejected", "unknown", "res_filled", "res_absent"), 0
        )

    def wire_id(self, client_id: str) -> str:
        """The ``clientExtensions.id`` of a forexd client id on this installation."""
        return oanda_client_id(client_id, self.installation_id)

    def stats(self) -> OandaBrokerStats:
        """A snapshot of the counters."""
        c = self._counts
        return OandaBrokerStats(
            order_posts=c["posts"],
            fills=c["fills"],
            rejected=c["rejected"],
            outcome_unknown=c["unknown"],
            resolved_filled=c["res_filled"],
            resolved_not_executed=c["res_absent"],
            unresolved=len(self._unresolved),
        )

    def unresolved(self) -> list[UnresolvedView]:
        """The orders whose outcome is still unknown."""
        now = anyio.current_time()
        return [
            UnresolvedView(
                u.order.client_id,
                u.order.symbol,
                u.order.units,
                round(now - u.sent_at, 1),
                u.cause,
                u.created,
            )
            for u in self._unresolved.values()
        ]

    def health(self) -> str | None:
        """``None`` while OANDA answers; else why the broker is degraded."""
        return self._problem

    # -- orders -------------------------------------------------------------------------

    async def submit(self, order: Order) -> list[Fill]:
        """Send a FOK market order once and return its fill.

        Raises:
            BrokerError: rejected or cancelled by OANDA, or provably never placed.
            OrderOutcomeUnknownError: the answer was lost; the order is resolved later.
        """
        if order.units == 0:
            raise BrokerError(f"order {order.client_id} has 0 units; nothing to send")
        wire = self.wire_id(order.client_id)
        body = {
            "order": {
                "type": "MARKET",
                "instrument": to_instrument(order.symbol),
                "units": str(order.units),
                "timeInForce": "FOK",
                "positionFill": "DEFAULT",
                "clientExtensions": {"id": wire, "tag": ORDER_TAG},
            }
        }
        if order.protection is not None:
            # Attached on fill: the stop exists at OANDA from the fill on (issue 12).
            body["order"].update(
                on_fill_details(
                    order.protection,
                    order.symbol,
                    order.units,
                    self._last_close.get(order.symbol),
                )
            )
        cursor = self._last_txn  # every transaction of this order comes after it
        status: int | None = None
        self._counts["posts"] += 1
        try:
            status, payload = await self._api.post(self._api.account_path("/orders"), body)
        except RequestNotSentError as exc:
            raise BrokerError(f"order {order.client_id} was not placed: {exc}") from exc
        except ResponseLostError as exc:
            cause = str(exc)
        else:
            self._note_last_txn(payload)
            fills = self._parse_create(order, status, payload)
            if fills is not None:
                self._note_levels(order, fills)
                return fills
            code = payload.get("errorCode") or ""
            cause = f"HTTP {status} {code}".strip()
        self._counts["unknown"] += 1
        item = Unresolved(order, wire, cursor, anyio.current_time(), cause)
        self._unresolved[order.client_id] = item
        _log.warning("oanda_order_outcome_unknown", client_id=order.client_id, cause=cause)
        try:
            found = await resolve(self._api, item, self._absent_s)
        except BrokerError as exc:
            found = Resolution("unknown", reason=str(exc))
        if found.verdict == "filled":
            del self._unresolved[order.client_id]
            return [self._resolved_fill(order, found)]
        if found.verdict == "not_executed":
            del self._unresolved[order.client_id]
            self._counts["res_absent"] += 1
            self._counts["rejected"] += 1
            raise OandaApiError(
                f"order {order.client_id} was not executed: {found.reason}",
                status=status if isinstance(status, int) else 0,
                reason=found.cancel_reason,
            )
        raise OrderOutcomeUnknownError(
            f"order {order.client_id}: {cause}; it is not resent, and stays unresolved (the "
            "symbol may only reduce) until OANDA's transaction record shows its outcome"
        )

    def _parse_create(
        self, order: Order, status: int, payload: Mapping[str, Any]
    ) -> list[Fill] | None:
        """Fills of a create answer, ``None`` when its outcome must be resolved."""
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
            return None  # 201 with neither: resolve rather than guess
        if status == 429 or status >= 500:
            return None
        error = api_error(status, payload, f"order {order.client_id}")
        if error.reason == "CLIENT_ORDER_ID_ALREADY_EXISTS":
            return None  # a pending order has this id: its outcome is the one to adopt
        self._counts["rejected"] += 1
        raise error

    def _resolved_fill(self, order: Order, found: Resolution) -> Fill:
        assert found.fill_txn is not None
        self._counts["fills"] += 1
        self._counts["res_filled"] += 1
        fill = fill_from_transaction(found.fill_txn, order.client_id)
        _log.warning("oanda_order_resolved_filled", client_id=order.client_id, units=fill.units)
        return fill

    def track_unresolved(self, order: Order, age_ns: int) -> bool:
        """Resolve an order a previous process sent (start-up reconciliation).

        Only one sent less than ``absent_after_s`` ago is taken (older ones are settled by
        the order lookup). Its transactions can only come after the last transaction
        known now: had it executed already, the lookup would have found it.

        Returns:
            Whether the order is now tracked as unresolved.
        """
        age_s = max(0.0, age_ns / NS_PER_S)
        if age_s >= self._absent_s:
            return False
        self._unresolved[order.client_id] = Unresolved(
            order,
            self.wire_id(order.client_id),
            self._last_txn,
            anyio.current_time() - age_s,
            "sent just before a restart; no answer recorded",
        )
        return True

    async def resolve_pending(self) -> None:
        """One pass over the unresolved orders (called by :meth:`run`)."""
        for client_id, item in list(self._unresolved.items()):
            try:
                found = await resolve(self._api, item, self._absent_s)
            except BrokerError as exc:
                _log.warning("oanda_order_still_unknown", client_id=client_id, error=str(exc))
                continue
            if found.verdict == "unknown":
                continue
            del self._unresolved[client_id]
            if found.verdict == "filled":
                self._resolved_fills.append(self._resolved_fill(item.order, found))
            else:
                self._counts["res_absent"] += 1
                self._released.append((item.order, found.reason))
                _log.warning(
                    "oanda_order_resolved_not_executed", client_id=client_id, reason=found.reason
                )

    async def on_bar(self, bar: Any) -> list[Fill]:
        """Fills of this symbol resolved or made by its stops since the last bar (no I/O)."""
        self._last_close[bar.symbol] = bar.close
        mine = [f for f in self._resolved_fills if f.symbol == bar.symbol]
        if mine:
            self._resolved_fills = [f for f in self._resolved_fills if f.symbol != bar.symbol]
        return mine

    @property
    def last_transaction_id(self) -> int:
        """The newest transaction id seen in any answer (0 before the first)."""
        return self._last_txn

    def watch_protective(self, after_txn: int) -> None:
        """Report stop/target fills made after transaction ``after_txn`` (see :meth:`run`)."""
        self._protect_cursor = after_txn

    async def protective_fills_since(self, after_txn: int) -> tuple[list[Fill], int]:
        """Stop/target/trailing fills after ``after_txn`` and the last transaction read.

        Raises:
            BrokerError: OANDA could not be asked.
        """
        return await protective_fills_since(self._api, after_txn)

    async def scan_protective(self) -> None:
        """Queue the stop fills made since the watch cursor; :meth:`on_bar` hands them over.

        Raises:
            BrokerError: OANDA could not be asked (the cursor stays).
        """
        async with self._scan_lock:
            if self._protect_cursor is None:
                return
            cursor = self._protect_cursor
            fills, self._protect_cursor = await protective_fills_since(self._api, cursor)
            fills = [f for f in fills if f.fill_id not in self._protective_seen]
            self._protective_seen.update(f.fill_id for f in fills)
            self._queue_protective(fills)

    def _queue_protective(self, fills: list[Fill]) -> None:
        for fill in fills:
            _log.warning(
                "oanda_protective_fill",
                symbol=fill.symbol,
                units=fill.units,
                price=fill.price,
                reason=fill.reason,
                fill_id=fill.fill_id,
            )
            self._levels.pop(fill.symbol, None)  # the trade and its dependents are gone
        self._resolved_fills.extend(fills)

    def _note_levels(self, order: Order, fills: list[Fill]) -> None:
        """Remember where the stop/target of a protected fill sit (for ``ctl status``)."""
        p = order.protection
        if not fills:
            return
        if p is None:
            placed = self._levels.get(order.symbol)
            if placed is not None and placed["side"] * order.units < 0:
                del self._levels[order.symbol]  # closed or reversed: v20 cancelled them
            return
        price, side = fills[-1].price, 1 if order.units > 0 else -1
        digits = get_instrument(order.symbol).price_precision
        tp = None
        if p.take_profit_distance is not None and order.symbol in self._last_close:
            reference = self._last_close[order.symbol]
            tp = round(reference + side * p.take_profit_distance, digits)
        self._levels[order.symbol] = {
            "stop": round(price - side * p.stop_distance, digits),
            "take_profit": tp,
            "stop_kind": "trailing" if p.trailing else "fixed",
            "side": side,
        }

    def protection_of(self, symbol: str) -> dict[str, Any] | None:
        """The stop (as placed; a trailing one moves at OANDA) and target of ``symbol``."""
        return self._levels.get(symbol)

    def queued_units(self, symbol: str) -> int:
        """Units of ``symbol`` fills queued for the next bar (drift counts them as done)."""
        return sum(f.units for f in self._resolved_fills if f.symbol == symbol)

    def take_released(self, symbol: str) -> list[tuple[Order, str]]:
        """Orders of ``symbol`` proven never executed since the last call, with the proof."""
        mine = [r for r in self._released if r[0].symbol == symbol]
        if mine:
            self._released = [r for r in self._released if r[0].symbol != symbol]
        return mine

    async def lookup_order(self, client_id: str) -> BrokerOrderState | None:
        """Ask OANDA about ``client_id`` (start-up reconciliation of a previous life).

        ``None`` once a 404 has outlasted the lag window. A filled order comes back with
        its fill read from the filling transaction.

        Raises:
            BrokerError: OANDA could not be asked (the caller must not assume absence).
        """
        wire = self.wire_id(client_id)
        deadline = anyio.current_time() + self._grace_s
        while (order := await lookup_order(self._api, wire)) is None:
            if anyio.current_time() >= deadline:
                return None
            await anyio.sleep(self._poll_s)
        state = order.get("state")
        if state == "FILLED":
            txn = await get_transaction(self._api, str(order.get("fillingTransactionID")))
            fill = fill_from_transaction(txn, client_id)
            return BrokerOrderState(client_id, OrderStatus.FILLED, (fill,))
        if state == "CANCELLED":
            return BrokerOrderState(client_id, OrderStatus.CANCELLED)
        return BrokerOrderState(client_id, OrderStatus.SUBMITTED)

    # -- background ---------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Refresh the account and resolve unknown orders until cancelled; never raises.

        Errors mark the broker degraded (:meth:`health`) and are retried with backoff.
        """
        task_status.started()
        backoff = self._api.backoff()
        next_refresh = anyio.current_time() + self._refresh_s
        while True:
            try:
                if anyio.current_time() >= next_refresh:
                    self._snapshot = account_snapshot(await self._summary())
                    next_refresh = anyio.current_time() + self._refresh_s
                if self._unresolved:
                    await self.resolve_pending()
                await self.scan_protective()
            except BrokerError as exc:
                refused = isinstance(exc, OandaApiError) and exc.status in (401, 403)
                # A token revoked for a while is an outage too: alert, keep retrying.
                self._set_problem(
                    f"OANDA {'refused the token' if refused else 'unreachable'}: {exc}"
                )
                delay = backoff.next_delay()
                _log.warning("oanda_account_refresh_failed", error=str(exc), retry_in_s=delay)
                await anyio.sleep(delay)
                continue
            if self._problem is not None:
                _log.warning("oanda_recovered", was=self._problem)
            self._set_problem(None)
            backoff.reset()
            wait = min(self._resolve_s, max(0.0, next_refresh - anyio.current_time()))
            await anyio.sleep(wait)

    def _set_problem(self, problem: str | None) -> None:
        if problem is not None and self._problem is None:
            _log.error("oanda_degraded", reason=problem)
        self._problem = problem

    def _note_last_txn(self, payload: Mapping[str, Any]) -> None:
        last = str(payload.get("lastTransactionID") or "")
        if last.isdigit():
            self._last_txn = max(self._last_txn, int(last))

    # -- account ------------------------------------------------------------------------

    async def open_positions(self) -> dict[str, tuple[int, float]]:
        """Net units and average price per forexd symbol (``/openPositions``).

        Instruments forexd does not trade are skipped (and logged once).

        Raises:
            BrokerError: OANDA could not be asked.
        """
        payload = await self._api.get(self._api.account_path("/openPositions"))
        self._note_last_txn(payload)
        out, ignored = positions_from(payload)
        for name in ignored - self._ignored_instruments:
            _log.warning("oanda_position_ignored", instrument=name)
        self._ignored_instruments |= ignored
        return out

    async def positions(self) -> dict[str, int]:
        """Net units (long side plus the negative short side) per forexd symbol."""
        return {s: u for s, (u, _) in (await self.open_positions()).items()}

    async def account(self) -> AccountSnapshot:
        """The last account snapshot (refreshed by :meth:`run`; never fetched per bar)."""
        if self._snapshot is None:
            self._snapshot = account_snapshot(await self._summary())
        return self._snapshot

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
                f"OANDA account {self._api.shown_account_id} is in {currency}; forexd keeps "
                f"its books in {ACCOUNT_CURRENCY}: use a {ACCOUNT_CURRENCY} account"
            )
        self._snapshot = account_snapshot(summary)
        return self._snapshot

    async def _summary(self) -> Mapping[str, Any]:
        payload = await self._api.get(self._api.account_path("/summary"))
        self._note_last_txn(payload)
        summary = payload.get("account")
        if not isinstance(summary, Mapping):
            raise malformed("account summary", payload)
        return summary
