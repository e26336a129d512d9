"""The OANDA v20 broker and feed against the fake OANDA server (a real local HTTP server)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any

import anyio
import pytest
import structlog
from pydantic import SecretStr

from forexd.brokers.base import AccountSnapshot, BrokerOrderState
from forexd.brokers.oanda import (
    OandaBroker,
    OrderOutcomeUnknownError,
    fill_from_transaction,
    oanda_client_id,
)
from forexd.brokers.oanda_api import OandaApi, RateLimiter
from forexd.brokers.oanda_wire import (
    OandaApiError,
    OandaUnreachableError,
    format_time,
    parse_time,
    to_instrument,
    to_symbol,
)
from forexd.domain import Bar, Fill, Order, OrderStatus
from forexd.errors import BrokerError, ConfigError
from tests.fake_oanda import ACCOUNT_ID, START_NS, FakeOanda
from tests.fake_oanda_orders import create_order

pytestmark = pytest.mark.anyio

NS = 1_000_000_000
FAST: dict[str, Any] = {
    "backoff_initial_s": 0.01,
    "backoff_max_s": 0.05,
    "stream_connect_interval_s": 0.0,
    "timeout_s": 2.0,
}


def make_api(fake: FakeOanda, token: str | None = None, **options: Any) -> OandaApi:
    """A client for the fake with short backoffs."""
    return OandaApi(
        ACCOUNT_ID,
        SecretStr(token or fake.token),
        rest_url=fake.url,
        stream_url=fake.url,
        **{**FAST, **options},
    )


def order(units: int, bar_ts: int = START_NS, symbol: str = "EURUSD") -> Order:
    """A market order with forexd's deterministic client id."""
    return Order(Order.make_client_id(symbol, bar_ts, 0), symbol, units, bar_ts, 0)


@pytest.fixture
def fake() -> Iterator[FakeOanda]:
    """A running fake with EUR/USD at 1.10000/1.10020 and fast heartbeats."""
    with FakeOanda(heartbeat_s=0.2) as server:
        server.push_price("EUR_USD", START_NS, "1.10000", "1.10020")
        server.push_price("USD_JPY", START_NS, "150.000", "150.020")
        yield server


@pytest.fixture
async def api(fake: FakeOanda) -> AsyncIterator[OandaApi]:
    """A client for the fake, closed after the test."""
    client = make_api(fake)
    yield client
    await client.aclose()


@pytest.fixture
def broker(api: OandaApi) -> OandaBroker:
    """A broker with a short not-found grace window."""
    return OandaBroker(api, not_found_grace_s=0.3, lookup_poll_s=0.02)


def fill_of(fake: FakeOanda, n: int = -1) -> dict[str, Any]:
    """The n-th ORDER_FILL transaction the fake made."""
    fills = [t for t in fake.book.transactions if t["type"] == "ORDER_FILL"]
    return fills[n]


# -- orders --------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["UNIX", "RFC3339"])
async def test_market_order_fills_at_the_ask_labelled_with_the_client_id(
    fake: FakeOanda, fmt: str
) -> None:
    """A buy fills at the ask; the fill's id, units, price and time come back parsed."""
    api = make_api(fake, datetime_format=fmt)
    fills = await OandaBroker(api).submit(order(10_000))
    await api.aclose()
    expected = [
        Fill(fill_of(fake)["id"], order(1).client_id, "EURUSD", 10_000, 1.1002, 0.0, START_NS)
    ]
    assert expected == fills
    sent = fake.order_bodies[0]["order"]
    assert {"id": oanda_client_id(order(1).client_id), "tag": "forexd"} == sent["clientExtensions"]
    assert ("MARKET", "EUR_USD", "10000", "FOK") == (
        sent["type"],
        sent["instrument"],
        sent["units"],
        sent["timeInForce"],
    )


