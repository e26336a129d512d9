"""End to end: SIGTERM and SIGINT at random moments always stop the daemon cleanly.

40 real ``forexd run`` subprocesses (20 SIGTERM, 20 SIGINT) on the bundled OANDA sample;
each gets one signal at a random moment, from the instant its handler is installed
(start-up: imports, store, broker, reconciliation, actors) to mid-trading with fills and
risk-state writes in flight. Every one must log ``stopped`` and exit 0 within
``shutdown_timeout_s``. Daemons run in a few parallel lanes that reuse their data
directory, so later daemons also restart from a store and a risk file (restore paths).
"""

from __future__ import annotations

import random
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.daemon_proc import DaemonProc, handles_signal, write_config

pytestmark = pytest.mark.e2e

SHUTDOWN_TIMEOUT_S = 8.0
EXIT_GRACE_S = 4.0  # interpreter teardown after `stopped` (joins, atexit), on a loaded box
LANES = 2  # parallel daemons: more would mostly measure this test's own load
PER_SIGNAL = 20

# Replay at 0 (as fast as possible: many fills, risk writes, a busy storage writer) or at
# 72000x (bars trickle in, the loop mostly idles).
CONFIG = """
shutdown_timeout_s = {timeout}
equity_snapshot_every_bars = 5

[feed]
source = "bundled"
speed = {speed}
end = "2017-09-01"

[[symbols]]
symbol = "EURUSD"
strategy = "sma_cross"
params = {{ fast = 3, slow = 5, units = 10000 }}
"""


def _one_stop(lane_dir: Path, config: Path, sig: int, rng: random.Random) -> str:
    """Start a daemon, signal it at a random moment, assert the clean stop; return the phase."""
    d = DaemonProc(lane_dir, config)
    try:
        deadline = time.monotonic() + 30
        while not handles_signal(d.proc.pid, signal.SIGTERM):
            assert d.proc.poll() is None, f"daemon died before handling signals\n{d.diagnostics()}"
            assert time.monotonic() < deadline, f"no SIGTERM handler\n{d.diagnostics()}"
            time.sleep(0.002)  # polling /proc: there is no event for "handler installed"
        if rng.random() < 0.5:
            time.sleep(rng.uniform(0.0, 1.5))  # early: mostly during start-up
        else:
            d.wait_for("ready")
            time.sleep(rng.uniform(0.0, 1.0))  # late: trading
        phase = "running" if d.events("ready") else "starting"
        sent = time.monotonic()
        d.proc.send_signal(sig)
        rc = d.wait(timeout=SHUTDOWN_TIMEOUT_S + EXIT_GRACE_S)
        took = time.monotonic() - sent
        name = signal.Signals(sig).name
        assert rc == 0, f"{name} while {phase}: exit code {rc}\n{d.diagnostics()}"
        assert d.events("stopped"), f"{name} while {phase}: no 'stopped'\n{d.diagnostics()}"
        assert not d.events("shutdown_timeout"), f"{name}: shutdown timed out\n{d.diagnostics()}"
        assert took < SHUTDOWN_TIMEOUT_S + EXIT_GRACE_S
        return phase
    finally:
        d.kill()


def test_sigterm_and_sigint_at_random_moments_always_stop_cleanly(short_tmp: Path) -> None:
    """20 SIGTERM + 20 SIGINT at random moments, start-up included: each exits 0 with `stopped`."""
    seed = random.randrange(2**32)
    print(f"seed {seed}")
    rng = random.Random(seed)
    configs = [
        write_config(
            short_tmp / f"speed{speed}.toml", CONFIG.format(timeout=SHUTDOWN_TIMEOUT_S, speed=speed)
        )
        for speed in (0, 72000)
    ]
    signals = [signal.SIGTERM] * PER_SIGNAL + [signal.SIGINT] * PER_SIGNAL
    rng.shuffle(signals)
    lanes = [signals[i::LANES] for i in range(LANES)]
    lane_rngs = [random.Random(rng.random()) for _ in range(LANES)]

    def run_lane(i: int) -> list[str]:
        lane_dir = short_tmp / f"lane{i}"
        return [
            _one_stop(lane_dir, configs[(i + k) % 2], sig, lane_rngs[i])
            for k, sig in enumerate(lanes[i])
        ]

    with ThreadPoolExecutor(LANES) as pool:
        phases = [p for lane in pool.map(run_lane, range(LANES)) for p in lane]
    assert len(phases) == 2 * PER_SIGNAL
    print(f"signals while starting: {phases.count('starting')}, running: {phases.count('running')}")


def test_a_stop_signal_during_the_imports_exits_0_at_once(short_tmp: Path) -> None:
    """SIGTERM as soon as the handler exists (imports still running): `stopped`, exit 0."""
    config = write_config(short_tmp / "c.toml", CONFIG.format(timeout=SHUTDOWN_TIMEOUT_S, speed=0))
    d = DaemonProc(short_tmp / "data", config)
    try:
        deadline = time.monotonic() + 30
        while not handles_signal(d.proc.pid, signal.SIGTERM):
            assert d.proc.poll() is None and time.monotonic() < deadline, d.diagnostics()
            time.sleep(0.001)  # polling /proc: there is no event for "handler installed"
        d.stop(signal.SIGTERM, timeout=SHUTDOWN_TIMEOUT_S + EXIT_GRACE_S)
        assert not (short_tmp / "data" / "run" / "forexd.pid").exists()
    finally:
        d.kill()
