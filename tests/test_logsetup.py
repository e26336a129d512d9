"""Console colours follow NO_COLOR; log_level = "debug" shows the components at work."""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemon_proc import DaemonProc, write_config

# Configures logging as `forexd run --log-format console` does and logs one line.
LOG_ONE_LINE = (
    "from forexd.daemon.logsetup import configure_logging, get_logger; "
    "configure_logging('info', 'console'); get_logger('test').info('hello', n=1)"
)
ESC = b"\x1b["


def _console_output_on_a_terminal(env: dict[str, str]) -> bytes:
    """Run LOG_ONE_LINE with a pseudo-terminal as stdout and return what it wrote."""
    primary, secondary = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", LOG_ONE_LINE],
            stdout=secondary,
            stderr=subprocess.PIPE,
            env=env,
        )
        os.close(secondary)
        out = b""
        while True:
            try:
                data = os.read(primary, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            out += data
        assert 0 == proc.wait(timeout=60), proc.stderr.read() if proc.stderr else ""
        return out
    finally:
        os.close(primary)


def test_console_log_is_coloured_on_a_terminal_and_plain_with_no_color() -> None:
    """NO_COLOR=1 removes the ANSI colours the console renderer writes on a terminal."""
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    coloured = _console_output_on_a_terminal(env)
    plain = _console_output_on_a_terminal({**env, "NO_COLOR": "1"})
    assert b"hello" in coloured and b"hello" in plain
    assert ESC in coloured
    assert ESC not in plain


def test_an_empty_no_color_keeps_colours() -> None:
    """NO_COLOR set but empty does not count (no-color.org)."""
    env = {k: v for k, v in os.environ.items() if k != "FORCE_COLOR"}
    assert ESC in _console_output_on_a_terminal({**env, "NO_COLOR": ""})


PACED = """
log_level = "{level}"

[feed]
source = "bundled"
speed = 1080000.0   # 300 H1 bars per second
max_sleep_s = 0.01
end = "2017-03-01"

[[symbols]]
symbol = "EURUSD"
params = {{ fast = 3, slow = 7, units = 10000 }}
"""


@pytest.mark.e2e
@pytest.mark.parametrize("level", ["debug", "info"])
def test_debug_level_logs_feed_actor_writer_and_control_and_info_does_not(
    short_tmp: Path, daemon_factory: type[DaemonProc], level: str
) -> None:
    """At debug, feed/actor/storage/control write debug lines; at info, none at all."""
    cfg = write_config(short_tmp / f"{level}.toml", PACED.format(level=level))
    d = daemon_factory(short_tmp / level, cfg)
    d.wait_for("ready")
    assert 0 == d.ctl("status").returncode
    d.wait_for("feed_exhausted", symbol="EURUSD", timeout=60)
    assert 0 == d.signal(signal.SIGTERM)
    debug = [e for e in d.lines if e.get("level") == "debug"]
    if level == "info":
        assert [] == debug
        return
    by_component = {e["component"]: e for e in debug}
    assert {"feed", "actor", "storage", "control"} <= set(by_component)
    events = {e["event"] for e in debug}
    assert {"feed_bars", "bar_decided", "writer_batch", "control_request"} <= events
    decided = [e for e in debug if e["event"] == "bar_decided"]
    assert any(e["order_units"] != 0 for e in decided), "no decision to trade was logged"
    assert any(e["cmd"] == "status" for e in debug if e["event"] == "control_request")
    types: dict[str, set[str]] = {}
    for line in d.lines:
        for key, value in line.items():
            types.setdefault(key, set()).add(type(value).__name__)
    assert {} == {k: t for k, t in types.items() if len(t) > 1}, "a key changed type"
