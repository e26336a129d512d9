"""What a live broker's trouble does to trading: reduce-only, degraded, drift (issue 11).

The guard sits between the actors and the risk gate (it is the actors' ``OrderGate``)
and decides, per symbol, whether an order may go out at all:

- **degraded / stale**: OANDA does not answer (the broker's background refresh fails)
  or the price stream is down. No order is sent: its outcome would be unknown. The
  symbol comes back by itself when the broker does; nothing crashes.
- **reducing**: the symbol has an order whose outcome is unknown, or its position
  differs from the broker's (drift). Only an order that brings *every* candidate
  position closer to zero passes (with an unresolved order: the position with and
  without it; with drift: the daemon's book and the broker's), clipped so that none
  changes sign. A flat symbol therefore cannot trade at all until resolved.

Drift is checked at start-up (from reconciliation) and every ``drift_check_s`` while
running: ``/openPositions`` against each actor's book, in-flight units accounted for. A
mismatch seen twice in a row (one check can race a fill being recorded) applies the
policy: ``halt`` (default; reducing, error logged, both figures in status, until
``ctl adopt`` or ``ctl flatten``) or ``adopt`` (the broker's position becomes the
daemon's, logged). Options weighed: halting the whole account (one hand-opened
position would stop every symbol) and closing the difference automatically (acting on
money on an unexplained mismatch); halt-per-symbol is the least surprising.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import anyio
from anyio.abc import TaskStatus

from forexd.actors.core import GateDecision
from forexd.actors.deps import RiskHooks
from forexd.actors.symbol import SymbolActor
from forexd.brokers.oanda import OandaBroker
from forexd.domain import Fill, Position, get_instrument
from forexd.errors import BrokerError
from forexd.storage.db import StorageWriter, now_ns
from forexd.storage.orders import SQL_EVENT, queue_fill

DriftPolicy = Literal["halt", "adopt"]
TRADING_STATES = ("trading", "paused")


@dataclass(frozen=True, slots=True)
class SymbolLink:
    """One symbol's trading state as ``ctl status`` shows it."""

    state: str
    reason: str | None
    daemon_units: int
    broker_units: int | None


def reduce_only(units: int, bases: list[int]) -> int:
    """The part of ``units`` that brings every position in ``bases`` closer to zero."""
    allowed = abs(units)
    for base in bases:
        if base == 0 or (base > 0) == (units > 0):
            return 0
        allowed = min(allowed, abs(base))
    return allowed if units > 0 else -allowed


