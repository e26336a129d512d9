"""The supervisor in process (anyio): start-up, shutdown order, a stop during start-up.

blockbuster (tests/conftest.py) fails any of these if forexd blocks the event loop.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from forexd.config import load_settings
from forexd.daemon.logsetup import configure_logging
from forexd.daemon.paths import resolve_paths
from forexd.daemon.supervisor import Daemon
from forexd.domain import Bar, Fill
from forexd.feeds.base import is_replay
from forexd.storage.db import read_all
from forexd.storage.riskstate import RiskStateStore
from tests._inproc import InProcessDaemon, make_daemon, write_daemon_config

pytestmark = pytest.mark.anyio

CONFIG = """
data_dir = "{tmp}/data"
runtime_dir = "{tmp}/run"

[feed]
source = "bundled"
speed = 0
end = "2017-04-01"

[[symbols]]
symbol = "EURUSD"
params = {{ fast = 3, slow = 5, units = 10000 }}
"""


@pytest.fixture
def daemon(short_tmp: Path) -> Daemon:
    """A daemon built (not started) from a config file, off the event loop."""
    configure_logging("warning", "json")
    cfg = short_tmp / "forexd.toml"
    cfg.write_text(CONFIG.format(tmp=short_tmp), encoding="utf-8")
    settings = load_settings(cfg)
    return Daemon(settings, resolve_paths(settings), exit_when_done=True, config_path=cfg)


def _fills(db: Path) -> tuple[int, int]:
    with sqlite3.connect(db) as conn:
        count, last = conn.execute("SELECT COUNT(*), COALESCE(MAX(rowid), 0) FROM fills").fetchone()
    return int(count), int(last)


async def test_a_full_run_stops_with_every_fill_stored_and_counted_by_the_risk_file(
    daemon: Daemon,
) -> None:
    """Feed exhausted -> shutdown: fills on disk, risk file caught up, lock released."""
    with anyio.fail_after(120):
        await daemon.run()
    assert "all feeds exhausted" == daemon.stop_reason
    actor = daemon.actors["EURUSD"]
    assert actor.orders.fills > 5
    count, last = await anyio.to_thread.run_sync(_fills, daemon.paths.db)
    assert actor.orders.fills == count  # the final flush wrote every fill
    state = await anyio.to_thread.run_sync(
        RiskStateStore(daemon.paths.risk_state, daemon.settings.account_id).read
    )
    assert last == state.fills_applied_seq  # persisted after the fills, and not ahead
    assert not await anyio.to_thread.run_sync(daemon.paths.pidfile.exists)


async def test_a_stop_during_start_up_cancels_it_and_stops_cleanly(daemon: Daemon) -> None:
    """request_stop before `ready`: run() returns normally, never reports ready."""
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(daemon.run)
            await anyio.lowlevel.checkpoint()  # run() has begun (pid lock, signals)
            daemon.request_stop("test")
    assert not daemon.ready.is_set()
    assert "stopping" == daemon.state
    assert not await anyio.to_thread.run_sync(daemon.paths.pidfile.exists)


async def test_an_in_process_run_leaves_the_host_process_signal_handlers_alone(
    daemon: Daemon,
) -> None:
    """Only `forexd run` installs the early stop handlers; a library/test host keeps its own."""
    import signal

    before = signal.getsignal(signal.SIGINT)
    with anyio.fail_after(120):
        await daemon.run()
    assert before == signal.getsignal(signal.SIGINT)


H1_NS = 3600 * 1_000_000_000
BARS = [
    Bar("EURUSD", 1_500_000_000 * 1_000_000_000 + i * H1_NS, 1.1, 1.1002, 1.0998, 1.1, 10.0)
    for i in range(6)
]
ONE_SYMBOL = """
[[symbols]]
symbol = "EURUSD"
params = { fast = 3, slow = 5, units = 10000 }
"""


class OneChunkFeed:
    """A replay-like feed that hands each symbol all of :data:`BARS` in one message."""

    recorded = True

    async def bars(self, symbol: str, after_ts: int | None = None) -> AsyncIterator[Bar]:
        """The same bars one at a time (the actor takes :meth:`chunks`)."""
        for bar in BARS:
            yield bar

    async def chunks(self, symbol: str, after_ts: int | None = None) -> AsyncIterator[list[Bar]]:
        """One chunk, then nothing more for as long as the daemon runs."""
        yield [b for b in BARS if after_ts is None or b.ts > after_ts]
        await anyio.sleep_forever()


class HeldDaemon(InProcessDaemon):
    """The real daemon on :class:`OneChunkFeed`; its paper broker keeps ``BARS[4]`` forever."""

    held: anyio.Event  # set (by the test's loop) once BARS[4] reached the broker

    async def _make_feed(self, tg: Any) -> Any:
        return OneChunkFeed()

    async def _make_broker(self, tg: Any) -> Any:
        broker = await super()._make_broker(tg)
        real = broker.on_bar

        async def on_bar(bar: Bar) -> list[Fill]:
            if bar.ts == BARS[4].ts:
                self.held.set()
                await anyio.sleep_forever()
            return await real(bar)

        broker.on_bar = on_bar  # type: ignore[method-assign]
        return broker


async def test_a_stop_inside_a_chunk_keeps_the_progress_of_the_last_finished_bar(
    short_tmp: Path,
) -> None:
    """Stopped mid-chunk, before its per-message write: the store has the actor's progress."""
    configure_logging("warning", "json")
    config = write_daemon_config(short_tmp, ONE_SYMBOL)
    daemon = await anyio.to_thread.run_sync(make_daemon, config, HeldDaemon)
    daemon.held = anyio.Event()
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(daemon.run)
            await daemon.held.wait()  # BARS[:4] done, BARS[4] inside the broker
            daemon.request_stop("test")
    assert 4 == daemon.actors["EURUSD"].core.bars_seen
    stored = await read_all(daemon.paths.db, "SELECT last_bar_ts, bars_seen FROM actor_progress")
    assert [(BARS[3].ts, 4)] == stored


def test_a_live_daemon_imports_no_pandas_and_still_knows_a_replay_feed() -> None:
    """The runtime of a live (OANDA) daemon loads without pandas (~0.3 s of its start)."""
    code = (
        "import sys, forexd.cli.run, forexd.daemon.runner, forexd.feeds.oanda, "
        "forexd.brokers.oanda; print('pandas' in sys.modules)"
    )
    child = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert (0, "False") == (child.returncode, child.stdout.strip()), child.stderr
    from forexd.feeds.replay import ReplayFeed

    assert is_replay(ReplayFeed({}, speed=0.0))
    assert not is_replay(OneChunkFeed())
