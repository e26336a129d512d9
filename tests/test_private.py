"""Private by default: what the daemon creates is its user's alone."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest

from tests.daemon_proc import DaemonProc, run_cli, write_config

pytestmark = pytest.mark.e2e

CONFIG = """
[feed]
source = "bundled"
speed = 0
end = "2017-03-01"

[[symbols]]
symbol = "EURUSD"
params = { fast = 10, slow = 20, units = 10000 }
"""


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _started(short_tmp: Path, factory: type[DaemonProc]) -> DaemonProc:
    # The test's own temp dir is opened to everyone: only the daemon's modes protect it.
    short_tmp.chmod(0o755)
    d = factory(short_tmp / "data", write_config(short_tmp / "c.toml", CONFIG))
    d.wait_for("ready")
    d.wait_for("feed_exhausted", symbol="EURUSD")  # db, wal, shm, risk state all exist
    return d


@pytest.mark.skipif(os.name != "posix", reason="POSIX modes")
def test_daemon_dirs_are_0700_and_its_files_0600(
    short_tmp: Path, daemon_factory: type[DaemonProc]
) -> None:
    """Data and runtime dirs 0700; db, wal, shm, pid, socket, risk state and lock 0600."""
    d = _started(short_tmp, daemon_factory)
    data = short_tmp / "data"
    assert 0o700 == _mode(data)
    assert 0o700 == _mode(data / "run")
    for name in (
        "forexd.db",
        "forexd.db-wal",
        "forexd.db-shm",
        "risk_state.json",
        "risk_state.json.lock",
        "run/forexd.pid",
        "run/ctl.sock",
    ):
        assert 0o600 == _mode(data / name), name
    assert 0 == d.signal(signal.SIGTERM)


@pytest.mark.skipif(os.name != "posix", reason="POSIX modes")
def test_files_an_older_forexd_left_readable_are_tightened_and_the_dir_is_reported(
    short_tmp: Path, daemon_factory: type[DaemonProc]
) -> None:
    """A 0755 data dir is warned about (run and config check); 0644 state files become 0600."""
    data = short_tmp / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    for name in ("forexd.db", "risk_state.json.lock"):
        (data / name).touch()
        (data / name).chmod(0o644)
    check = run_cli("config", "check", env={"FOREXD_DATA_DIR": str(data)})
    assert 0 == check.returncode, check.stderr
    assert f"warning: {data} has mode 0755" in check.stdout
    assert "chmod 700" in check.stdout
    d = daemon_factory(data, write_config(short_tmp / "c.toml", CONFIG))
    warned = d.wait_for("data_dir_not_private")
    assert str(data) in warned["detail"]
    d.wait_for("ready")
    assert 0o600 == _mode(data / "forexd.db")
    assert 0o600 == _mode(data / "risk_state.json.lock")
    assert 0 == d.signal(signal.SIGTERM)


@pytest.fixture
def other_user() -> Iterator[tuple[int, int]]:
    """A throwaway local user (uid, gid), removed afterwards; root only."""
    if os.name != "posix" or os.geteuid() != 0:
        pytest.skip("needs root to create a throwaway second user")
    name = f"fxd{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "--no-create-home", "--shell", "/bin/false", name], check=True)
    try:
        import pwd

        entry = pwd.getpwnam(name)
        yield entry.pw_uid, entry.pw_gid
    finally:
        subprocess.run(["userdel", name], check=False)


def _open_close(path: Path) -> None:
    path.open("rb").close()


def _as_user(uid: int, gid: int, data: Path, pid: int) -> dict[str, str]:
    """Try, as another user, to read the state and to stop the daemon; report each outcome."""
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the forked child
        os.close(read_end)
        outcome: dict[str, str] = {}
        try:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)

            def connect() -> None:
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(str(data / "run" / "ctl.sock"))
                    s.sendall(b'{"v": 1, "cmd": "stop"}\n')
                    s.recv(4096)

            probes: dict[str, Callable[[], object]] = {
                "read_db": (data / "forexd.db").read_bytes,
                "read_risk_state": (data / "risk_state.json").read_bytes,
                "open_risk_lock": partial(_open_close, data / "risk_state.json.lock"),
                "open_pid_lock": partial(_open_close, data / "run" / "forexd.pid"),
                "list_data_dir": lambda: list(data.iterdir()),
                "ctl_stop": connect,
                "signal": lambda: os.kill(pid, signal.SIGTERM),
            }
            for what, probe in probes.items():
                try:
                    probe()
                    outcome[what] = "allowed"
                except PermissionError:
                    outcome[what] = "denied"
                except OSError as exc:
                    outcome[what] = f"error {exc}"
        finally:
            os.write(write_end, json.dumps(outcome).encode())
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as fh:
        raw = fh.read()
    os.waitpid(child, 0)
    result: dict[str, str] = json.loads(raw)
    return result


def test_a_second_local_user_can_neither_read_the_state_nor_stop_the_daemon(
    short_tmp: Path, daemon_factory: type[DaemonProc], other_user: tuple[int, int]
) -> None:
    """Another uid is denied the db, risk state, both locks, the socket and signals."""
    d = _started(short_tmp, daemon_factory)
    outcome = _as_user(*other_user, short_tmp / "data", d.proc.pid)
    assert {
        "read_db": "denied",
        "read_risk_state": "denied",
        "open_risk_lock": "denied",
        "open_pid_lock": "denied",
        "list_data_dir": "denied",
        "ctl_stop": "denied",
        "signal": "denied",
    } == outcome
    assert "running" == d.status()["state"]
    assert 0 == d.signal(signal.SIGTERM)
