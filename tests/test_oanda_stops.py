"""OANDA protective stops: attached on fill, cancelled with their trade, fills read back."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from forexd.brokers.oanda import OandaBroker
from forexd.brokers.oanda_api import OandaApi
from forexd.domain import Bar, Order, Protection
from tests.fake_oanda import START_NS, FakeOanda
from tests.test_oanda import make_api

pytestmark = pytest.mark.anyio
NS = 1_000_000_000


def order(units: int, protection: Protection | None, bar_ts: int = START_NS) -> Order:
    return Order(
        Order.make_client_id("EURUSD", bar_ts, 0), "EURUSD", units, bar_ts, 0, "", protection
    )


def txns(fake: FakeOanda, kind: str) -> list[dict[str, Any]]:
    return [t for t in fake.book.transactions if t["type"] == kind]


@pytest.fixture
def fake() -> Iterator[FakeOanda]:
    """EUR/USD at 1.10000/1.10020."""
    with FakeOanda(heartbeat_s=0.2) as server:
        server.push_price("EUR_USD", START_NS, "1.10000", "1.10020")
        yield server


@pytest.fixture
async def broker(fake: FakeOanda) -> AsyncIterator[OandaBroker]:
    api: OandaApi = make_api(fake)
    yield OandaBroker(api)
    await api.aclose()


async def test_the_stop_and_target_travel_in_the_market_order_and_live_at_the_broker(
    fake: FakeOanda, broker: OandaBroker
) -> None:
    """stopLossOnFill by distance, takeProfitOnFill by price from the last close; v20 links both."""
    await broker.on_bar(Bar("EURUSD", START_NS - 3600 * NS, 1.1, 1.1, 1.1, 1.1001))
    (fill,) = await broker.submit(order(10_000, Protection(0.0020, 0.0030)))
    sent = fake.order_bodies[0]["order"]
    assert {"distance": "0.00200", "timeInForce": "GTC"} == sent["stopLossOnFill"]
    assert {"price": "1.10310", "timeInForce": "GTC"} == sent["takeProfitOnFill"]
    assert "trailingStopLossOnFill" not in sent
    (sl,) = txns(fake, "STOP_LOSS_ORDER")
    (tp,) = txns(fake, "TAKE_PROFIT_ORDER")
    assert (sl["tradeID"], sl["price"], sl["reason"]) == (fill.fill_id, "1.09820", "ON_FILL")
    assert (tp["tradeID"], tp["price"]) == (fill.fill_id, "1.10310")
    shown = broker.protection_of("EURUSD")
    assert shown is not None and (shown["stop"], shown["take_profit"]) == (1.0982, 1.1031)


async def test_a_trailing_stop_is_sent_as_trailing_stop_loss_on_fill(
    fake: FakeOanda, broker: OandaBroker
) -> None:
    """trailing = true: the distance goes to trailingStopLossOnFill, no fixed stop."""
    await broker.submit(order(-10_000, Protection(0.0015, trailing=True)))
    sent = fake.order_bodies[0]["order"]
    assert {"distance": "0.00150", "timeInForce": "GTC"} == sent["trailingStopLossOnFill"]
    assert "stopLossOnFill" not in sent
    assert 1 == len(txns(fake, "TRAILING_STOP_LOSS_ORDER"))


async def test_closing_the_trade_cancels_its_stop_and_target_as_v20_does(
    fake: FakeOanda, broker: OandaBroker
) -> None:
    """A reversal closes the protected trade: both dependents get LINKED_TRADE_CLOSED."""
    await broker.on_bar(Bar("EURUSD", START_NS - 3600 * NS, 1.1, 1.1, 1.1, 1.1001))
    await broker.submit(order(10_000, Protection(0.0020, 0.0030)))
    await broker.submit(order(-20_000, None, START_NS + 3600 * NS))
    cancels = [t for t in txns(fake, "ORDER_CANCEL") if t["reason"] == "LINKED_TRADE_CLOSED"]
    deps = {t["id"] for t in txns(fake, "STOP_LOSS_ORDER") + txns(fake, "TAKE_PROFIT_ORDER")}
    assert deps == {t["orderID"] for t in cancels}
    assert -10_000 == fake.net_units("EUR_USD")
    assert broker.protection_of("EURUSD") is None  # ctl status shows no stop any more
    fake.push_price("EUR_USD", START_NS + 2 * NS, "1.09000", "1.09020")
    assert -10_000 == fake.net_units("EUR_USD")  # no stop of the closed trade fired


async def test_a_stop_triggered_at_oanda_becomes_a_fill_with_its_reason(
    fake: FakeOanda, broker: OandaBroker
) -> None:
    """The STOP_LOSS_ORDER fill from /transactions/sinceid reaches the book on the next bar."""
    (entry,) = await broker.submit(order(10_000, Protection(0.0020)))
    broker.watch_protective(broker.last_transaction_id)
    fake.push_price("EUR_USD", START_NS + NS, "1.09700", "1.09720")  # through 1.09820
    assert 0 == fake.net_units("EUR_USD")
    await broker.scan_protective()
    assert -10_000 == broker.queued_units("EURUSD")
    (stop,) = await broker.on_bar(Bar("EURUSD", START_NS + 3600 * NS, 1.097, 1.097, 1.097, 1.097))
    assert (stop.units, stop.price, stop.reason) == (-10_000, 1.097, "stop_loss")
    assert stop.client_id == f"oanda-trade-{entry.fill_id}:stop_loss"
    await broker.scan_protective()
    assert [] == await broker.on_bar(Bar("EURUSD", START_NS + 7200 * NS, 1.1, 1.1, 1.1, 1.1))


async def test_concurrent_scans_queue_a_stop_fill_once(
    fake: FakeOanda, broker: OandaBroker
) -> None:
    """The run loop and the drift check may scan together: the fill is booked once."""
    import anyio

    await broker.submit(order(10_000, Protection(0.0020)))
    broker.watch_protective(broker.last_transaction_id)
    fake.push_price("EUR_USD", START_NS + NS, "1.09700", "1.09720")
    async with anyio.create_task_group() as tg:
        tg.start_soon(broker.scan_protective)
        tg.start_soon(broker.scan_protective)
    assert -10_000 == broker.queued_units("EURUSD")