async def test_closing_fill_takes_price_from_trades_closed_and_costs_as_commission() -> None:
    """A sell that closes a long fills at the bid; commission is the fill's cost."""
    with FakeOanda(commission_per_million="50") as fake:
        fake.push_price("EUR_USD", START_NS, "1.10000", "1.10020")
        api = make_api(fake)
        broker = OandaBroker(api)
        await broker.submit(order(10_000))
        fake.push_price("EUR_USD", START_NS + 60 * NS, "1.10100", "1.10120")
        fills = await broker.submit(order(-10_000, START_NS + 60 * NS))
        await api.aclose()
    # 10,000 EUR at 1.101 = 11,010 USD notional; 50 per million = 0.5505 USD
    expected = Fill(
        fill_of(fake)["id"], order(1, START_NS + 60 * NS).client_id, "EURUSD", -10_000,
        1.101, 0.5505, START_NS + 60 * NS,
    )  # fmt: skip
    assert [expected] == fills
    assert "tradesClosed" in fill_of(fake) and "tradeOpened" not in fill_of(fake)


async def test_rejected_order_raises_broker_error_naming_the_reason(
    fake: FakeOanda, broker: OandaBroker
) -> None:
    """A 400 with orderRejectTransaction is a BrokerError carrying rejectReason."""
    fake.reject_next_order("INSUFFICIENT_MARGIN")
    with pytest.raises(OandaApiError) as caught:
        await broker.submit(order(10_000))
    assert (400, "INSUFFICIENT_MARGIN") == (caught.value.status, caught.value.reason)
    assert "INSUFFICIENT_MARGIN" in str(caught.value)
    assert {} == await broker.positions()


async def test_schema_error_with_only_an_error_message_raises_broker_error(
    fake: FakeOanda, broker: OandaBroker
) -> None:
    """A 400 carrying only errorMessage is still a clear BrokerError."""
    message = "Invalid value specified for 'order.instrument'"
    fake.fail_next(400, path_contains="/orders", body={"errorMessage": message})
    with pytest.raises(BrokerError, match=r"order\.instrument"):
        await broker.submit(order(10_000))
    assert 1 == fake.order_posts


async def test_cancelled_order_raises_broker_error_with_the_cancel_reason(
    fake: FakeOanda, broker: OandaBroker
) -> None:
    """A 201 with orderCancelTransaction and no fill is not a fill."""
    fake.cancel_next_order("MARKET_HALTED")
    with pytest.raises(OandaApiError) as caught:
        await broker.submit(order(10_000))
    assert "MARKET_HALTED" == caught.value.reason
    assert {} == await broker.positions()


async def test_lost_response_is_resolved_from_the_transactions_without_resending(
    fake: FakeOanda, broker: OandaBroker
) -> None:
    """The order executes but the connection drops: the fill comes from sinceid."""
    fake.drop_next_order()
    fills = await broker.submit(order(10_000))
    expected = [
        Fill(fill_of(fake)["id"], order(1).client_id, "EURUSD", 10_000, 1.1002, 0.0, START_NS)
    ]
    assert expected == fills
    assert 1 == fake.order_posts
    assert {"EURUSD": 10_000} == await broker.positions()
    assert (1, 0) == (broker.stats().resolved_filled, broker.stats().unresolved)


async def test_lost_response_is_resolved_despite_the_read_after_write_404(
    fake: FakeOanda,
) -> None:
    """A fresh order answering 404 by client id is still found in the transactions."""
    fake.lookup_lag_s = 5.0
    api = make_api(fake)
    broker = OandaBroker(api)
    fake.drop_next_order()
    fills = await broker.submit(order(10_000))
    await api.aclose()
    assert [10_000] == [f.units for f in fills]
    assert 1 == fake.order_posts


async def test_order_dropped_before_execution_is_never_resent_and_released_once_absent(
    fake: FakeOanda, api: OandaApi
) -> None:
    """No record of the order: outcome unknown, no resend; released after absent_after_s."""
    broker = OandaBroker(api, absent_after_s=0.2)
    fake.drop_next_order(before_execute=True)
    with pytest.raises(OrderOutcomeUnknownError):
        await broker.submit(order(10_000))
    assert ["EURUSD"] == [u.symbol for u in broker.unresolved()]
    while broker.unresolved():  # each pass asks OANDA; absence counts after 0.2 s
        await broker.resolve_pending()
    released = broker.take_released("EURUSD")
    assert [order(10_000).client_id] == [o.client_id for o, _ in released]
    assert "no transaction and no order" in released[0][1]
    assert (1, 0) == (fake.order_posts, len(fake.book.open_trades()))


