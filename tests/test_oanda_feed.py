"""The OANDA feed: tick aggregation, the pricing stream, reconnects and candle history."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing

import anyio
import pytest
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream
from pydantic import SecretStr

from forexd.brokers.oanda_api import OandaApi
from forexd.brokers.oanda_wire import OandaApiError
from forexd.domain import Bar
from forexd.errors import UnknownSymbolError
from forexd.feeds.oanda import OandaFeed
from forexd.feeds.tickbars import BarBuilder, LiveBar
from tests.fake_oanda import ACCOUNT_ID, START_NS, FakeOanda

pytestmark = pytest.mark.anyio

NS = 1_000_000_000
T0 = START_NS + 3600 * NS  # 10:00:00Z, an hour after the fake's clock starts
WAIT_S = 5.0


@pytest.fixture
def fake() -> Iterator[FakeOanda]:
    """A running fake with heartbeats every 0.2 s."""
    with FakeOanda(heartbeat_s=0.2) as server:
        yield server


@pytest.fixture
async def api(fake: FakeOanda) -> AsyncIterator[OandaApi]:
    """A client for the fake (no pacing between stream connects)."""
    client = OandaApi(
        ACCOUNT_ID,
        SecretStr(fake.token),
        rest_url=fake.url,
        stream_url=fake.url,
        stream_connect_interval_s=0.0,
    )
    yield client
    await client.aclose()


def make_feed(api: OandaApi, **options: object) -> OandaFeed:
    """An M1 EUR/USD feed with fast reconnects and resyncs."""
    settings: dict[str, object] = {
        "reconnect_initial_s": 0.02,
        "reconnect_max_s": 0.05,
        "resync_attempts": 2,
        "resync_delay_s": 0.02,
        "stall_timeout_s": 2.0,
        **options,
    }
    return OandaFeed(api, ["EURUSD"], "M1", **settings)  # type: ignore[arg-type]


async def follow(
    tg: TaskGroup, feed: OandaFeed, fake: FakeOanda, after_ts: int | None
) -> MemoryObjectReceiveStream[Bar]:
    """Start the feed and one subscriber; return the subscriber's bars once streaming."""
    send, receive = anyio.create_memory_object_stream[Bar](100)

    async def consume() -> None:
        async with send, aclosing(feed.bars("EURUSD", after_ts)) as source:
            async for bar in source:
                await send.send(bar)

    await tg.start(feed.run)
    tg.start_soon(consume)
    await anyio.to_thread.run_sync(fake.wait_for_stream_connections, 1)
    await anyio.to_thread.run_sync(fake.wait_for_served, "/candles", 1)  # its history
    return receive


async def next_bar(bars: MemoryObjectReceiveStream[Bar]) -> Bar:
    """The subscriber's next bar, failing the test if none comes."""
    with anyio.fail_after(WAIT_S):
        return await bars.receive()


def push(fake: FakeOanda, offset_s: float, bid: str, ask: str) -> None:
    """A EUR/USD price at T0 + offset."""
    fake.push_price("EUR_USD", T0 + int(offset_s * NS), bid, ask)


# -- the aggregator -----------------------------------------------------------------------


def test_bar_builder_aggregates_ticks_into_hand_computed_bars() -> None:
    """Four ticks make a bar closed by the next period's tick; a heartbeat closes that."""
    builder = BarBuilder(["EURUSD"], 60)
    builder.connected()
    assert [] == builder.on_heartbeat(T0 - 30 * NS)
    out: list[LiveBar] = []
    for offset, price in ((1, 1.1), (15, 1.1005), (30, 1.0998), (59, 1.1002), (61, 1.101)):
        out += builder.on_price("EURUSD", T0 + offset * NS, price)
    out += builder.on_heartbeat(T0 + 120 * NS)  # end + 1 s grace not yet passed
    assert 1 == len(out)
    out += builder.on_heartbeat(T0 + 121 * NS)
    expected = [
        Bar("EURUSD", T0, 1.1, 1.1005, 1.0998, 1.1002, 4.0),
        Bar("EURUSD", T0 + 60 * NS, 1.101, 1.101, 1.101, 1.101, 1.0),
    ]
    assert expected == [live.bar for live in out]
    # The first bar after the start is checked against the candles; the next is trusted.
    assert [True, False] == [live.needs_resync for live in out]


