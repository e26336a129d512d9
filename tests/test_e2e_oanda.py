"""The daemon trading live against a local fake OANDA v20 server (the real one is unreachable)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from forexd.brokers.oanda import oanda_client_id
from tests._oanda_daemon import DOWN, DOWN_AGAIN, UP, Prices, start
from tests.daemon_proc import DaemonProc
from tests.fake_oanda import ACCOUNT_ID, FakeOanda

pytestmark = pytest.mark.e2e


def test_daemon_trades_oanda_through_the_v20_api(
    short_tmp: Path, daemon_factory: type[DaemonProc]
) -> None:
    """Streamed prices become M1 bars, orders carry our client ids, fills reach SQLite."""
    with FakeOanda(heartbeat_s=0.2) as fake:
        prices = Prices(fake)
        d = start(daemon_factory, fake, short_tmp)
        # A down-then-up-then-down path: SMA(2, 4) crosses twice; the last price closes
        # the last bar (bid 1.09300, ask 1.09310).
        prices.push(DOWN + UP + DOWN_AGAIN + [1.09305])
        first = d.wait_for("order_filled", symbol="EURUSD")
        second = d.wait_for("order_filled", symbol="EURUSD")
        status = d.status()
        assert "oanda" == status["broker"]
        assert 0 == d.signal()
    data = short_tmp / "data"
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