async def test_an_order_executed_after_the_read_timeout_is_resolved_filled_once(
    fake: FakeOanda,
) -> None:
    """OANDA runs the order after the client gave up: one POST, one fill, found later."""
    api = make_api(fake, timeout_s=0.3)
    broker = OandaBroker(api, absent_after_s=30.0)
    fake.execute_next_order_late(1.0)
    with pytest.raises(OrderOutcomeUnknownError):
        await broker.submit(order(10_000))
    fake.wait_for_served("/orders", 1)
    await broker.resolve_pending()
    fills = await broker.on_bar(Bar("EURUSD", START_NS + 60 * NS, 1.1, 1.1, 1.1, 1.1))
    await api.aclose()
    assert [10_000] == [f.units for f in fills]
    assert (1, 1, 10_000) == (fake.order_posts, len(fake.fills_for("")), fake.net_units("EUR_USD"))
    assert [] == broker.take_released("EURUSD")


async def test_slow_order_response_times_out_and_is_recovered(fake: FakeOanda) -> None:
    """A response slower than the timeout is treated as lost and resolved."""
    api = make_api(fake, timeout_s=0.3)
    broker = OandaBroker(api)
    fake.delay_next_order_response(1.0)
    fills = await broker.submit(order(10_000))
    await api.aclose()
    assert [fill_of(fake)["id"]] == [f.fill_id for f in fills]
    assert 1 == fake.order_posts


async def test_unresolvable_outcome_is_not_reported_as_rejected(fake: FakeOanda) -> None:
    """Lost answer + failing lookups: outcome unknown, then resolved in the background."""
    api = make_api(fake, get_attempts=2)
    broker = OandaBroker(api)
    fake.drop_next_order()
    fake.fail_next(503, path_contains="/transactions/", count=2)
    with pytest.raises(OrderOutcomeUnknownError) as caught:
        await broker.submit(order(10_000))
    assert not isinstance(caught.value, BrokerError)
    assert 1 == broker.stats().unresolved
    await broker.resolve_pending()
    bar = Bar("EURUSD", START_NS + 60 * NS, 1.1, 1.1, 1.1, 1.1)
    fills = await broker.on_bar(bar)
    await api.aclose()
    assert [fill_of(fake)["id"]] == [f.fill_id for f in fills]
    assert 1 == fake.order_posts
    assert 0 == broker.stats().unresolved


async def test_a_5xx_answer_to_an_order_is_never_resent(
    fake: FakeOanda, broker: OandaBroker
) -> None:
    """503 on POST: the outcome is resolved, not guessed; one POST in all."""
    fake.fail_next(503, path_contains="/orders", count=1)
    with pytest.raises(OrderOutcomeUnknownError):
        await broker.submit(order(10_000))
    assert (1, 0) == (fake.order_posts, len(fake.book.open_trades()))


async def test_lookup_order_recovers_the_fill_of_an_order_placed_before_a_crash(
    fake: FakeOanda, broker: OandaBroker
) -> None:
    """Reconciliation path: an order sent by a previous process is found with its fill."""
    placed = order(-5_000)
    with fake.lock:  # the previous process's POST, whose answer it never saw
        status, _ = create_order(
            fake.book,
            {
                "order": {
                    "type": "MARKET",
                    "instrument": "EUR_USD",
                    "units": "-5000",
                    "clientExtensions": {"id": oanda_client_id(placed.client_id)},
                }
            },
        )
    assert 201 == status
    state = await broker.lookup_order(placed.client_id)
    expected_fill = Fill(
        fill_of(fake)["id"], placed.client_id, "EURUSD", -5_000, 1.1, 0.0, START_NS
    )
    assert BrokerOrderState(placed.client_id, OrderStatus.FILLED, (expected_fill,)) == state
    assert 0 == fake.order_posts


async def test_lookup_order_of_an_order_never_sent_is_none(broker: OandaBroker) -> None:
    """A 404 NO_SUCH_ORDER that outlasts the grace window means never created."""
    assert None is await broker.lookup_order(order(1, START_NS + 1).client_id)


