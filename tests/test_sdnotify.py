"""systemd notify protocol, against a real AF_UNIX datagram socket standing in for PID 1."""

from __future__ import annotations

import functools
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from forexd.daemon.looplag import LoopLagMonitor
from forexd.daemon.sdnotify import Notifier, watchdog_task

pytestmark = pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="needs AF_UNIX")

RECEIVE_TIMEOUT_S = 5.0


class NotifySocket:
    """The receiving end of ``$NOTIFY_SOCKET``."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)

    def receive(self, timeout_s: float = RECEIVE_TIMEOUT_S) -> str:
        """The next datagram; raises TimeoutError when none arrives in time."""
        self.sock.settimeout(timeout_s)
        return self.sock.recv(4096).decode()

    async def areceive(self, timeout_s: float = RECEIVE_TIMEOUT_S) -> str:
        """:meth:`receive` without blocking the event loop."""
        return await anyio.to_thread.run_sync(self.receive, timeout_s)

    def drain(self) -> list[str]:
        """Every datagram already queued, without waiting."""
        self.sock.setblocking(False)
        out = []
        while True:
            try:
                out.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return out


@pytest.fixture
def notify_sock(short_tmp: Path) -> Iterator[NotifySocket]:
    """A datagram socket bound to a file path."""
    receiver = NotifySocket(str(short_tmp / "notify.sock"))
    yield receiver
    receiver.sock.close()


def test_without_notify_socket_the_notifier_is_a_silent_no_op() -> None:
    """No NOTIFY_SOCKET: disabled, and every call returns False without raising."""
    notifier = Notifier.from_env({})
    assert (False, False, False) == (notifier.enabled, notifier.ready(), notifier.watchdog())
    assert None is notifier.watchdog_interval_s()


def test_messages_arrive_as_one_datagram_each(notify_sock: NotifySocket) -> None:
    """READY with STATUS, STATUS, WATCHDOG and STOPPING are sent as systemd expects."""
    notifier = Notifier.from_env({"NOTIFY_SOCKET": notify_sock.address})
    assert notifier.ready("trading 3 symbols")
    notifier.status("retraining EURUSD")
    notifier.watchdog()
    notifier.stopping()
    received = [notify_sock.receive() for _ in range(4)]
    expected = [
        "READY=1\nSTATUS=trading 3 symbols",
        "STATUS=retraining EURUSD",
        "WATCHDOG=1",
        "STOPPING=1",
    ]
    assert expected == received


def test_abstract_namespace_address_is_reached() -> None:
    """An address starting with @ is a name in the abstract namespace."""
    receiver = NotifySocket(f"@forexd-test-{uuid.uuid4().hex}")
    try:
        Notifier(receiver.address).ready()
        assert "READY=1" == receiver.receive()
    finally:
        receiver.sock.close()


def test_reloading_carries_the_monotonic_clock_in_microseconds(
    notify_sock: NotifySocket,
) -> None:
    """RELOADING=1 comes with MONOTONIC_USEC read from CLOCK_MONOTONIC."""
    before = time.monotonic_ns() // 1000
    Notifier(notify_sock.address).reloading()
    after = time.monotonic_ns() // 1000
    first, second = notify_sock.receive().split("\n")
    key, value = second.split("=")
    assert ("RELOADING=1", "MONOTONIC_USEC") == (first, key)
    assert before <= int(value) <= after


def test_status_text_with_newlines_stays_one_field(notify_sock: NotifySocket) -> None:
    """A newline in a status would start a bogus field, so it becomes a space."""
    Notifier(notify_sock.address).status("line one\nline two")
    assert "STATUS=line one line two" == notify_sock.receive()


def test_extend_timeout_is_sent_in_microseconds(notify_sock: NotifySocket) -> None:
    """EXTEND_TIMEOUT_USEC asks systemd for more time."""
    Notifier(notify_sock.address).extend_timeout(2.5)
    assert "EXTEND_TIMEOUT_USEC=2500000" == notify_sock.receive()


def test_a_send_to_a_missing_socket_fails_quietly(short_tmp: Path) -> None:
    """A vanished NOTIFY_SOCKET makes notifications return False, never raise."""
    notifier = Notifier(str(short_tmp / "nobody-listens.sock"))
    assert (False, False) == (notifier.ready(), notifier.watchdog())


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_counts_only_for_this_process(
    env: dict[str, str], expected: float | None
) -> None:
    """WATCHDOG_USEC applies when WATCHDOG_PID is unset or names this process."""
    notifier = Notifier.from_env({"NOTIFY_SOCKET": "/run/systemd/notify", **env})
    assert expected == notifier.watchdog_interval_s()


def test_ping_period_is_half_the_watchdog_interval() -> None:
    """The ping period is half of WatchdogSec, as sd_watchdog_enabled(3) advises."""
    notifier = Notifier("/run/systemd/notify", watchdog_usec=30_000_000)
    assert 15.0 == notifier.watchdog_period_s()


def test_unset_environment_keeps_children_from_inheriting_the_socket(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """unset_environment removes the variables after reading them."""
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    notifier = Notifier.from_env(unset_environment=True)
    assert (True, 1.0) == (notifier.enabled, notifier.watchdog_interval_s())
    assert (None, None) == (os.environ.get("NOTIFY_SOCKET"), os.environ.get("WATCHDOG_USEC"))


@pytest.mark.anyio
async def test_lifecycle_is_ready_then_watchdog_pings_then_stopping(
    notify_sock: NotifySocket,
) -> None:
    """A healthy daemon sends READY, keeps pinging WATCHDOG, and ends with STOPPING."""
    notifier = Notifier(notify_sock.address, watchdog_usec=40_000)
    notifier.ready("running")
    async with anyio.create_task_group() as tg:
        await tg.start(functools.partial(watchdog_task, notifier, lambda: 0.0, max_lag_s=1.0))
        received = [await notify_sock.areceive() for _ in range(4)]
        tg.cancel_scope.cancel()
    notifier.stopping()
    received += notify_sock.drain()
    assert ["READY=1\nSTATUS=running", "WATCHDOG=1", "WATCHDOG=1", "WATCHDOG=1"] == received[:4]
    assert [] == [m for m in received[4:-1] if m != "WATCHDOG=1"]
    assert "STOPPING=1" == received[-1]


async def stall_loop(blocks: int = 4, block_s: float = 0.4) -> None:
    """Block the event loop ``block_s`` at a time, yielding once between blocks.

    Between blocks the watchdog task gets to run, so a ping it sends is caught.
    """
    for _ in range(blocks):
        time.sleep(block_s)  # noqa: ASYNC251 - blocking the loop is the point
        await anyio.lowlevel.checkpoint()


@pytest.mark.anyio
async def test_watchdog_pings_stop_while_the_loop_is_blocked(notify_sock: NotifySocket) -> None:
    """Blocking the loop repeatedly withholds every ping, even when the task gets to run."""
    notifier = Notifier(notify_sock.address)
    monitor = LoopLagMonitor()
    async with anyio.create_task_group() as tg:
        await tg.start(monitor.run)
        await tg.start(
            functools.partial(
                watchdog_task, notifier, monitor.recent_max_s, max_lag_s=0.2, period_s=0.05
            )
        )
        assert "WATCHDOG=1" == await notify_sock.areceive()
        notify_sock.drain()
        await stall_loop()
        during_stall = notify_sock.drain()
        assert [] == [m for m in during_stall if m == "WATCHDOG=1"]
        assert "WATCHDOG=1" == await notify_sock.areceive()  # healthy again: pings resume
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_watchdog_own_wake_up_delay_detects_a_blocked_loop(
    notify_sock: NotifySocket,
) -> None:
    """With a probe that sees no lag, the task's own late wake-ups still withhold pings."""
    notifier = Notifier(notify_sock.address)
    async with anyio.create_task_group() as tg:
        await tg.start(
            functools.partial(watchdog_task, notifier, lambda: 0.0, max_lag_s=0.2, period_s=0.05)
        )
        assert "WATCHDOG=1" == await notify_sock.areceive()
        notify_sock.drain()
        await stall_loop()
        assert [] == [m for m in notify_sock.drain() if m == "WATCHDOG=1"]
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_watchdog_withholds_pings_while_the_lag_probe_reports_lag(
    notify_sock: NotifySocket,
) -> None:
    """A lag above the threshold from the probe alone stops the pings until it drops."""
    notifier = Notifier(notify_sock.address)
    lag = {"now": 5.0}
    probed = anyio.Event()
    calls = {"n": 0}

    def probe() -> float:
        calls["n"] += 1
        if calls["n"] >= 5:
            probed.set()
        return lag["now"]

    async with anyio.create_task_group() as tg:
        await tg.start(
            functools.partial(watchdog_task, notifier, probe, max_lag_s=1.0, period_s=0.01)
        )
        with anyio.fail_after(RECEIVE_TIMEOUT_S):
            await probed.wait()
        assert [] == notify_sock.drain()
        lag["now"] = 0.0
        assert "WATCHDOG=1" == await notify_sock.areceive()
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_watchdog_task_returns_without_a_configured_watchdog(
    notify_sock: NotifySocket,
) -> None:
    """No WatchdogSec and no period given: the task reports started and returns."""
    with anyio.fail_after(RECEIVE_TIMEOUT_S):
        async with anyio.create_task_group() as tg:
            await tg.start(
                functools.partial(
                    watchdog_task, Notifier(notify_sock.address), lambda: 0.0, max_lag_s=1.0
                )
            )
    assert [] == notify_sock.drain()
