"""Issue 12 end to end: the daemon's stop lives at OANDA and survives the daemon's death."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests._oanda_daemon import DOWN, Prices, db_rows, start
from tests.daemon_proc import DaemonProc
from tests.fake_oanda import FakeOanda

pytestmark = pytest.mark.e2e


# Stops required, and the strategy's stop one ATR away.
STOPS = {
    "extra": "[risk]\nrequire_stop = true",
    "symbol": "params = { fast = 2, slow = 4, units = 1000, stop_atr = 1.0 }",
}


def test_a_stop_that_fires_while_the_daemon_is_down_is_booked_on_restart(
    short_tmp: Path, daemon_factory: type[DaemonProc]
) -> None:
    """Stop attached in the order; OANDA closes the trade while we are dead; books agree after."""
    with FakeOanda(heartbeat_s=0.2) as fake:
        prices = Prices(fake)
        first = start(daemon_factory, fake, short_tmp, **STOPS)
        prices.push(DOWN)
        entry = first.wait_for("order_filled", symbol="EURUSD")
        sent = fake.order_bodies[0]["order"]
        assert "stopLossOnFill" in sent and float(sent["stopLossOnFill"]["distance"]) > 0
        (stop_order,) = [t for t in fake.book.transactions if t["type"] == "STOP_LOSS_ORDER"]
        first.kill()  # SIGKILL: the stop is OANDA's now
        assert -1000 == fake.net_units("EUR_USD")
        prices.push([1.1050])  # through the stop
        assert 0 == fake.net_units("EUR_USD")
        (stop_fill,) = [
            t
            for t in fake.book.transactions
            if t["type"] == "ORDER_FILL" and t.get("reason") == "STOP_LOSS_ORDER"
        ]
        assert stop_order["id"] == stop_fill["orderID"]

        d = daemon_factory(short_tmp / "data", short_tmp / "live.toml")
        booked = d.wait_for("reconcile_protective_fill")
        d.wait_for("ready")
        status = d.status()
        assert 0 == d.signal()
    assert (booked["fill_id"], booked["reason"]) == (stop_fill["id"], "stop_loss")
    _orders, position = db_rows(short_tmp / "data")
    assert fake.net_units("EUR_USD") == position == 0
    assert (0, 0) == (
        status["symbols"][0]["position_units"],
        status["symbols"][0]["pending_units"],
    )
    assert entry["units"] == -1000
    assert 1 == fake.order_posts  # nothing resent, nothing flattened twice
