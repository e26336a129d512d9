"""End to end: runtime settings of a real ``forexd run`` process, read over its socket."""

from __future__ import annotations

from pathlib import Path

import pytest

from forexd.daemon.runner import GIL_SWITCH_INTERVAL_S
from tests.daemon_proc import DaemonProc, write_config

pytestmark = pytest.mark.e2e

CONFIG = """
[feed]
source = "bundled"
speed = 3600

[[symbols]]
symbol = "EURUSD"
strategy = "sma_cross"
params = { fast = 10, slow = 20, units = 10000 }
"""


def test_a_running_daemon_uses_the_1_ms_gil_switch_interval_and_ctl_status_shows_it(
    short_tmp: Path, daemon_factory: type[DaemonProc]
) -> None:
    """`forexd run` applies sys.setswitchinterval(0.001); ctl status --json reports it."""
    d = daemon_factory(short_tmp / "data", write_config(short_tmp / "c.toml", CONFIG))
    d.wait_for("ready")
    status = d.status()
    assert 0.001 == GIL_SWITCH_INTERVAL_S
    assert pytest.approx(GIL_SWITCH_INTERVAL_S) == status["gil_switch_interval_s"]
    d.stop()
