"""What a symbol actor gets from the daemon, and the snapshot it gives back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from forexd.actors.core import OrderGate
from forexd.actors.present import PresentPolicy
from forexd.actors.training import TrainerFactory
from forexd.brokers.base import Broker
from forexd.feeds.base import Feed
from forexd.storage.db import StorageWriter


@dataclass(frozen=True, slots=True)
class ActorStats:
    """What ``ctl status`` shows for one symbol."""

    symbol: str
    state: str
    last_bar_time: str | None
    bars_seen: int
    position_units: int
    pending_units: int
    realized_pnl: float
    unrealized_pnl: float
    orders_sent: int
    orders_rejected: int
    fills: int
    denials: int
    restarts: int
    last_error: str | None
    bar_to_order_ms: dict[str, float]
    training: dict[str, Any] | None
    bars_not_traded: dict[str, int]
    protection: dict[str, Any] | None = None  # the open position's stop and target


class RiskHooks(OrderGate, Protocol):
    """What an actor tells the risk layer besides asking it about orders."""

    def on_fill(self, realized: float, commission: float, ts: int) -> None:
        """A fill was recorded."""
        ...

    def observe_equity(self, equity: float, ts: int) -> None:
        """The account equity after a bar."""
        ...


@dataclass(slots=True)
class ActorDeps:
    """What an actor needs from the daemon (shared, not owned)."""

    writer: StorageWriter
    broker: Broker
    feed: Feed
    db_path: Any
    timeframe: str
    store_candles: bool
    equity_every_bars: int
    risk: RiskHooks | None = None
    make_trainer: TrainerFactory | None = None  # daemon.trainer.ModelTrainer, for ml
    present: PresentPolicy = field(default_factory=PresentPolicy.recorded)
