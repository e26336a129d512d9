"""`forexd ctl` and `risk show` for people, against a real daemon, as a user types them."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest

from tests.daemon_proc import DaemonProc, run_cli, write_config

pytestmark = pytest.mark.e2e

CONFIG = """
[feed]
speed = 0
end = '2017-03-01'

[[symbols]]
symbol = "EURUSD"
params = { fast = 3, slow = 7, units = 10000 }
"""
FLOAT_NOISE = re.compile(r"\d\.\d{6,}")  # 125.99999999999945, not 1.05841 (a price)


def _orders_taken(data: Path) -> int:
    with sqlite3.connect(data / "forexd.db") as conn:
        return int(
            conn.execute(
                "SELECT COUNT(*) FROM orders WHERE status NOT IN ('pending', 'rejected')"
            ).fetchone()[0]
        )


def test_ctl_answers_in_sentences_and_status_survives_a_restart(
    short_tmp: Path, daemon_factory: type[DaemonProc]
) -> None:
    """ping/version/pause/resume/flatten/risk/stop print sentences; orders count persists."""
    data = short_tmp / "data"
    cfg = write_config(short_tmp / "c.toml", CONFIG)
    assert 0 == daemon_factory(data, cfg, "--exit-when-done").wait()
    taken = _orders_taken(data)
    assert taken > 0

    d = daemon_factory(data, cfg)
    d.wait_for("ready")
    assert taken == d.status()["symbols"][0]["orders_sent"]

    def ctl(*args: str) -> str:
        res = run_cli("ctl", *args, "--data-dir", str(data), env={"COLUMNS": "80"})
        assert 0 == res.returncode, res.stderr
        assert ("--json" in args) == res.stdout.lstrip().startswith("{"), res.stdout
        return res.stdout

    status = ctl("status")
    assert "risk: account active" in status
    assert all(len(line) <= 80 for line in status.splitlines()), status
    assert "EURUSD" in status and "…" not in status
    assert "forexd is alive (running)" in ctl("ping")
    assert re.search(r"daemon forexd \S+ \(Python 3\.\d+", ctl("version"))
    assert "EURUSD paused: no new trades" in ctl("pause", "EURUSD")
    assert "EURUSD trades again" in ctl("resume", "EURUSD")
    flat = ctl("flatten", "EURUSD", "--yes")
    assert flat.startswith("EURUSD paused;"), flat

    audit_before = json.loads(ctl("risk", "--json"))["audit"]
    report = ctl("risk")
    assert "risk state of account" in report and "account active" in report
    assert not FLOAT_NOISE.search(report), report
    assert "e+0" not in report and "max_gross_exposure_usd 2,000,000" in report
    said = ctl("risk", "resume", "--note", "ops: nothing to lift")
    assert "account is already active: nothing to resume, no audit record written" in said
    assert audit_before == json.loads(ctl("risk", "--json"))["audit"]

    assert "forexd is stopping" in ctl("stop")
    assert 0 == d.wait()
    shown = run_cli("risk", "show", "--data-dir", str(data), env={"COLUMNS": "80"})
    assert 0 == shown.returncode, shown.stderr
    assert "account active" in shown.stdout and not FLOAT_NOISE.search(shown.stdout)
    as_json = json.loads(run_cli("risk", "show", "--json", "--data-dir", str(data)).stdout)
    assert not FLOAT_NOISE.search(json.dumps(as_json))
