"""The daemon trading live against a local fake OANDA v20 server (the real one is unreachable)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from forexd.brokers.oanda import oanda_client_id
from tests.daemon_proc import DaemonProc, write_config
from tests.fake_oanda import ACCOUNT_ID, START_NS, FakeOanda

pytestmark = pytest.mark.e2e

NS = 1_000_000_000
# A down-then-up-then-down path: SMA(2, 4) crosses twice.
MIDS = [
    1.1000,
    1.0990,
    1.0980,
    1.0970,
    1.0960,
    1.0975,
    1.0990,
    1.1005,
    1.1020,
    1.1035,
    1.1020,
    1.1000,
    1.0980,
    1.0960,
    1.0940,
    1.0930,
]


def test_daemon_trades_oanda_through_the_v20_api(
    short_tmp: Path, daemon_factory: type[DaemonProc]
) -> None:
    """Streamed prices become M1 bars, orders carry our client ids, fills reach SQLite."""
    with FakeOanda(heartbeat_s=0.2) as fake:
        t0 = START_NS + 3600 * NS
        fake.push_price("EUR_USD", t0 - 90 * NS, "1.10000", "1.10010")
        cfg = write_config(
            short_tmp / "live.toml",
            f"""
[broker]
kind = "oanda"
[broker.oanda]
account_id = "{ACCOUNT_ID}"
token = "{fake.token}"
api_url = "{fake.url}"
stream_url = "{fake.url}"
[feed]
kind = "oanda"
timeframe = "M1"
[actors]
# The fake plays 16 minutes of prices in one burst: in server time a bar reaches the actor
# up to 16 periods after its close. Only the present is traded, so allow that age here.
max_bar_age_bars = 30
[[symbols]]
symbol = "EURUSD"
params = {{ fast = 2, slow = 4, units = 1000 }}
""",
        )
        data = short_tmp / "data"
        d = daemon_factory(data, cfg)
        d.wait_for("ready")
        fake.wait_for_stream_connections(1, timeout=10)
        for i, mid in enumerate(MIDS):
            ts = t0 + i * 60 * NS
            fake.push_price("EUR_USD", ts + NS, f"{mid - 0.00005:.5f}", f"{mid + 0.00005:.5f}")
        fake.push_price("EUR_USD", t0 + len(MIDS) * 60 * NS + NS, "1.09300", "1.09310")
        first = d.wait_for("order_filled", symbol="EURUSD")
        second = d.wait_for("order_filled", symbol="EURUSD")
        status = d.status()
        assert "oanda" == status["broker"]
        assert 0 == d.signal()
    with sqlite3.connect(data / "forexd.db") as conn:
        orders = conn.execute("SELECT client_id, units, status FROM orders ORDER BY created_ns")
        orders = orders.fetchall()
        fills = conn.execute("SELECT client_id, units FROM fills").fetchall()
        pos = conn.execute("SELECT units FROM positions").fetchone()[0]
    sent_ids = [body["order"]["clientExtensions"]["id"] for body in fake.order_bodies]
    install = (data / "installation_id").read_text().strip()
    assert [oanda_client_id(o[0], install) for o in orders] == sent_ids
    assert {first["client_id"], second["client_id"]} <= {f[0] for f in fills}
    assert sum(f[1] for f in fills) == pos
    assert all(o[2] == "filled" for o in orders)
    assert fake.token not in "".join(d.raw)
    assert json.dumps(ACCOUNT_ID) not in "".join(d.raw)
