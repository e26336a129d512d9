"""The broker guard: reduce-only arithmetic, degraded/stale/reducing states, drift policy."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from forexd.actors.core import GateDecision
from forexd.daemon.brokerguard import BrokerGuard, reduce_only


@pytest.mark.parametrize(
    ("units", "bases", "allowed"),
    [
        (-500, [1000], -500),  # reduces a long
        (-3000, [1000], -1000),  # clipped at flat, never flips
        (500, [1000], 0),  # adds to a long
        (-500, [0], 0),  # a flat position cannot open
        (-2000, [1000, 3000], -1000),  # two books: the smaller bounds it
        (-500, [1000, -1000], 0),  # reduces one book, grows the other
    ],
)
def test_reduce_only_brings_every_book_closer_to_zero(
    units: int, bases: list[int], allowed: int
) -> None:
    """Only what reduces every candidate position passes, clipped at zero."""
    assert allowed == reduce_only(units, bases)


@dataclass
class _View:
    client_id: str
    symbol: str
    units: int
    age_s: float = 0.0
    cause: str = "HTTP 503"
    created: bool = False


@dataclass
class _Broker:
    problem: str | None = None
    pending: list[_View] = field(default_factory=list)
    held: dict[str, tuple[int, float]] = field(default_factory=dict)
    queued: dict[str, int] = field(default_factory=dict)  # stop fills not booked yet
    scans: int = 0

    def health(self) -> str | None:
        return self.problem

    async def scan_protective(self) -> None:
        self.scans += 1

    def queued_units(self, symbol: str) -> int:
        return self.queued.get(symbol, 0)

    def unresolved(self) -> list[_View]:
        return self.pending

    async def open_positions(self) -> dict[str, tuple[int, float]]:
        return self.held

    def stats(self) -> Any:
        return None


@dataclass
class _Pos:
    units: int = 0


@dataclass
class _Core:
    pending_units: int = 0


@dataclass
class _Actor:
    symbol: str = "EURUSD"
    state: str = "running"
    last_error: str | None = None
    position: _Pos = field(default_factory=_Pos)
    core: _Core = field(default_factory=_Core)
    last_bar: Any = None
    adopted: list[Any] = field(default_factory=list)

    async def adopt_fill(self, fill: Any) -> None:
        self.adopted.append(fill)
        self.position.units += fill.units


class _Log:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Any:
        return lambda event, **kw: self.events.append((event, kw))


class _Writer:
    def __init__(self) -> None:
        self.rows: list[Any] = []

    def submit(self, sql: str, params: Any) -> None:
        self.rows.append(params)


def guard(broker: _Broker, actor: _Actor, policy: str = "halt") -> BrokerGuard:
    """A guard over stand-ins (no inner risk gate, no feed)."""
    return BrokerGuard(
        broker,  # type: ignore[arg-type]
        None,
        lambda: {actor.symbol: actor},  # type: ignore[dict-item]
        _Writer(),  # type: ignore[arg-type]
        _Log(),
        inner=None,
        policy=policy,  # type: ignore[arg-type]
    )


def test_nothing_is_sent_while_the_broker_is_degraded() -> None:
    """OANDA unreachable: every order is denied with the reason; the daemon is degraded."""
    g = guard(_Broker(problem="OANDA unreachable: HTTP 503"), _Actor(position=_Pos(1000)))
    decision = g.check("EURUSD", -1000, 1000, 1.1, 0)
    assert GateDecision(0, "degraded: OANDA unreachable: HTTP 503") == decision
    assert "degraded" == g.daemon_state("running")


def test_an_unresolved_order_allows_only_reducing_both_ways() -> None:
    """Position 1000 with +500 unresolved: a sell is capped at 1000, a buy is denied."""
    actor = _Actor(position=_Pos(1000), core=_Core(500))
    g = guard(_Broker(pending=[_View("c1", "EURUSD", 500)]), actor)
    assert 0 == g.check("EURUSD", 200, 1500, 1.1, 0).units
    assert GateDecision(-1000, None) == g.check("EURUSD", -1500, 1500, 1.1, 0)
    assert "reducing" == g.symbol_link(actor).state  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_drift_seen_twice_halts_the_symbol_and_adopt_lifts_it() -> None:
    """Daemon 0, broker 4000: halted after two checks; adopt records the difference."""
    actor = _Actor()
    broker = _Broker(held={"EURUSD": (4000, 1.1)})
    g = guard(broker, actor)
    await g.check_drift()
    assert {} == g.drift  # one sighting may race a fill
    await g.check_drift()
    assert {"EURUSD": (0, 4000)} == g.drift
    assert 0 == g.check("EURUSD", 1000, 0, 1.1, 0).units
    result = await g.adopt("EURUSD")
    assert (0, 4000, {}) == (result["daemon_units_before"], result["broker_units"], g.drift)
    assert [4000] == [f.units for f in actor.adopted]
    assert GateDecision(1000, None) == g.check("EURUSD", 1000, 4000, 1.1, 0)


@pytest.mark.anyio
async def test_in_flight_units_are_not_drift() -> None:
    """The broker already holds an order the actor has not recorded yet: no halt."""
    actor = _Actor(position=_Pos(0), core=_Core(1000))
    g = guard(_Broker(held={"EURUSD": (1000, 1.1)}), actor)
    await g.check_drift()
    await g.check_drift()
    assert {} == g.drift


@pytest.mark.anyio
async def test_a_stop_fill_fetched_but_not_yet_booked_is_not_drift() -> None:
    """OANDA's stop closed the 1000 long; the fill waits for the next bar: no halt."""
    actor = _Actor(position=_Pos(1000))
    broker = _Broker(held={}, queued={"EURUSD": -1000})
    g = guard(broker, actor)
    await g.check_drift()
    await g.check_drift()
    assert ({}, 2) == (g.drift, broker.scans)
    broker.queued = {}  # without the fill the same books are drift
    await g.check_drift()
    await g.check_drift()
    assert {"EURUSD": (1000, 0)} == g.drift


@pytest.mark.anyio
async def test_policy_adopt_takes_the_broker_position_without_halting() -> None:
    """drift_policy = adopt: the mismatch is adopted at its second sighting."""
    actor = _Actor(position=_Pos(1000))
    g = guard(_Broker(held={"EURUSD": (3000, 1.1)}), actor, policy="adopt")
    await g.check_drift()
    await g.check_drift()
    assert ({}, 3000) == (g.drift, actor.position.units)
