"""Exactly once, in numbers: 20 SIGKILLs and 5 SIGTERMs at random moments, 3 M1 symbols.

Real HistData M1 bars of EURUSD, GBPUSD and USDJPY (the first weeks of 2017) are replayed
at full speed through a real ``forexd run`` subprocess on a real SQLite file, and the
daemon is killed or stopped at random moments: a random delay, right around an order, or
after a random number of fills. After every kill and at the end the record must show:

- each client id filled at most once (the paper book and the daemon's fills table);
- no fill at or before the bar its order was decided on;
- positions = Σ fills per symbol (and, at the end, the paper book agrees), and never
  beyond the strategy's ±units at any point of the fill history;
- balance = initial + Σ realised − Σ commission to the cent, in every equity snapshot
  and in the balance the daemon reports;
- every SIGTERM exits 0 with ``stopped`` logged;
- risk counters consistent with orders: approvals = orders written, fills applied = fills.

The figures of a run are printed (``-s``) and recorded in docs/risk.md.
"""

from __future__ import annotations

import gzip
import random
import signal
import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest
import structlog

from forexd.brokers.ledger import CostModel, Ledger
from forexd.daemon.riskruntime import RiskRuntime
from forexd.domain import Fill
from forexd.risk import RiskLimits
from forexd.storage.riskstate import RiskStateStore
from tests.daemon_proc import DaemonProc, write_config

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SYMBOLS = ("EURUSD", "GBPUSD", "USDJPY")
BARS_PER_SYMBOL = 40_000  # about five weeks of M1 bars: more than the series can replay
KILLS = 20
TERMS = 5
INITIAL = 100_000.0
COMMISSION_PER_MILLION = 25.0
SPREAD_PIPS = 0.8
UNITS = 10_000

CONFIG = """
[broker]
initial_balance = {initial}
spread_pips = {spread}
commission_per_million = {commission}

[feed]
source = "{source}"
format = "histdata"
timeframe = "M1"
speed = 0
"""
SYMBOL = """
[[symbols]]
symbol = "{symbol}"
strategy = "sma_cross"
params = {{ fast = 3, slow = 7, units = {units} }}
"""


def _trim_m1(src: Path, dst: Path) -> str:
    """Copy the first BARS_PER_SYMBOL lines of each symbol's M1 file; return the pattern."""
    dst.mkdir()
    for sym in SYMBOLS:
        gz = src / "histdata_m1_2017" / f"DAT_ASCII_{sym}_M1_2017.csv.gz"
        if not gz.exists():
            pytest.skip(f"real M1 data {gz} is absent")
        with gzip.open(gz, "rt", encoding="ascii") as fh, (dst / f"{sym}.csv").open("w") as out:
            for i, line in enumerate(fh):
                if i >= BARS_PER_SYMBOL:
                    break
                out.write(line)
    return str(dst / "{symbol}.csv")


def _config(tmp: Path, source: str) -> Path:
    body = CONFIG.format(
        initial=INITIAL, spread=SPREAD_PIPS, commission=COMMISSION_PER_MILLION, source=source
    )
    body += "".join(SYMBOL.format(symbol=s, units=UNITS) for s in SYMBOLS)
    return write_config(tmp / "m1.toml", body)