def test_bar_builder_flags_bars_the_stream_may_have_missed_ticks_of() -> None:
    """A bar begun before the connection, or open across a disconnect, needs a resync."""
    builder = BarBuilder(["EURUSD"], 60)
    builder.connected()
    out = builder.on_price("EURUSD", T0 + 30 * NS, 1.1)  # connected mid-period
    out += builder.on_price("EURUSD", T0 + 61 * NS, 1.2)
    out += builder.on_price("EURUSD", T0 + 121 * NS, 1.3)
    builder.disconnected()
    builder.connected()
    out += builder.on_price("EURUSD", T0 + 150 * NS, 1.4)  # same period, after the gap
    out += builder.on_price("EURUSD", T0 + 61 * NS, 1.5)  # older than the last tick
    out += builder.on_heartbeat(T0 + 200 * NS)
    out += builder.on_price("EURUSD", T0 + 170 * NS, 1.6)  # late: its bar was emitted
    assert [T0, T0 + 60 * NS, T0 + 120 * NS] == [live.bar.ts for live in out]
    assert [True, False, True] == [live.needs_resync for live in out]
    assert (1.3, 1.4, 2.0) == (out[2].bar.open, out[2].bar.close, out[2].bar.volume)
    assert 1 == builder.late_ticks


# -- the feed -----------------------------------------------------------------------------


async def test_feed_streams_prices_into_candles(fake: FakeOanda, api: OandaApi) -> None:
    """Bid ticks become M1 bars with hand-computed OHLC and tick counts."""
    feed = make_feed(api)
    async with anyio.create_task_group() as tg:
        bars = await follow(tg, feed, fake, after_ts=T0 - 60 * NS)
        for offset, bid, ask in (
            (1, "1.10000", "1.10010"),
            (15, "1.10050", "1.10060"),
            (30, "1.09980", "1.09990"),
            (59, "1.10020", "1.10030"),
            (61, "1.10100", "1.10110"),
        ):
            push(fake, offset, bid, ask)
        first = await next_bar(bars)
        push(fake, 90, "1.10080", "1.10090")
        push(fake, 125, "1.10200", "1.10210")
        second = await next_bar(bars)
        fake.push_heartbeat(T0 + 185 * NS)
        third = await next_bar(bars)
        tg.cancel_scope.cancel()
        bars.close()
    expected = [
        Bar("EURUSD", T0, 1.1, 1.1005, 1.0998, 1.1002, 4.0),
        Bar("EURUSD", T0 + 60 * NS, 1.101, 1.101, 1.1008, 1.1008, 2.0),
        Bar("EURUSD", T0 + 120 * NS, 1.102, 1.102, 1.102, 1.102, 1.0),
    ]
    assert expected == [first, second, third]
    # The first was checked against the candles; the other two came from the stream.
    assert (2, 1) == (feed.stats().bars_from_stream, feed.stats().bars_from_candles)


async def test_feed_reconnects_after_a_cut_and_fills_the_gap_from_candles(
    fake: FakeOanda, api: OandaApi
) -> None:
    """Prices during the outage are not lost: the broken bar comes from the candles."""
    feed = make_feed(api)
    async with anyio.create_task_group() as tg:
        bars = await follow(tg, feed, fake, after_ts=T0 - 60 * NS)
        push(fake, 1, "1.10000", "1.10010")
        push(fake, 61, "1.10100", "1.10110")
        first = await next_bar(bars)
        fake.refuse_streams()
        fake.cut_streams()
        push(fake, 70, "1.10300", "1.10310")  # the new high, during the outage
        fake.refuse_streams(False)
        await anyio.to_thread.run_sync(fake.wait_for_stream_connections, 2)
        push(fake, 130, "1.10150", "1.10160")
        fake.push_heartbeat(T0 + 185 * NS)
        rest = [await next_bar(bars), await next_bar(bars)]
        tg.cancel_scope.cancel()
        bars.close()
    expected = [
        Bar("EURUSD", T0, 1.1, 1.1, 1.1, 1.1, 1.0),
        Bar("EURUSD", T0 + 60 * NS, 1.101, 1.103, 1.101, 1.103, 2.0),
        Bar("EURUSD", T0 + 120 * NS, 1.1015, 1.1015, 1.1015, 1.1015, 1.0),
    ]
    assert expected == [first, *rest]
    assert 1 <= feed.stats().disconnects


async def test_feed_reconnects_when_the_stream_goes_silent(fake: FakeOanda, api: OandaApi) -> None:
    """No heartbeat for the stall timeout: the feed drops the stream and reconnects."""
    feed = make_feed(api, stall_timeout_s=0.3)
    async with anyio.create_task_group() as tg:
        bars = await follow(tg, feed, fake, after_ts=T0 - 60 * NS)
        fake.silence_streams()
        await anyio.to_thread.run_sync(fake.wait_for_stream_connections, 2)
        fake.silence_streams(False)
        push(fake, 1, "1.10000", "1.10010")
        push(fake, 61, "1.10100", "1.10110")
        first = await next_bar(bars)
        tg.cancel_scope.cancel()
        bars.close()
    assert Bar("EURUSD", T0, 1.1, 1.1, 1.1, 1.1, 1.0) == first
    assert "nothing received" in (feed.stats().last_problem or "")


