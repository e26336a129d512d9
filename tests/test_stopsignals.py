"""Stop signals before the event loop listens: which commands, and the `stopped` line."""

from __future__ import annotations

import json
import signal

from forexd.daemon.stopsignals import stopped_line, wants_daemon


def test_only_the_run_command_catches_signals_early() -> None:
    """`forexd run ...` installs the early handlers; every other command keeps Python's."""
    assert wants_daemon(["run", "--config", "x.toml"])
    assert wants_daemon(["--verbose", "run"])
    assert not wants_daemon(["ctl", "status"])
    assert not wants_daemon(["backtest", "run"])  # "run" as an argument, not the command
    assert not wants_daemon([])


def test_the_early_stopped_line_is_a_json_log_line_when_json_is_asked_for() -> None:
    """With --log-format json the line has the fields every forexd log line has."""
    line = json.loads(stopped_line(signal.SIGTERM, ["run", "--log-format", "json"]))
    assert {"event": "stopped", "reason": "SIGTERM", "level": "info"}.items() <= line.items()
    assert line["component"] == "supervisor" and line["timestamp"].endswith("Z")