class BrokerGuard:
    """The actors' order gate over the risk gate; see the module note."""

    def __init__(
        self,
        broker: OandaBroker,
        feed: Any,
        actors: Callable[[], Mapping[str, SymbolActor]],
        writer: StorageWriter,
        log: Any,
        *,
        inner: RiskHooks | None,
        policy: DriftPolicy = "halt",
        drift_check_s: float = 30.0,
        installation_id: str = "",
    ) -> None:
        self.broker = broker
        self.feed = feed
        self._actors = actors
        self.writer = writer
        self.log = log
        self.inner = inner
        self.policy: DriftPolicy = policy
        self.drift_check_s = drift_check_s
        self.installation_id = installation_id
        self.drift: dict[str, tuple[int, int]] = {}  # symbol -> (daemon, broker)
        self._suspect: dict[str, tuple[int, int]] = {}
        self._broker_units: dict[str, int] = {}
        self.checks = 0

    # -- OrderGate / RiskHooks ----------------------------------------------------------

    def check(
        self,
        symbol: str,
        units: int,
        position_units: int,
        price: float,
        ts: int,
        stop_distance: float | None = None,
    ) -> GateDecision:
        """Deny while degraded; reduce-only while unresolved or drifted; then risk."""
        state, reason = self._blocking(symbol)
        if state in ("degraded", "stale"):
            return GateDecision(0, f"{state}: {reason}")
        if state == "reducing":
            actor = self._actors().get(symbol)
            held = actor.position.units if actor is not None else position_units
            bases = [position_units, held]
            if symbol in self.drift:
                bases.append(self.drift[symbol][1])
            clipped = reduce_only(units, bases)
            if clipped == 0:
                return GateDecision(0, f"reducing: {reason}")
            units = clipped
        if self.inner is None:
            return GateDecision(units, None)
        return self.inner.check(symbol, units, position_units, price, ts, stop_distance)

    def on_fill(self, realized: float, commission: float, ts: int) -> None:
        """Pass a fill on to the risk gate."""
        if self.inner is not None:
            self.inner.on_fill(realized, commission, ts)

    def observe_equity(self, equity: float, ts: int) -> None:
        """Pass the equity on to the risk gate."""
        if self.inner is not None:
            self.inner.observe_equity(equity, ts)

    # -- states -------------------------------------------------------------------------

    def _blocking(self, symbol: str) -> tuple[str, str | None]:
        problem = self.broker.health()
        if problem is not None:
            return "degraded", problem
        stats = self.feed.stats() if self.feed is not None else None
        if stats is not None and not stats.connected:
            return "stale", f"price stream down: {stats.last_problem or 'connecting'}"
        mine = [u for u in self.broker.unresolved() if u.symbol == symbol]
        if mine:
            u = mine[0]
            return "reducing", f"unresolved order {u.client_id} ({u.units:+d}): {u.cause}"
        if symbol in self.drift:
            ours, theirs = self.drift[symbol]
            return "reducing", (
                f"position drift: daemon {ours:+d}, broker {theirs:+d}; "
                f"`forexd ctl adopt {symbol}` or `forexd ctl flatten {symbol} --yes`"
            )
        return "trading", None

    def symbol_link(self, actor: SymbolActor) -> SymbolLink:
        """The state of one symbol, the actor's own trouble first."""
        if actor.state in ("failed", "restarting", "stopped", "finished"):
            state, reason = actor.state, actor.last_error
        else:
            state, reason = self._blocking(actor.symbol)
            if state == "trading" and actor.state == "paused":
                state = "paused"
        return SymbolLink(state, reason, actor.position.units, self._broker_units.get(actor.symbol))

    def daemon_state(self, base: str) -> str:
        """``degraded`` while the daemon runs but some symbol is not trading."""
        if base != "running":
            return base
        links = [self.symbol_link(a) for a in self._actors().values()]
        return "running" if all(s.state in TRADING_STATES for s in links) else "degraded"

    def status(self) -> dict[str, Any]:
        """The ``broker_link`` object of ``ctl status``."""
        return {
            "installation_id": self.installation_id,
            "broker_problem": self.broker.health(),
            "drift_policy": self.policy,
            "drift_checks": self.checks,
            "symbols": {s: asdict(self.symbol_link(a)) for s, a in self._actors().items()},
            "unresolved_orders": [asdict(u) for u in self.broker.unresolved()],
            "orders": asdict(self.broker.stats()),
        }

    # -- drift --------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Check drift every ``drift_check_s`` until cancelled (errors are skipped)."""
        task_status.started()
        while True:
            await anyio.sleep(self.drift_check_s)
            try:
                await self.check_drift()
            except BrokerError as exc:
                self.log.warning("drift_check_skipped", error=str(exc))

    async def start_up_mismatches(self, mismatches: Mapping[str, tuple[int, int]]) -> None:
        """Apply the policy to reconciliation's findings (before any actor starts)."""
        for symbol, (ours, theirs) in mismatches.items():
            self._broker_units[symbol] = theirs
            if self.policy == "adopt":
                await self._write_adoption(symbol, ours, theirs, price=None, actor=None)
            else:
                self._halt(symbol, ours, theirs)

    async def check_drift(self) -> None:
        """Compare every traded symbol's book with ``/openPositions`` once.

        Raises:
            BrokerError: OANDA could not be asked.
        """
        # Stops OANDA triggered are fills the actors have not booked yet: fetch them first
        # and count them as booked, or a stop-out would look like drift (issue 12).
        await self.broker.scan_protective()
        broker = await self.broker.open_positions()
        self.checks += 1
        unresolved = {u.symbol for u in self.broker.unresolved()}
        for symbol, actor in list(self._actors().items()):
            theirs, price = broker.get(symbol, (0, 0.0))
            self._broker_units[symbol] = theirs
            ours = actor.position.units + self.broker.queued_units(symbol)
            in_flight = actor.core.pending_units
            if theirs in (ours, ours + in_flight) or symbol in unresolved:
                self._suspect.pop(symbol, None)
                if symbol in self.drift and theirs == ours:
                    self.drift.pop(symbol)
                    self.log.warning("position_drift_cleared", symbol=symbol, units=ours)
                continue
            if self._suspect.get(symbol) != (ours, theirs):
                self._suspect[symbol] = (ours, theirs)  # seen once: confirm next time
                continue
            if self.policy == "adopt":
                await self._write_adoption(symbol, ours, theirs, price or None, actor)
            elif self.drift.get(symbol) != (ours, theirs):
                self._halt(symbol, ours, theirs)

    def _halt(self, symbol: str, ours: int, theirs: int) -> None:
        self.drift[symbol] = (ours, theirs)
        self.writer.submit(
            SQL_EVENT,
            (
                now_ns(),
                "position_drift",
                symbol,
                json.dumps({"daemon": ours, "broker": theirs, "policy": "halt"}),
            ),
        )
        self.log.error(
            "position_drift",
            symbol=symbol,
            daemon_units=ours,
            broker_units=theirs,
            policy="halt",
            hint=f"forexd ctl adopt {symbol}  |  forexd ctl flatten {symbol} --yes",
        )

    async def adopt(self, symbol: str) -> dict[str, Any]:
        """Take the broker's position of ``symbol`` as the daemon's (``ctl adopt``).

        Raises:
            BrokerError: OANDA could not be asked.
        """
        actor = self._actors()[symbol]
        theirs, price = (await self.broker.open_positions()).get(symbol, (0, 0.0))
        self._broker_units[symbol] = theirs
        ours = actor.position.units
        if theirs != ours:
            await self._write_adoption(symbol, ours, theirs, price or None, actor)
        self.drift.pop(symbol, None)
        self._suspect.pop(symbol, None)
        return {"symbol": symbol, "daemon_units_before": ours, "broker_units": theirs}

    async def _write_adoption(
        self, symbol: str, ours: int, theirs: int, price: float | None, actor: SymbolActor | None
    ) -> None:
        """Record the difference as a fill labelled ``adopt``, so a restart rebuilds it."""
        mark = price
        if mark is None and actor is not None and actor.last_bar is not None:
            mark = actor.last_bar.close
        ts = time.time_ns()
        fill = Fill(
            f"adopt-{self.installation_id}-{ts}",
            f"adopt-{ts}",
            symbol,
            theirs - ours,
            float(mark or 0.0),
            0.0,
            ts,
        )
        if actor is not None:
            await actor.adopt_fill(fill)
        else:
            pos = Position(symbol)
            pos.units, pos.avg_price = ours, float(mark or 0.0)
            realized = pos.apply(fill, get_instrument(symbol))
            queue_fill(self.writer, fill, realized, pos)
        self.drift.pop(symbol, None)
        self.writer.submit(
            SQL_EVENT,
            (
                now_ns(),
                "position_adopted",
                symbol,
                json.dumps({"daemon": ours, "broker": theirs, "fill_id": fill.fill_id}),
            ),
        )
        self.log.warning("position_adopted", symbol=symbol, daemon_units=ours, broker_units=theirs)