async def test_history_returns_complete_candles_only_page_by_page(
    fake: FakeOanda, api: OandaApi
) -> None:
    """One tick per minute for five minutes, the sixth still open: four after T0."""
    for minute in range(6):
        push(fake, minute * 60 + 10, f"1.1000{minute}", f"1.1001{minute}")
    feed = make_feed(api, candles_page=2, backfill_bars=3)
    after = await feed.history("EURUSD", after_ts=T0)
    latest = await feed.history("EURUSD")

    def bar(minute: int) -> Bar:
        price = float(f"1.1000{minute}")
        return Bar("EURUSD", T0 + minute * 60 * NS, price, price, price, price, 1.0)

    assert [bar(m) for m in (1, 2, 3, 4)] == after
    assert [bar(m) for m in (2, 3, 4)] == latest
    candle_requests = [p for m, p in fake.requests if p.endswith("/candles")]
    assert 4 == len(candle_requests)  # three pages after T0, one for the latest


async def test_feed_refuses_unknown_symbols_and_bars_before_run(api: OandaApi) -> None:
    """bars() needs run() started, and only streams the configured symbols."""
    feed = make_feed(api)
    with pytest.raises(RuntimeError, match=r"run\(\)"):
        await feed.bars("EURUSD").__anext__()
    with pytest.raises(UnknownSymbolError, match="GBPUSD"):
        await feed.history("GBPUSD")


# -- issue 11: trouble degrades, never kills ----------------------------------------------


async def test_a_401_at_the_first_connect_is_raised(fake: FakeOanda, api: OandaApi) -> None:
    """A token refused before the stream ever opened is a configuration error."""
    fake.refuse_streams(status=401)
    feed = make_feed(api)
    with pytest.raises(OandaApiError) as caught:
        await feed.run()
    assert 401 == caught.value.status


async def test_a_401_after_a_good_start_is_retried_until_the_stream_is_back(
    fake: FakeOanda, api: OandaApi
) -> None:
    """A token refused on a reconnect: reported in stats, retried, bars flow again."""
    feed = make_feed(api)
    async with anyio.create_task_group() as tg:
        bars = await follow(tg, feed, fake, after_ts=T0 - 60 * NS)
        fake.refuse_streams(status=401)
        fake.cut_streams()
        # The cut connection, then one refused with 401, have been answered.
        await anyio.to_thread.run_sync(fake.wait_for_served, "/pricing/stream", 2)
        fake.refuse_streams(False)
        await anyio.to_thread.run_sync(fake.wait_for_stream_connections, 2)
        push(fake, 1, "1.10000", "1.10010")
        push(fake, 61, "1.10100", "1.10110")
        first = await next_bar(bars)
        tg.cancel_scope.cancel()
        bars.close()
    assert Bar("EURUSD", T0, 1.1, 1.1, 1.1, 1.1, 1.0) == first
    assert "HTTP 401" in (feed.stats().last_problem or "")


async def test_a_subscriber_waits_out_a_candles_outage_instead_of_failing(
    fake: FakeOanda, api: OandaApi
) -> None:
    """History that answers 503 delays the subscriber; its bars come once OANDA is back."""
    quick = OandaApi(
        ACCOUNT_ID,
        SecretStr(fake.token),
        rest_url=fake.url,
        stream_url=fake.url,
        stream_connect_interval_s=0.0,
        get_attempts=1,
    )
    push(fake, 1, "1.10000", "1.10010")
    push(fake, 61, "1.10100", "1.10110")
    fake.fail_next(503, path_contains="/candles", count=3)
    feed = make_feed(quick)
    got = []
    async with anyio.create_task_group() as tg:
        await tg.start(feed.run)
        with anyio.fail_after(WAIT_S):
            async with aclosing(feed.bars("EURUSD", T0 - 60 * NS)) as source:
                async for bar in source:
                    got.append(bar)
                    break
        tg.cancel_scope.cancel()
    await quick.aclose()
    assert [Bar("EURUSD", T0, 1.1, 1.1, 1.1, 1.1, 1.0)] == got
    assert "candles for EURUSD" in (feed.stats().last_problem or "")
