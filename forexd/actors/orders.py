"""The order half of a symbol actor: write ahead, send once, record fills.

Part of the actor (it mutates the actor's core and position, and only runs inside the
actor's own message handling); kept apart so the actor module reads as its life cycle.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from forexd.domain import Fill, Order, OrderStatus, ns_to_iso
from forexd.errors import BrokerError, OrderOutcomeUnknownError

if TYPE_CHECKING:
    from forexd.actors.symbol import SymbolActor


class OrderFlow:
    """Sends an actor's orders and books its fills (see the module note)."""

    def __init__(self, actor: SymbolActor) -> None:
        self.actor = actor
        self.known: dict[str, str] = {}  # client id -> status, rebuilt from the store
        self.sent = 0
        self.rejected = 0
        self.fills = 0

    async def send(self, order: Order) -> None:
        """Write the order (durably), then send it; never send one client id twice."""
        a = self.actor
        seq = 0
        while order.client_id in self.known:
            if self.known[order.client_id] != OrderStatus.CANCELLED.value:
                # The same decision replayed after a crash: it was written and reached the
                # broker; reconciliation owns it. Never send a client id twice.
                a.core.on_reject(order)
                return
            # Written but never delivered (reconciliation cancelled it): decide again
            # under the next deterministic id.
            seq += 1
            order = replace(order, client_id=Order.make_client_id(order.symbol, order.bar_ts, seq))
        await a.record.order_written(order)
        self.known[order.client_id] = OrderStatus.PENDING.value
        try:
            fills = await a.deps.broker.submit(order)
        except OrderOutcomeUnknownError as exc:
            # Maybe placed, maybe not: it stays pending (counted as in flight) until the
            # broker's lookups or the next reconciliation resolve it. Never resent.
            a.log.error("order_outcome_unknown", client_id=order.client_id, error=str(exc))
            return
        except BrokerError as exc:
            self.rejected += 1
            a.core.on_reject(order)
            a.record.order_status(order.client_id, OrderStatus.REJECTED, str(exc))
            a.log.warning("order_rejected", client_id=order.client_id, error=str(exc))
            return
        self.sent += 1
        a.record.order_status(order.client_id, OrderStatus.SUBMITTED)
        a.log.info(
            "order_sent",
            client_id=order.client_id,
            units=order.units,
            bar_time=ns_to_iso(order.bar_ts),
        )
        for fill in fills:
            self.record_fill(fill)

    def record_fill(self, fill: Fill) -> None:
        """Apply a fill to the position and the core, tell risk, queue the rows."""
        a = self.actor
        realized = a.position.apply(fill, a.instrument)
        a.core.on_fill(fill)
        self.fills += 1
        if a.deps.risk is not None:
            a.deps.risk.on_fill(realized, fill.commission, fill.ts)
        a.record.fill(fill, realized, a.position)
        a.log.info(
            "order_filled",
            client_id=fill.client_id,
            units=fill.units,
            price=fill.price,
            position_units=a.position.units,
            realized_pnl=round(realized, 2),
        )

    async def flatten(self) -> dict[str, Any]:
        """Send the order that closes the position (held and in flight)."""
        a = self.actor
        held = a.core.position_units + a.core.pending_units
        result: dict[str, Any] = {"symbol": a.symbol, "units": -held, "client_id": None}
        if held == 0 or a.last_bar is None:
            return result
        seq = 1  # the strategy's own order on a bar is seq 0
        while Order.make_client_id(a.symbol, a.last_bar.ts, seq) in self.known:
            seq += 1
        order = Order(
            Order.make_client_id(a.symbol, a.last_bar.ts, seq),
            a.symbol,
            -held,
            a.last_bar.ts,
            time.time_ns(),
            "operator flatten",
        )
        a.core.pending_units += order.units
        await self.send(order)
        result["client_id"] = order.client_id
        return result
