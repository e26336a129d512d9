"""The risk layer inside the running daemon.

``RiskRuntime`` owns the :class:`~forexd.risk.RiskGate` and its state file. At start-up it
loads the file (creating it only on a truly first start), refuses to trade on a corrupt,
missing-with-history or foreign file, and re-applies any fills the file had not seen yet
(a crash can land between a fill being stored and the file being written; the fills
table is the source of truth, the file's ``fills_applied_seq`` the high-water mark).
While running it adapts the gate to the actors' ``OrderGate`` and feeds it equity and fills.

Persistence is on change, coalesced (DESIGN.md "Storage order and cost"). Every change
(an approval or denial, a fill, a new equity, an operator's resume, new limits) marks the
state dirty and wakes the persister task (:meth:`RiskRuntime.persist_loop`); it takes a
snapshot and writes it atomically under the file's portable lock, from a worker thread, so
file locks and fsync never run on the event loop. Changes made while a write is in flight
wake it once more: a burst of N changes costs the write in flight plus one after it, and
the last write always holds the last state.

There is no polling timer (until issue 9 the runtime looked every 0.2 s): a change after a
quiet spell is written at once. Only a *stream* of changes is paced: the persister starts
at most one write per :data:`MIN_WRITE_GAP_S`. Without that, a replay at speed, where every
bar moves the equity, rewrote the file after nearly every bar (measured: ~60 writes/s at
100 bars/s for one symbol, against ~4/s with the old timer), each ~0.5 ms of CPU under the
GIL in a worker thread — loop lag and a busy disk for no safety gain. An operator's resume
and the shutdown's final write do not wait for the pace.

The file is never ahead of the fills table: before writing a snapshot that counts fills the
last write did not, the persister waits until the storage writer has committed every write
queued so far (``flush``). A snapshot with no new fill (equity, approvals, states) is
written without that wait — approvals are re-read from the orders table at start-up. Writes
are serialised (one lock), so an operator's resume written at once can never be overtaken
by an older snapshot. At shutdown the supervisor stops the persister first, then flushes
the writer and calls :meth:`RiskRuntime.persist` once for the final state, then closes the
writer: nothing persists through a closed writer.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import anyio

from forexd.actors.core import GateDecision
from forexd.errors import RiskStateError
from forexd.risk import Denial, Holding, RiskGate, RiskLimits, RiskState
from forexd.storage.db import open_sync
from forexd.storage.riskstate import RiskStateStore, ahead_of_database

MIN_WRITE_GAP_S = 0.05
"""Least time between the starts of two persister writes (guessed: 20 writes/s at most keeps
a replay's stream of equity changes cheap; a crash loses at most this much, as the old
0.2 s timer lost up to 0.2 s)."""


async def _no_flush() -> None:
    """Default until :meth:`RiskRuntime.bind`: nothing is queued yet."""


def fills_seed(db_path: Path) -> Callable[[RiskState], RiskState]:
    """A repair seed that marks every stored fill as applied (P&L by FX day rebuilt)."""

    def seed(state: RiskState) -> RiskState:
        gate = RiskGate(RiskLimits(), state)
        for seq, realized, commission, ts in _fills_after(db_path, 0):
            gate.apply_fill(seq, realized, commission, ts)
        return gate.snapshot()

    return seed


def _fills_after(db_path: Path, seq: int) -> list[tuple[int, float, float, int]]:
    if not db_path.exists():
        return []
    conn = open_sync(db_path)
    try:
        rows = conn.execute(
            "SELECT rowid, realized_pnl, commission, ts FROM fills WHERE rowid > ? ORDER BY rowid",
            (seq,),
        ).fetchall()
    finally:
        conn.close()
    return [(int(r[0]), float(r[1]), float(r[2]), int(r[3])) for r in rows]


def _gate_orders(db_path: Path) -> int:
    """Orders the gate approved that reached the orders table (operator flattens skip it)."""
    if not db_path.exists():
        return 0
    conn = open_sync(db_path)
    try:
        (n,) = conn.execute(
            "SELECT COUNT(*) FROM orders WHERE reason != 'operator flatten'"
        ).fetchone()
    finally:
        conn.close()
    return int(n)


class RiskRuntime:
    """See the module note."""

    def __init__(
        self, limits: RiskLimits, state_path: Path, db_path: Path, account_id: str, log: Any
    ) -> None:
        self.limits = limits
        self.store = RiskStateStore(state_path, account_id)
        self.db_path = db_path
        self.log = log
        self.gate: RiskGate | None = None
        self._seq = 0
        # Changes are counted here, not by comparing gate versions: a new gate (new limits)
        # starts its own version count. ``_seen_version`` is the gate's version last counted.
        self._seen_version = -1
        self._changes = 0  # changes seen since start
        self._written = -1  # ``_changes`` as of the snapshot last written (-1: none yet)
        self._written_fills_seq = -1  # fills_applied_seq of the last written snapshot
        self._dirty = anyio.Event()  # set by a change; the persister replaces it when it wakes
        self._write_done = anyio.Event()  # set (and replaced) after every write
        self._write_lock = anyio.Lock()  # one write at a time, in snapshot order
        self.writes = 0  # files written since start (ctl risk shows it)
        self._holdings: Callable[[], Mapping[str, Holding]] = dict
        self._equity = 0.0
        self._flush: Callable[[], Awaitable[None]] = _no_flush
        # (scope, new state, cause) -> changes since start, for forexd_risk_state_changes_total:
        # a state that flips and flips back between two scrapes still shows in the counter.
        self.state_changes: dict[tuple[str, str, str], int] = {}

    def load(self) -> RiskState:
        """Load (or create on first start) the state and catch up on stored fills.

        Raises:
            RiskStateError: the file is corrupt, foreign, or missing while fills exist.
        """
        stored = _fills_after(self.db_path, 0)
        if not self.store.exists():
            if stored:
                raise RiskStateError(
                    f"risk state file {self.store.path} is missing but the store has "
                    f"{len(stored)} fills; refusing to trade with a blank risk state. "
                    "Rebuild it from the fills with `forexd risk repair`"
                )
            state = self.store.init()
            self.log.info("risk_state_created", path=str(self.store.path))
        else:
            state = self.store.read()
        # -- integrity (issue 10): a state that has counted fills the database does not
        # hold means the database was emptied, replaced or rolled back: trading on would
        # leave the next fills out of daily-loss and drawdown accounting.
        last_fill = stored[-1][0] if stored else 0
        if state.fills_applied_seq > last_fill:
            raise ahead_of_database(self.store.path, self.db_path, state, last_fill)
        # the orders table is the authority for approvals. A kill
        # loses approvals counted since the last persist (their orders were written
        # ahead), and a decision replayed after a restart is approved again but never
        # resent; both are set right here.
        state = state.model_copy(update={"approvals": _gate_orders(self.db_path)})
        # -- end integrity
        gate = RiskGate(self.limits, state)
        caught_up = 0
        for seq, realized, commission, ts in stored:
            if gate.apply_fill(seq, realized, commission, ts):
                caught_up += 1
            self._seq = seq
        self.gate = gate
        self._log_audit()
        self._count_change()
        self.persist_now()
        self.log.info(
            "risk_state_loaded", fills_caught_up=caught_up, account_state=gate.state_of().value
        )
        return gate.snapshot()

    def bind(
        self,
        holdings: Callable[[], Mapping[str, Holding]],
        flush: Callable[[], Awaitable[None]],
    ) -> None:
        """Tell the runtime how to see every position, and how to flush the fills queue.

        ``flush`` must return only when every write queued so far is committed: a
        snapshot is written to the file only after the fills it has counted are on disk,
        so after a crash the file never runs ahead of the fills table.
        """
        self._holdings = holdings
        self._flush = flush

    # -- OrderGate -----------------------------------------------------------------

    def check(
        self,
        symbol: str,
        units: int,
        position_units: int,
        price: float,
        ts: int,
        stop_distance: float | None = None,
    ) -> GateDecision:
        """Adapt the gate to :class:`~forexd.actors.core.OrderGate`."""
        assert self.gate is not None
        holdings = dict(self._holdings())
        holdings[symbol] = Holding(position_units, price)
        result = self.gate.check(
            symbol,
            units,
            price=price,
            positions=holdings,
            equity=self._equity,
            now_ns=ts,
            stop_distance=stop_distance,
        )
        self._log_audit()
        self._changed()
        if isinstance(result, Denial):
            return GateDecision(0, result.reason.value)
        return GateDecision(result.units, None)

    # -- events --------------------------------------------------------------------

    def on_fill(self, realized: float, commission: float, ts: int) -> None:
        """A fill was recorded (fills are numbered in the order they are stored)."""
        assert self.gate is not None
        self._seq += 1
        self.gate.apply_fill(self._seq, realized, commission, ts)
        self._log_audit()
        self._changed()

    def observe_equity(self, equity: float, ts: int) -> None:
        """Feed the account equity (daily loss, drawdown)."""
        assert self.gate is not None
        self._equity = equity
        self.gate.observe_equity(equity, ts)
        self._log_audit()
        self._changed()

    def _log_audit(self) -> None:
        assert self.gate is not None
        for rec in self.gate.drain_audit():
            key = (rec.scope, rec.new_state.value, rec.cause.value)
            self.state_changes[key] = self.state_changes.get(key, 0) + 1
            self.log.warning(
                "risk_state_changed",
                scope=rec.scope,
                old=rec.old_state.value,
                new=rec.new_state.value,
                cause=rec.cause.value,
                actor=rec.actor,
                note=rec.note,
            )

    # -- persistence ---------------------------------------------------------------

    def _count_change(self) -> bool:
        """Count a change if the gate's version moved since the last count; True if so."""
        assert self.gate is not None
        version = self.gate.version
        if version == self._seen_version:
            return False
        self._seen_version = version
        self._changes += 1
        return True

    def _changed(self) -> None:
        """After anything that may have changed the gate (on the loop): wake the persister."""
        if self._count_change():
            self._dirty.set()

    @property
    def dirty(self) -> bool:
        """Whether the state holds changes no write has covered yet."""
        if self.gate is not None:
            self._count_change()
        return self._written != self._changes

    async def persist(self) -> None:
        """Write the state now if it changed since the last write; returns once it is on disk.

        Snapshot, then (only if it counts fills the last write did not) wait for the fills
        it counted to be committed, then write atomically in a worker thread. Writes are
        serialised; a call that finds nothing new returns at once.
        """
        assert self.gate is not None
        async with self._write_lock:
            self._count_change()
            changes = self._changes
            if changes == self._written:
                return
            snapshot = self.gate.snapshot()
            if snapshot.fills_applied_seq != self._written_fills_seq:
                await self._flush()
            await anyio.to_thread.run_sync(self.store.update, lambda _old: snapshot)
            self._wrote(changes, snapshot.fills_applied_seq)
            done, self._write_done = self._write_done, anyio.Event()
            done.set()  # on the loop: wake wait_written()

    def persist_now(self) -> None:
        """Write the state if it changed (blocking). Only where no fills are queued and no
        persister runs: at load (the state came from the fills table) and after the writer
        has closed."""
        assert self.gate is not None
        self._count_change()
        changes = self._changes
        if changes == self._written:
            return
        snapshot = self.gate.snapshot()
        self.store.update(lambda _old: snapshot)
        self._wrote(changes, snapshot.fills_applied_seq)

    def _wrote(self, changes: int, fills_seq: int) -> None:
        # Counters only: persist_now runs in a worker thread, where no anyio event is set.
        self._written = changes
        self._written_fills_seq = fills_seq
        self.writes += 1

    async def wait_written(self) -> None:
        """Return once every change made before this call is on disk (by the persister)."""
        assert self.gate is not None
        self._changed()
        target = self._changes
        while self._written < target:
            await self._write_done.wait()

    async def persist_loop(self) -> None:
        """Persist every change as it happens, coalesced, until cancelled (see the module
        note): wait for a change, write, repeat; changes during a write wake it once more,
        and a stream of changes is written at most once per :data:`MIN_WRITE_GAP_S`."""
        if self.dirty:
            self._dirty.set()
        last_start = -math.inf
        while True:
            await self._dirty.wait()
            pace = last_start + MIN_WRITE_GAP_S - anyio.current_time()
            if pace > 0:  # a stream of changes: not a poll, a change is already pending
                await anyio.sleep(pace)
            self._dirty = anyio.Event()  # changes from here on wake the next round
            last_start = anyio.current_time()
            await self.persist()

    def update_limits(self, limits: RiskLimits) -> None:
        """New limits (hot reload); the state — days, peaks, halts — carries over."""
        assert self.gate is not None
        self.limits = limits
        self.gate = RiskGate(limits, self.gate.snapshot())
        self._seen_version = -1  # a new gate counts its own versions
        self._changed()
        self.log.warning("risk_limits_changed", limits=limits.model_dump(mode="json"))

    # -- operator ------------------------------------------------------------------

    async def resume(self, symbol: str | None, note: str) -> dict[str, Any]:
        """Lift ``halted``/``reducing`` (audit-logged); persisted at once.

        Raises:
            ValueError: the gate refused (e.g. an empty note).
        """
        assert self.gate is not None
        rec = self.gate.resume(symbol, note, now_ns=time.time_ns())
        self._log_audit()
        self._changed()
        self.log.warning("risk_resumed_by_operator", scope=rec.scope, note=note)
        await self.persist()
        return rec.model_dump(mode="json")

    def report(self) -> dict[str, Any]:
        """Limits, usage and states for ``ctl risk`` / ``ctl status``."""
        assert self.gate is not None
        stats = asdict(self.gate.stats())
        snap = self.gate.snapshot()
        return {
            "account_id": self.store.account_id,
            "file": str(self.store.path),
            "limits": self.limits.model_dump(mode="json"),
            "stats": {k: _jsonable(v) for k, v in stats.items()},
            "realized_pnl_by_day": {
                str(k): round(v, 2) for k, v in list(snap.realized_pnl_by_day.items())[-7:]
            },
            "fills_applied_seq": snap.fills_applied_seq,
            "persist": {"writes": self.writes, "dirty": self.dirty},
            "audit": [a.model_dump(mode="json") for a in snap.audit[-20:]],
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(getattr(k, "value", k)): _jsonable(v) for k, v in value.items()}
    return getattr(value, "value", value) if not isinstance(value, float | int | str) else value