async def test_lookup_of_a_cancelled_order_reports_it_cancelled(
    fake: FakeOanda, broker: OandaBroker
) -> None:
    """Lost answer of a cancelled order: the lookup finds the cancel, no resend."""
    fake.cancel_next_order("INSUFFICIENT_MARGIN")
    fake.drop_next_order()
    with pytest.raises(OandaApiError) as caught:
        await broker.submit(order(10_000))
    assert "INSUFFICIENT_MARGIN" == caught.value.reason
    state = await broker.lookup_order(order(1).client_id)
    assert BrokerOrderState(order(1).client_id, OrderStatus.CANCELLED) == state
    assert 1 == fake.order_posts


async def test_post_to_an_unreachable_host_is_reported_not_placed() -> None:
    """A connect error means the request never left: a plain BrokerError."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    api = OandaApi(ACCOUNT_ID, SecretStr("t"), rest_url=url, stream_url=url, **FAST)
    with pytest.raises(BrokerError, match="not placed"):
        await OandaBroker(api).submit(order(10_000))
    with pytest.raises(OandaUnreachableError, match="failed 5 times"):
        await OandaBroker(api).account()
    await api.aclose()


# -- account ------------------------------------------------------------------------------


async def test_positions_are_net_of_long_and_short_sides() -> None:
    """On a hedging account long 10,000 and short 3,000 EUR/USD net to 7,000."""
    with FakeOanda(hedging=True) as fake:
        fake.push_price("EUR_USD", START_NS, "1.10000", "1.10020")
        fake.push_price("USD_JPY", START_NS, "150.000", "150.020")
        api = make_api(fake)
        broker = OandaBroker(api)
        await broker.submit(order(10_000))
        await broker.submit(order(-3_000, START_NS + 1))
        await broker.submit(order(-5_000, START_NS, "USDJPY"))
        positions = await broker.positions()
        await api.aclose()
    assert {"EURUSD": 7_000, "USDJPY": -5_000} == positions


async def test_account_snapshot_reads_balance_nav_unrealized_and_margin(
    fake: FakeOanda, broker: OandaBroker
) -> None:
    """Long 10,000 at 1.10020 marked at bid 1.10120: +10 USD open P&L."""
    await broker.submit(order(10_000))
    fake.push_price("EUR_USD", START_NS + NS, "1.10120", "1.10140")
    # margin: 10,000 x mid 1.1013 x 5 %
    assert AccountSnapshot(100_000.0, 100_010.0, 10.0, 550.65) == await broker.account()
    assert AccountSnapshot(100_000.0, 100_010.0, 10.0, 550.65) == await broker.verify()


async def test_bad_token_fails_clearly_without_revealing_it(fake: FakeOanda) -> None:
    """401: the error says which setting to fix and never contains the token."""
    secret = "wrong-token-5e8b1d"
    api = make_api(fake, token=secret)
    with structlog.testing.capture_logs() as logs, pytest.raises(OandaApiError) as caught:
        await OandaBroker(api).account()
    await api.aclose()
    assert 401 == caught.value.status
    assert "Insufficient authorization" in str(caught.value)
    assert "broker.oanda.token" in str(caught.value)
    for text in (str(caught.value), repr(caught.value), repr(api), repr(logs)):
        assert secret not in text
    assert f"Bearer {secret}" == fake.auth_headers[-1]  # it was sent, only there


async def test_rate_limited_get_is_retried(fake: FakeOanda, api: OandaApi) -> None:
    """A 429 on an idempotent GET is retried after Retry-After."""
    fake.fail_next(429, path_contains="/summary", retry_after=0.05)
    snapshot = await OandaBroker(api).account()
    assert 100_000.0 == snapshot.balance
    assert (1, 1) == (api.stats().rate_limited, api.stats().retries)


async def test_rate_limiter_spaces_requests_beyond_the_burst() -> None:
    """At 20/s with a burst of 2, six requests take at least (6 - 2) / 20 s."""
    limiter = RateLimiter(20.0, burst=2)
    start = anyio.current_time()
    for _ in range(6):
        await limiter.acquire()
    assert anyio.current_time() - start >= 0.2 - 0.01


def test_config_errors_name_the_key() -> None:
    """A malformed account id or an empty token is a ConfigError naming the key."""
    with pytest.raises(ConfigError, match=r"broker\.oanda\.account_id"):
        OandaApi("12345", SecretStr("t"), rest_url="http://x", stream_url="http://x")
    with pytest.raises(ConfigError, match=r"broker\.oanda\.token"):
        OandaApi(ACCOUNT_ID, SecretStr(" "), rest_url="http://x", stream_url="http://x")


# -- wire format --------------------------------------------------------------------------


def test_client_ids_carry_the_installation_id_within_32_characters() -> None:
    """forexd ids get the installation prefix and whole seconds; odd ids a stable hash."""
    ours = Order.make_client_id("USDJPY", START_NS, 12)
    assert "USDJPY-1704186000-12" == oanda_client_id(ours)
    assert "a1b2c3-USDJPY-1704186000-12" == oanda_client_id(ours, "a1b2c3")
    assert oanda_client_id(ours, "a1b2c3") != oanda_client_id(ours, "d4e5f6")
    odd = "strategy/with spaces/" + "x" * 40
    mapped = oanda_client_id(odd, "a1b2c3")
    assert mapped == oanda_client_id(odd, "a1b2c3")
    assert (32, True) == (len(mapped), mapped.startswith("a1b2c3-h"))
    assert mapped != oanda_client_id(odd + "y", "a1b2c3")


async def test_an_installation_id_must_be_six_lowercase_alphanumerics(api: OandaApi) -> None:
    """A damaged installation id file is refused with what to do."""
    with pytest.raises(BrokerError, match="installation_id file"):
        OandaBroker(api, installation_id="ABC")


async def test_errors_quote_the_account_id_masked(fake: FakeOanda) -> None:
    """What reaches stderr or ctl status never holds the full account id."""
    api = make_api(fake, get_attempts=1)
    fake.fail_next(503, path_contains="/summary")
    with pytest.raises(OandaUnreachableError) as caught:
        await OandaBroker(api).verify()
    await api.aclose()
    assert ACCOUNT_ID not in str(caught.value)
    assert "***-***-***-001" in str(caught.value)


def test_datetimes_parse_from_both_formats_to_the_same_nanosecond() -> None:
    """RFC3339 and UNIX forms of one instant give one epoch-ns value, both ways."""
    ts = 1_489_066_666_048_197_280
    assert ts == parse_time("2017-03-09T13:37:46.048197280Z")
    assert ts == parse_time("1489066666.048197280")
    assert ts == parse_time("2017-03-09T14:37:46.048197280+01:00")
    assert "2017-03-09T13:37:46.048197280Z" == format_time(ts, "RFC3339")
    assert "1489066666.048197280" == format_time(ts, "UNIX")


def test_instrument_names_map_both_ways() -> None:
    """EURUSD <-> EUR_USD; instruments forexd does not trade map to None."""
    assert ("EUR_USD", "USD_JPY") == (to_instrument("EURUSD"), to_instrument("usdjpy"))
    assert ("EURUSD", None) == (to_symbol("EUR_USD"), to_symbol("XAU_USD"))


def test_fill_price_is_the_units_weighted_price_of_its_trades() -> None:
    """A fill that closes one trade and opens another averages their prices."""
    txn = {
        "id": "9",
        "type": "ORDER_FILL",
        "instrument": "EUR_USD",
        "units": "-3000",
        "time": "1700000000.5",
        "price": "9.99999",
        "tradesClosed": [{"tradeID": "5", "units": "-1000", "price": "1.10000"}],
        "tradeOpened": {"tradeID": "9", "units": "-2000", "price": "1.10030"},
        "commission": "0.1000",
        "financing": "-0.0500",
    }
    fill = fill_from_transaction(txn, "c")
    expected = (Decimal("1.10020"), Decimal("0.15"), 1_700_000_000_500_000_000)
    assert expected == (Decimal(str(fill.price)), Decimal(str(fill.commission)), fill.ts)


async def test_only_a_recently_sent_order_is_tracked_after_a_restart(
    fake: FakeOanda, api: OandaApi
) -> None:
    """Start-up: an order younger than absent_after_s is resolved later, an older one not."""
    broker = OandaBroker(api, absent_after_s=30.0)
    assert broker.track_unresolved(order(1000), age_ns=5 * NS)
    assert not broker.track_unresolved(order(1000, START_NS + 60 * NS), age_ns=31 * NS)
    assert [order(1000).client_id] == [u.client_id for u in broker.unresolved()]
