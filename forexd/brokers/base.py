"""The broker contract.

A broker accepts market orders identified by deterministic client ids, reports fills, and
can be asked what it holds, so the daemon can reconcile after a restart. The paper broker
fills at the next price it sees; a live broker (OANDA v20) fills on submission.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from forexd.domain import Bar, Fill, Order, OrderStatus


@dataclass(frozen=True, slots=True)
class AccountSnapshot:
    """Balance (realised) and equity (balance + open P&L), in USD."""

    balance: float
    equity: float
    unrealized_pnl: float
    margin_used: float = 0.0


@dataclass(frozen=True, slots=True)
class BrokerOrderState:
    """What the broker knows about an order, looked up by client id."""

    client_id: str
    status: OrderStatus
    fills: tuple[Fill, ...] = ()


class Broker(Protocol):
    """Where orders go. Implementations: ``brokers/paper.py``, ``brokers/oanda.py``."""

    name: str

    async def submit(self, order: Order) -> list[Fill]:
        """Send a market order; return fills that happened at once (may be empty).

        Raises:
            BrokerError: the broker rejected the order (the order was not placed).
        """
        ...

    async def on_bar(self, bar: Bar) -> list[Fill]:
        """A new price arrived for ``bar.symbol``; return fills it caused."""
        ...

    async def lookup_order(self, client_id: str) -> BrokerOrderState | None:
        """Find an order by client id (``None`` if the broker never received it)."""
        ...

    async def positions(self) -> dict[str, int]:
        """Net units per symbol as the broker sees them."""
        ...

    async def account(self) -> AccountSnapshot:
        """Current balance and equity."""
        ...