def _check(data: Path, *, final: bool) -> dict[str, int]:
    """The invariants of the module note; returns counts for the report."""
    with sqlite3.connect(data / "forexd.db") as conn:
        q = conn.execute
        paper_twice = q(
            "SELECT client_id FROM paper_fills GROUP BY client_id HAVING COUNT(*) > 1"
        ).fetchall()
        fills_twice = q(
            "SELECT client_id FROM fills GROUP BY client_id HAVING COUNT(*) > 1"
        ).fetchall()
        early = q(
            "SELECT f.client_id, f.ts, o.bar_ts FROM fills f JOIN orders o "
            "USING (client_id) WHERE f.ts <= o.bar_ts"
        ).fetchall()
        early_paper = q(
            "SELECT f.client_id FROM paper_fills f JOIN paper_orders o "
            "USING (client_id) WHERE f.ts <= o.bar_ts"
        ).fetchall()
        orphan = q(
            "SELECT client_id FROM paper_orders WHERE client_id NOT IN "
            "(SELECT client_id FROM orders)"
        ).fetchall()
        fills = q(
            "SELECT rowid, fill_id, client_id, symbol, units, price, commission, ts, "
            "realized_pnl, recorded_ns FROM fills ORDER BY rowid"
        ).fetchall()
        paper = q(
            "SELECT fill_id, client_id, symbol, units, price, commission, ts "
            "FROM paper_fills ORDER BY rowid"
        ).fetchall()
        positions = dict(q("SELECT symbol, units FROM positions").fetchall())
        equity = q("SELECT recorded_ns, balance FROM equity ORDER BY recorded_ns").fetchall()
        orders = q("SELECT COUNT(*) FROM orders").fetchone()[0]
        dupes = q("SELECT COUNT(*) FROM events WHERE kind = 'duplicate_submit'").fetchone()[0]
    assert [] == paper_twice, "the paper book filled a client id twice"
    assert [] == fills_twice, "the daemon recorded two fills for one client id"
    assert [] == early, "a fill at or before its order's own bar"
    assert [] == early_paper, "a paper fill at or before its order's own bar"
    assert [] == orphan, "the broker has orders the database never wrote"
    assert 0 == dupes, "a client id reached the broker twice"
    units: Counter[str] = Counter()
    newest: dict[str, int] = {}
    for row in fills:
        units[row[3]] += row[4]
        assert abs(units[row[3]]) <= UNITS, f"{row[3]} held beyond what the strategy asked"
        assert row[7] >= newest.get(row[3], row[7]), f"{row[2]} filled behind its market"
        newest[row[3]] = row[7]
    for sym in SYMBOLS:
        assert units[sym] == positions.get(sym, 0), f"{sym}: positions differ from Σ fills"
    # Balance to the cent in every snapshot: initial + Σ realised − Σ commission of the
    # fills recorded before it (no jump across restarts, no fill counted twice or lost).
    # Symbols trade concurrently, so "before" is the recording time, not the bar time.
    i, acc = 0, 0.0
    by_time = sorted(fills, key=lambda f: f[9])
    for recorded, balance in equity:
        while i < len(by_time) and by_time[i][9] <= recorded:
            acc += by_time[i][8] - by_time[i][6]
            i += 1
        assert round(INITIAL + acc, 2) == round(balance, 2), f"snapshot at {recorded}"
    counts = {"orders": orders, "fills": len(fills), "paper_fills": len(paper)}
    if final:
        assert len(paper) == len(fills), "the broker and the daemon disagree on fills"
        ledger = Ledger(INITIAL, CostModel(SPREAD_PIPS, 0.0, COMMISSION_PER_MILLION))
        for fid, cid, sym, u, price, commission, ts in paper:
            ledger.apply(Fill(fid, cid, sym, u, price, commission, ts))
        total = INITIAL + sum(f[8] for f in fills) - sum(f[6] for f in fills)
        assert round(total, 2) == round(ledger.balance, 2)
        for sym in SYMBOLS:
            assert units[sym] == ledger.units(sym)
        state = RiskStateStore(data / "risk_state.json", "paper").read()
        assert (fills[-1][0] if fills else 0) == state.fills_applied_seq
        # What the next start loads: approvals recounted from the orders written.
        risk = RiskRuntime(
            RiskLimits(),
            data / "risk_state.json",
            data / "forexd.db",
            "paper",
            structlog.get_logger(),
        )
        loaded = risk.load()
        assert orders == loaded.approvals, "risk approvals differ from orders written"
        assert state.fills_applied_seq == loaded.fills_applied_seq
        counts["balance_cents"] = round(ledger.balance * 100)
        counts["approvals"] = loaded.approvals
        counts["approvals_before_load"] = state.approvals
    return counts


def test_kills_and_stops_at_random_moments_never_fill_twice_or_drift(
    short_tmp: Path, daemon_factory: type[DaemonProc], shared_fx_dir: Path
) -> None:
    """20 kill -9s and 5 SIGTERMs on 3 M1 symbols: exactly-once fills, balance to the cent."""
    rng = random.Random(20261202)
    cfg = _config(short_tmp, _trim_m1(shared_fx_dir, short_tmp / "m1"))
    data = short_tmp / "data"
    plan = ["kill"] * KILLS + ["term"] * (TERMS - 1)
    rng.shuffle(plan)
    plan.append("term")  # end on a clean stop: the final record must be exact
    started = time.monotonic()
    last: dict[str, int] = {}
    for n, action in enumerate(plan):
        d = daemon_factory(data, cfg)
        d.wait_for("ready")
        moment = n % 3
        if moment == 0:
            # A truly random moment, synchronised to nothing (this is what lands in the
            # write-ahead window between an order's row and its send).
            time.sleep(rng.uniform(0.02, 0.4))
        elif moment == 1:
            d.wait_for("order_sent")
        else:
            for _ in range(rng.randint(1, 15)):
                d.wait_for("order_filled")
        if action == "kill":
            d.proc.send_signal(signal.SIGKILL)
            assert -signal.SIGKILL == d.proc.wait(timeout=30)
            last = _check(data, final=False)
            continue
        rc = d.signal(signal.SIGTERM, timeout=60)
        assert 0 == rc, f"SIGTERM exit {rc}; stderr: {d.stderr()}"
        d.wait_for("stopped")
        last = _check(data, final=True)
    elapsed = time.monotonic() - started
    print(
        f"\nexactly-once: {KILLS} kills + {TERMS} stops in {elapsed:.1f} s; "
        f"orders {last['orders']}, fills {last['fills']}, approvals {last['approvals']}, "
        f"balance {last['balance_cents'] / 100:.2f}"
    )
    assert last["fills"] > KILLS + TERMS  # it kept trading through the faults
