"""The output layer in-process: error codes, float noise, bugs and Ctrl-C under --json."""

from __future__ import annotations

import json
from typing import Any

import pytest

from forexd.cli import ctl, main
from forexd.cli.output import clean_floats, error_code
from forexd.errors import DaemonNotRunningError, RiskStateError


def test_error_codes_are_snake_case_class_names() -> None:
    """DaemonNotRunningError -> daemon_not_running; RiskStateError -> risk_state."""
    assert "daemon_not_running" == error_code(DaemonNotRunningError("x"))
    assert "risk_state" == error_code(RiskStateError("x"))


def test_json_floats_lose_binary_noise_but_keep_pips() -> None:
    """125.99999999999945 becomes 126.0; 1.05841 stays; NaN becomes null."""
    assert {"a": [126.0, 1.05841, None]} == clean_floats(
        {"a": [125.99999999999945, 1.05841, float("nan")]}
    )


def _raise(exc: BaseException) -> Any:
    def handler(*_: object) -> int:
        raise exc

    return handler


def test_a_bug_under_json_is_a_json_error_with_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unexpected exception prints {"error": {"code": "internal"}} and the traceback."""
    monkeypatch.setattr(ctl, "handle_request", _raise(RuntimeError("boom")))
    assert 1 == main(["ctl", "ping", "--json"])
    captured = capsys.readouterr()
    err = json.loads(captured.out)["error"]
    assert "internal" == err["code"] and "RuntimeError: boom" == err["message"]
    assert "Traceback" in captured.err


def test_a_bug_without_json_raises_for_the_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --json a bug propagates (Python prints the traceback, exit 1)."""
    monkeypatch.setattr(ctl, "handle_request", _raise(RuntimeError("boom")))
    with pytest.raises(RuntimeError, match="boom"):
        main(["ctl", "ping"])


def test_ctrl_c_in_a_command_exits_130_quietly(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """KeyboardInterrupt inside a handler returns 130 and prints nothing."""
    monkeypatch.setattr(ctl, "handle_request", _raise(KeyboardInterrupt()))
    assert 130 == main(["ctl", "ping"])
    assert ("", "") == tuple(capsys.readouterr())
