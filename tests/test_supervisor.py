"""The supervisor in process (anyio): start-up, shutdown order, a stop during start-up.

blockbuster (tests/conftest.py) fails any of these if forexd blocks the event loop.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anyio
import pytest

from forexd.config import load_settings
from forexd.daemon.logsetup import configure_logging
from forexd.daemon.paths import resolve_paths
from forexd.daemon.supervisor import Daemon
from forexd.storage.riskstate import RiskStateStore

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
