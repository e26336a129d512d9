"""Crash safety and fault isolation, end to end with real processes and SIGKILL."""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from forexd.errors import RiskStateError
from forexd.feeds.loaders import bundled_sample_path
from forexd.risk import fx_day
from forexd.storage.riskstate import RiskStateStore
from tests.daemon_proc import DaemonProc, run_cli, write_config

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
KILLS = 20

PACED = """
[feed]
source = "bundled"
speed = 1080000.0   # 300 H1 bars per second
max_sleep_s = 0.01

[[symbols]]
symbol = "EURUSD"
params = { fast = 3, slow = 7, units = 10000 }
"""


def _check_invariants(data: Path, *, final: bool) -> dict[str, int]:
    """What must hold after any crash (and exactly after a clean stop)."""
    with sqlite3.connect(data / "forexd.db") as conn:
        dupes = conn.execute(
            "SELECT COUNT(*) FROM events WHERE kind = 'duplicate_submit'"
        ).fetchone()[0]
        fills = conn.execute(
            "SELECT rowid, symbol, units, realized_pnl, commission, ts FROM fills ORDER BY rowid"
        ).fetchall()
        pos = dict(conn.execute("SELECT symbol, units FROM positions").fetchall())
        paper_units = conn.execute("SELECT COALESCE(SUM(units), 0) FROM paper_fills").fetchone()[0]
        equity = conn.execute("SELECT ts, balance FROM equity ORDER BY ts, rowid").fetchall()
        initial = conn.execute("SELECT initial_balance FROM paper_account").fetchone()[0]
        written = {r[0] for r in conn.execute("SELECT client_id FROM orders")}
        sent = {r[0] for r in conn.execute("SELECT client_id FROM paper_orders")}
    orders = len(written)
    assert 0 == dupes, "a client order id reached the broker twice"
    assert set() == sent - written, "the broker has orders the database never wrote"
    fill_units = sum(f[2] for f in fills)
    assert fill_units == pos.get("EURUSD", 0), "positions differ from the sum of fills"
    if final:
        assert paper_units == fill_units, "the broker and the database disagree on fills"
    # Equity continuity: every snapshot's balance is the initial balance plus the net
    # realised P&L of the fills up to that bar — no jump across restarts.
    i, acc = 0, 0.0
    for ts, balance in equity:
        while i < len(fills) and fills[i][5] <= ts:
            acc += fills[i][3] - fills[i][4]
            i += 1
        assert initial + acc == pytest.approx(balance, abs=1e-6)
    state = RiskStateStore(data / "risk_state.json", "paper").read()  # parses, right account
    assert state.fills_applied_seq <= (fills[-1][0] if fills else 0)
    if final:
        assert (fills[-1][0] if fills else 0) == state.fills_applied_seq
        by_day: dict[object, float] = {}
        for _rowid, _sym, _units, realized, commission, ts in fills:
            by_day[fx_day(ts)] = by_day.get(fx_day(ts), 0.0) + realized - commission
        for day, pnl in state.realized_pnl_by_day.items():
            assert by_day[day] == pytest.approx(pnl, abs=1e-6)
    return {"fills": len(fills), "orders": orders}


@pytest.mark.slow
def test_sigkill_at_random_moments_never_duplicates_or_loses_anything(
    short_tmp: Path, daemon_factory: type[DaemonProc]
) -> None:
    """20 kill -9s at random moments: no duplicate send, positions = fills, state valid."""
    rng = random.Random(20261123)
    data = short_tmp / "data"
    cfg = write_config(short_tmp / "paced.toml", PACED)
    seen = {"fills": 0}
    for i in range(KILLS):
        d = daemon_factory(data, cfg)
        d.wait_for("ready")
        if i % 3 == 0:
            # A truly random moment (not synchronised to any log line): this is what
            # lands between "order written" and "order sent" — the write-ahead window.
            time.sleep(rng.uniform(0.05, 1.5))
        elif i % 3 == 1:
            d.wait_for("order_sent")  # die right around an order
        else:
            for _ in range(rng.randint(1, 40)):
                d.wait_for("order_filled")
        d.proc.send_signal(signal.SIGKILL)
        assert -signal.SIGKILL == d.proc.wait(timeout=10)
        seen = _check_invariants(data, final=False)
    last = daemon_factory(data, cfg)
    last.wait_for("ready")
    last.wait_for("order_filled")
    assert 0 == last.signal(signal.SIGTERM)
    final = _check_invariants(data, final=True)
    assert final["fills"] >= seen["fills"] > KILLS  # it kept trading through the crashes


