"""Refusals that carry their fix: the daemon stops with a message and an exit code, never
with a traceback, and never trades on a state it cannot trust."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon_proc import DaemonProc, forexd_cmd, run_cli, write_config

pytestmark = pytest.mark.e2e

SHORT = "[feed]\nspeed = 0\nend = '2017-03-01'\n"
LONGER = "[feed]\nspeed = 0\nend = '2017-05-01'\n"


def _traded(short_tmp: Path, factory: type[DaemonProc], body: str = SHORT) -> Path:
    data = short_tmp / "data"
    cfg = write_config(short_tmp / f"c{uuid.uuid4().hex[:6]}.toml", body)
    assert 0 == factory(data, cfg, "--exit-when-done").wait()
    return data


def _run(data: Path, body: str = SHORT) -> subprocess.CompletedProcess[str]:
    cfg = write_config(data.parent / "again.toml", body)
    return run_cli("run", "--data-dir", str(data), "--config", str(cfg), "--exit-when-done")


@pytest.mark.parametrize("loss", ["emptied", "deleted"])
def test_a_lost_database_beside_a_risk_state_exits_5_with_the_repair_command(
    short_tmp: Path, daemon_factory: type[DaemonProc], loss: str
) -> None:
    """A 0-byte or deleted forexd.db next to a risk state with fills is refused, not reset."""
    data = _traded(short_tmp, daemon_factory)
    db = data / "forexd.db"
    if loss == "emptied":
        db.write_bytes(b"")
    else:
        db.unlink()
    res = _run(data)
    assert 5 == res.returncode, res.stderr
    assert "holds no fills" in res.stderr
    assert f"forexd risk repair --force --data-dir {data}" in res.stderr
    assert "Traceback" not in res.stderr
    fixed = run_cli("risk", "repair", "--force", "--data-dir", str(data))
    assert 0 == fixed.returncode, fixed.stderr
    assert 0 == _run(data).returncode


def test_a_database_older_than_the_risk_state_exits_5(
    short_tmp: Path, daemon_factory: type[DaemonProc]
) -> None:
    """A database restored from an older copy (fewer fills than counted) is refused."""
    data = _traded(short_tmp, daemon_factory)
    old = short_tmp / "old.db"
    shutil.copy(data / "forexd.db", old)
    assert 0 == _run(data, LONGER).returncode
    shutil.copy(old, data / "forexd.db")
    res = _run(data, LONGER)
    assert 5 == res.returncode, res.stderr
    assert "has counted fills up to #" in res.stderr and "holds fills up to #" in res.stderr
    assert "Traceback" not in res.stderr


def test_a_damaged_database_exits_2_naming_the_file_and_how_to_restore_it(
    short_tmp: Path, daemon_factory: type[DaemonProc]
) -> None:
    """Corrupted pages in forexd.db: exit 2, the file, `.recover` or a backup; no traceback."""
    data = _traded(short_tmp, daemon_factory)
    db = data / "forexd.db"
    page = 4096
    with db.open("r+b") as fh:
        for n in range(1, db.stat().st_size // page, 2):
            fh.seek(n * page + 100)
            fh.write(b"\xde\xad\xbe\xef" * 200)
    res = _run(data)
    assert 2 == res.returncode, res.stderr
    assert f"database {db} is damaged" in res.stderr
    assert ".recover" in res.stderr and "backup" in res.stderr
    assert "Traceback" not in res.stderr


def test_risk_repair_refuses_while_a_daemon_holds_the_pid_lock(
    short_tmp: Path, daemon_factory: type[DaemonProc]
) -> None:
    """`risk repair --force` with a daemon running exits 4 and leaves the state file alone."""
    data = _traded(short_tmp, daemon_factory)
    d = daemon_factory(data, write_config(short_tmp / "run.toml", SHORT))
    d.wait_for("ready")
    before = (data / "risk_state.json").read_bytes()
    res = run_cli("risk", "repair", "--force", "--data-dir", str(data))
    assert 4 == res.returncode
    assert f"(pid {d.proc.pid})" in res.stderr and "forexd ctl stop" in res.stderr
    assert before == (data / "risk_state.json").read_bytes()
    assert not list(data.glob("risk_state.json.corrupt-*"))
    assert 0 == d.signal(signal.SIGTERM)


def test_an_infinite_limit_is_refused_at_load_naming_the_key(short_tmp: Path) -> None:
    """`max_gross_exposure_usd = inf` is a config error (exit 2) naming the key."""
    cfg = write_config(short_tmp / "inf.toml", "[risk]\nmax_gross_exposure_usd = inf\n")
    res = run_cli("config", "check", str(cfg))
    assert 2 == res.returncode
    assert "risk.max_gross_exposure_usd" in res.stderr and "finite" in res.stderr


def test_an_absurd_price_is_refused_at_import_naming_the_line(short_tmp: Path) -> None:
    """A 1e308 price in an imported file is refused with its line number; nothing stored."""
    src = short_tmp / "EURUSD.csv"
    src.write_text(
        "20170102 020000;1.051550;1.051970;1.051550;1.051900;0\n"
        "20170102 020100;1e308;1e308;1.051550;1.051900;0\n"
    )
    data = short_tmp / "data"
    res = run_cli(
        "data", "import", "--symbol", "EURUSD", "--timeframe", "M1", "--format", "histdata",
        "--data-dir", str(data), str(src),
    )  # fmt: skip
    assert 2 == res.returncode
    assert "line 2" in res.stderr and "above" in res.stderr
    assert "Traceback" not in res.stderr


def test_a_reader_that_closes_the_pipe_early_gets_no_traceback() -> None:
    """`forexd config check | head -0`: exit 0, nothing on stderr."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before anything is written
    try:
        res = subprocess.run(
            forexd_cmd("config", "check"),
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert "" == res.stderr
    assert 0 == res.returncode


@pytest.fixture
def small_disk(short_tmp: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (root only), unmounted afterwards."""
    if os.name != "posix" or os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs")
    mnt = short_tmp / "small"
    mnt.mkdir()
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
        check=False,
    )
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_disk_exits_6_and_a_restart_after_freeing_space_recovers(
    short_tmp: Path, small_disk: Path
) -> None:
    """Disk full: exit 6 with its own message; with space again the account carries on."""
    data = small_disk / "data"
    cfg = write_config(short_tmp / "full.toml", "[feed]\nspeed = 0\n")
    res = run_cli("run", "--data-dir", str(data), "--config", str(cfg), timeout=120)
    assert 6 == res.returncode, res.stderr
    assert "disk full" in res.stderr and "Free space" in res.stderr
    assert "Traceback" not in res.stderr
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    again = run_cli(
        "run", "--data-dir", str(data), "--config", str(cfg), "--exit-when-done", timeout=300
    )
    assert 0 == again.returncode, again.stderr
    with sqlite3.connect(data / "forexd.db") as conn:
        twice = conn.execute(
            "SELECT COUNT(*) FROM (SELECT client_id FROM paper_fills GROUP BY client_id "
            "HAVING COUNT(*) > 1)"
        ).fetchone()[0]
        fills = conn.execute("SELECT COALESCE(SUM(units), 0) FROM fills").fetchone()[0]
        pos = conn.execute("SELECT COALESCE(SUM(units), 0) FROM positions").fetchone()[0]
    assert 0 == twice
    assert fills == pos


def test_a_data_dir_that_cannot_be_created_is_a_clear_error(short_tmp: Path) -> None:
    """A data dir under a plain file: exit 2 naming the directory, no traceback."""
    blocker = short_tmp / "file"
    blocker.write_text("")
    res = run_cli("run", "--data-dir", str(blocker / "data"))
    assert 2 == res.returncode
    assert f"cannot create directory {blocker / 'data'}" in res.stderr
    assert "Traceback" not in res.stderr