def test_one_failing_strategy_is_parked_while_the_others_trade(
    short_tmp: Path, daemon_factory: type[DaemonProc]
) -> None:
    """A strategy raising on every bar ends `failed`; two healthy symbols keep trading."""
    sample = short_tmp / "eurusd_h1.csv.gz"
    sample.write_bytes(bundled_sample_path().read_bytes())
    cfg = write_config(
        short_tmp / "three.toml",
        f"""
[feed]
source = "{sample}"
speed = 360000.0
max_sleep_s = 0.01

[actors]
restart_backoff_s = 0.01
restart_backoff_max_s = 0.05
max_crashes = 3
crash_window_s = 60

[[symbols]]
symbol = "EURUSD"
[[symbols]]
symbol = "GBPUSD"
strategy = "tests.faulty_strategy:AlwaysRaises"
[[symbols]]
symbol = "USDCHF"
""",
    )
    d = daemon_factory(short_tmp / "data", cfg, env={"PYTHONPATH": str(REPO)})
    d.wait_for("ready")
    d.wait_for("actor_failed", symbol="GBPUSD")
    d.wait_for("order_filled", symbol="EURUSD")
    d.wait_for("order_filled", symbol="USDCHF")
    status = d.status()
    states = {s["symbol"]: s for s in status["symbols"]}
    assert "failed" == states["GBPUSD"]["state"]
    assert "RuntimeError: injected strategy failure" == states["GBPUSD"]["last_error"]
    assert 2 == states["GBPUSD"]["restarts"]
    assert "running" == states["EURUSD"]["state"]
    assert "running" == states["USDCHF"]["state"]
    assert "running" == status["state"]
    assert 0 == d.signal()


@pytest.mark.parametrize(
    ("damage", "fragment"),
    [
        (lambda raw: raw[: len(raw) // 2], "risk repair"),
        (lambda raw: raw.replace(b'"approvals"', b'"approvalz"'), "risk repair"),
        (lambda raw: b"", "risk repair"),
    ],
    ids=["truncated", "tampered", "empty"],
)
def test_a_damaged_risk_state_stops_trading_until_repaired(
    short_tmp: Path, daemon_factory: type[DaemonProc], damage: object, fragment: str
) -> None:
    """A corrupt file is never reset silently: run exits 5; `risk repair` fixes it."""
    data = short_tmp / "data"
    cfg = write_config(short_tmp / "c.toml", "[feed]\nspeed = 0\nend = '2017-03-01'\n")
    assert 0 == daemon_factory(data, cfg, "--exit-when-done").wait()
    state_file = data / "risk_state.json"
    state_file.write_bytes(damage(state_file.read_bytes()))  # type: ignore[operator]
    res = run_cli("run", "--data-dir", str(data), "--config", str(cfg))
    assert 5 == res.returncode
    assert fragment in res.stderr and str(state_file) in res.stderr
    assert "Traceback" not in res.stderr
    assert 5 == run_cli("risk", "show", "--data-dir", str(data)).returncode
    fixed = run_cli("risk", "repair", "--data-dir", str(data))
    assert 0 == fixed.returncode, fixed.stderr
    backups = list(data.glob("risk_state.json.corrupt-*"))
    assert 1 == len(backups)
    shown = run_cli("risk", "show", "--data-dir", str(data), "--json")
    assert "halted" == json.loads(shown.stdout)["account"]["state"]
    with sqlite3.connect(data / "forexd.db") as conn:
        last_fill = conn.execute("SELECT MAX(rowid) FROM fills").fetchone()[0]
    assert last_fill == json.loads(shown.stdout)["fills_applied_seq"]


def test_a_missing_risk_state_with_history_refuses_to_trade(
    short_tmp: Path, daemon_factory: type[DaemonProc]
) -> None:
    """Deleting the state file after trades does not silently start a blank one."""
    data = short_tmp / "data"
    cfg = write_config(short_tmp / "c.toml", "[feed]\nspeed = 0\nend = '2017-03-01'\n")
    assert 0 == daemon_factory(data, cfg, "--exit-when-done").wait()
    (data / "risk_state.json").unlink()
    res = run_cli("run", "--data-dir", str(data), "--config", str(cfg))
    assert 5 == res.returncode
    assert "missing" in res.stderr and "forexd risk repair" in res.stderr


def test_state_of_another_account_is_refused(short_tmp: Path) -> None:
    """A risk file written for another account id is an error naming both."""
    data = short_tmp / "data"
    data.mkdir()
    RiskStateStore(data / "risk_state.json", "other-account").init()
    with pytest.raises(RiskStateError, match="other-account"):
        RiskStateStore(data / "risk_state.json", "paper").read()


def test_operator_resume_after_repair_is_audited(
    short_tmp: Path, daemon_factory: type[DaemonProc]
) -> None:
    """A repaired (halted) account trades again only after `ctl risk resume --note`."""
    data = short_tmp / "data"
    cfg = write_config(short_tmp / "c.toml", "[feed]\nspeed = 0\nend = '2017-03-01'\n")
    assert 0 == daemon_factory(data, cfg, "--exit-when-done").wait()
    assert 0 == run_cli("risk", "repair", "--force", "--data-dir", str(data)).returncode
    cfg2 = write_config(short_tmp / "c2.toml", "[feed]\nspeed = 0\nend = '2017-06-01'\n")
    d = daemon_factory(data, cfg2)
    d.wait_for("ready")
    d.wait_for("order_denied", reason="account_halted")
    risk = json.loads(d.ctl("risk", "--json").stdout)
    assert "halted" == risk["stats"]["account_state"]
    no_note = d.ctl("risk", "resume")
    assert 2 == no_note.returncode and "--note" in no_note.stderr
    ok = d.ctl("risk", "resume", "--note", "ops: checked fills after repair", "--json")
    assert 0 == ok.returncode, ok.stderr
    assert "active" == json.loads(ok.stdout)["new_state"]
    d.wait_for("risk_resumed_by_operator", note="ops: checked fills after repair")
    assert 0 == d.signal()
