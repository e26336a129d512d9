"""The OANDA v20 live feed: bars from the pricing stream, history from the candles API.

One pricing stream per process carries every symbol (OANDA allows 20 streams and 2 new
connections a second per IP; the doc's policy is one). :meth:`OandaFeed.run` owns it and
must be started in the supervisor's task group; each :meth:`OandaFeed.bars` call is a
subscriber that first replays complete candles after ``after_ts`` from
``/instruments/{instrument}/candles``, then follows the bars that
:class:`~forexd.feeds.tickbars.BarBuilder` closes from the stream.

Continuity is the point. Whenever a streamed bar may be incomplete (the first bar after
a (re)connect, a bar whose period began before the connection, the first bar after a
subscription, or after its buffer overflowed) the subscriber asks the candles endpoint for
every complete candle after its last bar instead, so an outage becomes a short delay, not
a hole. Only if the endpoint still lacks the candle after ``resync_attempts`` is the
streamed bar used, with a warning.

Streamed bars are an approximation of OANDA's candles: the stream carries at most one
price per instrument per 250 ms, so ``volume`` counts price updates received, not OANDA's
tick volume, and an extreme inside a window can be missed. Set ``candles_only`` to take
every bar from the candles endpoint (the stream then only times the close).

Candles are requested with ``dailyAlignment=0`` and ``alignmentTimezone=UTC`` so H4 and
daily candles start at the same epoch-aligned times as the bars built from the stream
(OANDA's default aligns days to 17:00 New York).

Why it is over 400 lines: the stream, its reconnect policy and the
subscribers' history/resync share the bar builder and the subscriptions; the transport
and wire formats already live in :mod:`forexd.brokers.oanda_api`/``oanda_wire``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

import anyio
import structlog
from anyio.abc import TaskStatus

from forexd.brokers.oanda_api import API_PREFIX, STREAM_STALL_TIMEOUT_S, Backoff, OandaApi
from forexd.brokers.oanda_wire import (
    OandaApiError,
    OandaUnreachableError,
    decimal_field,
    format_time,
    parse_time,
    to_instrument,
    to_symbol,
)
from forexd.domain import Bar, get_instrument
from forexd.errors import BrokerError, UnknownSymbolError
from forexd.feeds.tickbars import BarBuilder, LiveBar

PriceComponent = Literal["bid", "mid", "ask"]

# forexd timeframe -> (OANDA granularity, seconds)
GRANULARITIES: dict[str, tuple[str, int]] = {
    "M1": ("M1", 60),
    "M5": ("M5", 300),
    "M15": ("M15", 900),
    "M30": ("M30", 1800),
    "H1": ("H1", 3600),
    "H4": ("H4", 14400),
    "D1": ("D", 86400),
}
_CANDLE_PRICE = {"bid": "B", "mid": "M", "ask": "A"}

BACKFILL_BARS = 500  # history for a subscriber that has none (OANDA's default count)
CANDLES_PAGE = 5000  # OANDA's maximum count per request
RECONNECT_INITIAL_S = 0.5
RECONNECT_MAX_S = 30.0
HEALTHY_AFTER_S = 60.0  # a connection that lived this long resets the reconnect backoff
RESYNC_ATTEMPTS = 5  # a just-closed candle may not be "complete" at once (guessed lag)
RESYNC_DELAY_S = 1.0
BAR_BUFFER = 1024  # closed bars queued per subscriber before it is told to resync

_log = structlog.get_logger().bind(component="oanda_feed")


class _StreamDataError(Exception):
    """A line of the stream could not be used; the connection is restarted."""


@dataclass(frozen=True, slots=True)
class OandaFeedStats:
    """Counters of the feed (for ``ctl status``)."""

    connected: bool
    disconnects: int
    prices: int
    heartbeats: int
    bars_from_stream: int
    bars_from_candles: int
    stream_bars_unverified: int
    dropped_bars: int
    last_message_age_s: float | None
    last_problem: str | None


class _Subscription:
    __slots__ = ("receive", "resync", "send")

    def __init__(self, size: int) -> None:
        self.send, self.receive = anyio.create_memory_object_stream[LiveBar](size)
        self.resync = True  # the first live bar is always checked against the candles


class OandaFeed:
    """:class:`~forexd.feeds.base.Feed` over OANDA v20 pricing and candles."""

    def __init__(
        self,
        api: OandaApi,
        symbols: Sequence[str],
        timeframe: str = "H1",
        *,
        price: PriceComponent = "bid",
        backfill_bars: int = BACKFILL_BARS,
        candles_page: int = CANDLES_PAGE,
        stall_timeout_s: float = STREAM_STALL_TIMEOUT_S,
        reconnect_initial_s: float = RECONNECT_INITIAL_S,
        reconnect_max_s: float = RECONNECT_MAX_S,
        healthy_after_s: float = HEALTHY_AFTER_S,
        resync_attempts: int = RESYNC_ATTEMPTS,
        resync_delay_s: float = RESYNC_DELAY_S,
        bar_buffer: int = BAR_BUFFER,
        candles_only: bool = False,
    ) -> None:
        """Configure the feed; nothing connects until :meth:`run`.

        Args:
            api: the account's client, possibly shared with the broker.
            symbols: forexd symbols to stream (``EURUSD`` ...).
            timeframe: bar length, one of :data:`GRANULARITIES`.
            price: which side builds the bars (``bid`` by default, as the replay data).
            backfill_bars: candles replayed to a subscriber with no ``after_ts``.
            candles_page: candles per history request (at most 5000).
            stall_timeout_s: reconnect after this long without any message.
            reconnect_initial_s: first reconnect delay (doubles, jittered, capped).
            reconnect_max_s: the cap.
            healthy_after_s: a connection this old resets the backoff when it drops.
            resync_attempts: tries to get a just-closed candle from the candles endpoint.
            resync_delay_s: spacing of those tries.
            bar_buffer: closed bars queued per subscriber.
            candles_only: take every bar from the candles endpoint.

        Raises:
            ValueError: unknown timeframe or an empty symbol list.
            UnknownSymbolError: a symbol forexd does not trade.
        """
        if timeframe not in GRANULARITIES:
            raise ValueError(f"timeframe {timeframe!r}: use one of {', '.join(GRANULARITIES)}")
        if not symbols:
            raise ValueError("OandaFeed needs at least one symbol")
        self.symbols = tuple(get_instrument(s).symbol for s in symbols)
        self.timeframe = timeframe
        self.granularity, self.period_s = GRANULARITIES[timeframe]
        self.price: PriceComponent = price
        self._api = api
        self._backfill_bars = backfill_bars
        self._page = max(1, min(candles_page, CANDLES_PAGE))
        self._stall_s = stall_timeout_s
        self._reconnect = (reconnect_initial_s, reconnect_max_s)
        self._healthy_s = healthy_after_s
        self._resync_attempts = max(1, resync_attempts)
        self._resync_delay_s = resync_delay_s
        self._bar_buffer = bar_buffer
        self._candles_only = candles_only
        self._builder = BarBuilder(self.symbols, self.period_s)
        self._subs: dict[str, list[_Subscription]] = {s: [] for s in self.symbols}
        self._running = False
        self._connected = False
        self._server_ns: int | None = None
        self._last_message: float | None = None
        self._problem: str | None = None
        self._n = dict.fromkeys(
            ("disconnects", "prices", "heartbeats", "stream", "candles", "unverified", "dropped"),
            0,
        )

    def stats(self) -> OandaFeedStats:
        """A snapshot of the counters."""
        n = self._n
        age = None if self._last_message is None else anyio.current_time() - self._last_message
        return OandaFeedStats(
            connected=self._connected,
            disconnects=n["disconnects"],
            prices=n["prices"],
            heartbeats=n["heartbeats"],
            bars_from_stream=n["stream"],
            bars_from_candles=n["candles"],
            stream_bars_unverified=n["unverified"],
            dropped_bars=n["dropped"],
            last_message_age_s=None if age is None else round(age, 3),
            last_problem=self._problem,
        )

    # -- the stream ---------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Keep the pricing stream open, reconnecting with backoff, until cancelled.

        A refusal (401/403, a bad account or instrument) before the stream was ever
        open is a configuration error and is raised. After a good start it is an outage
        like any other (a token revoked for a while, an auth service hiccup): it is
        logged at error, shown in :meth:`stats` and retried with backoff, because a
        daemon that exits would leave its positions unwatched.

        Raises:
            OandaApiError: the first connection was refused with a 4xx.
        """
        if self._running:
            raise RuntimeError("OandaFeed.run() is already running")
        self._running = True
        backoff = Backoff(*self._reconnect)
        task_status.started()
        ever_connected = False
        try:
            while True:
                began = anyio.current_time()
                try:
                    await self._stream_once()
                    self._problem = "the stream ended"
                except (OandaUnreachableError, _StreamDataError) as exc:
                    self._problem = str(exc)
                except OandaApiError as exc:
                    if not ever_connected:
                        _log.error("oanda_stream_refused", error=str(exc))
                        raise
                    self._problem = f"stream refused: {exc}"
                    _log.error("oanda_stream_refused_retrying", error=str(exc))
                finally:
                    ever_connected = ever_connected or self._connected
                    self._builder.disconnected()
                    if self._connected:
                        self._n["disconnects"] += 1
                    self._connected = False
                if anyio.current_time() - began >= self._healthy_s:
                    backoff.reset()
                delay = backoff.next_delay()
                _log.warning("oanda_stream_lost", problem=self._problem, retry_in_s=delay)
                await anyio.sleep(delay)
        finally:
            self._running = False

    async def _stream_once(self) -> None:
        params = {
            "instruments": ",".join(to_instrument(s) for s in self.symbols),
            # No snapshot: a replayed old price would be indistinguishable from a live one,
            # and the first message must prove when the connection was live.
            "snapshot": "false",
        }
        self._builder.connected()
        lines = self._api.stream_lines(
            self._api.account_path("/pricing/stream"), params, stall_timeout_s=self._stall_s
        )
        async with aclosing(lines):
            async for line in lines:
                if not self._connected:
                    self._connected = True
                    _log.info("oanda_stream_connected", instruments=params["instruments"])
                if line.strip():
                    self._dispatch(self._on_message(line))

    def _on_message(self, line: str) -> list[LiveBar]:
        try:
            msg = json.loads(line)
            if not isinstance(msg, dict):
                raise ValueError("not an object")
            kind = msg.get("type")
            self._last_message = anyio.current_time()
            if kind == "HEARTBEAT":
                self._n["heartbeats"] += 1
                now = self._saw_time(parse_time(str(msg.get("time"))))
                return self._builder.on_heartbeat(now)
            if kind != "PRICE":
                return []  # newer API versions may add message types
            self._n["prices"] += 1
            symbol = to_symbol(str(msg.get("instrument")))
            value = _price_of(msg, self.price)
            if symbol not in self._subs or value is None or msg.get("tradeable") is False:
                return []
            now = self._saw_time(parse_time(str(msg.get("time"))))
            return self._builder.on_price(symbol, now, value)
        except (ValueError, BrokerError, KeyError, TypeError) as exc:
            raise _StreamDataError(f"unusable stream line {line[:120]!r}: {exc}") from exc

    def _saw_time(self, ts: int) -> int:
        self._server_ns = max(self._server_ns or ts, ts)
        return ts

    def server_now_ns(self) -> int | None:
        """The newest server time seen on the stream (ns), ``None`` before the first message.

        The actors' "present" (only bars that just closed are traded) is judged on this
        clock, not the local one: it is the clock the bars were built on.
        """
        return self._server_ns

    def _dispatch(self, bars: list[LiveBar]) -> None:
        for live in bars:
            for sub in self._subs[live.bar.symbol]:
                try:
                    sub.send.send_nowait(live)
                except anyio.WouldBlock:
                    sub.resync = True  # it will fetch what it missed from the candles
                    self._n["dropped"] += 1

    # -- subscribers --------------------------------------------------------------------

    async def bars(self, symbol: str, after_ts: int | None = None) -> AsyncGenerator[Bar, None]:
        """Yield the symbol's bars with ``ts > after_ts``: history first, then live, forever.

        Raises:
            UnknownSymbolError: the symbol is not one this feed streams.
            RuntimeError: :meth:`run` has not been started.
        """
        sym = self._check_symbol(symbol)
        if not self._running:
            raise RuntimeError("start OandaFeed.run() in a task group before calling bars()")
        sub = _Subscription(self._bar_buffer)
        self._subs[sym].append(sub)  # before the history request: no bar falls between
        try:
            last = after_ts
            for bar in await self._history_until_served(sym, after_ts):
                last = bar.ts
                self._n["candles"] += 1
                yield bar
            async for live in sub.receive:
                if last is not None and live.bar.ts <= last:
                    continue
                if live.needs_resync or sub.resync or self._candles_only:
                    sub.resync = False
                    batch = await self._resync(sym, last, live)
                else:
                    batch = [live.bar]
                    self._n["stream"] += 1
                for bar in batch:
                    if last is None or bar.ts > last:
                        last = bar.ts
                        yield bar
        finally:
            self._subs[sym].remove(sub)
            sub.send.close()
            sub.receive.close()

    async def _history_until_served(self, symbol: str, after_ts: int | None) -> list[Bar]:
        """:meth:`history`, retried with backoff: an outage delays a subscriber, never ends it."""
        backoff = Backoff(*self._reconnect)
        while True:
            try:
                return await self.history(symbol, after_ts)
            except OandaApiError as exc:
                if exc.status in (400, 404):
                    raise  # a request OANDA will never serve: a bug or a bad symbol
                problem = str(exc)
            except BrokerError as exc:
                problem = str(exc)
            self._problem = f"candles for {symbol}: {problem}"
            delay = backoff.next_delay()
            _log.warning("oanda_candles_failed", symbol=symbol, error=problem, retry_in_s=delay)
            await anyio.sleep(delay)

    async def _resync(self, symbol: str, last: int | None, live: LiveBar) -> list[Bar]:
        got: list[Bar] = []
        for attempt in range(1, self._resync_attempts + 1):
            try:
                got = await self.history(symbol, last)
            except BrokerError as exc:
                _log.warning("oanda_candles_failed", symbol=symbol, error=str(exc))
                got = []
            if got and got[-1].ts >= live.bar.ts:
                self._n["candles"] += len(got)
                return got
            if attempt < self._resync_attempts:
                await anyio.sleep(self._resync_delay_s)
        self._n["candles"] += len(got)
        self._n["unverified"] += 1
        _log.warning(
            "oanda_bar_not_in_candles",
            symbol=symbol,
            bar_ts=live.bar.ts,
            detail="using the streamed bar; it may lack ticks from a stream outage",
        )
        return [*got, live.bar]

    async def history(self, symbol: str, after_ts: int | None = None) -> list[Bar]:
        """Complete candles after ``after_ts``, or the latest ``backfill_bars`` of them.

        Raises:
            BrokerError: OANDA refused the request or could not be reached.
        """
        sym = self._check_symbol(symbol)
        path = f"{API_PREFIX}/instruments/{to_instrument(sym)}/candles"
        base = {
            "price": _CANDLE_PRICE[self.price],
            "granularity": self.granularity,
            "dailyAlignment": "0",
            "alignmentTimezone": "UTC",
        }
        if after_ts is None:
            if self._backfill_bars <= 0:
                return []
            # One extra: the newest candle is usually still forming and is dropped.
            params = {**base, "count": str(self._backfill_bars + 1)}
            bars, _ = await self._candles(sym, path, params)
            return bars[-self._backfill_bars :]
        out: list[Bar] = []
        cursor = after_ts
        while True:
            params = {
                **base,
                "from": format_time(cursor, self._api.datetime_format),
                "includeFirst": "false",
                "count": str(self._page),  # never with "to": the future-"to" error is avoided
            }
            bars, more = await self._candles(sym, path, params)
            page = [b for b in bars if b.ts > cursor]
            out.extend(page)
            if not more or not page:
                return out
            cursor = page[-1].ts

    async def _candles(
        self, symbol: str, path: str, params: Mapping[str, str]
    ) -> tuple[list[Bar], bool]:
        """Complete candles of one request, and whether a further page may exist."""
        payload = await self._api.get(path, params)
        raw = payload.get("candles") or []
        out = []
        forming = False
        for candle in raw:
            if not candle.get("complete"):
                forming = True
                continue
            ohlc = candle.get(self.price) or {}
            o, h, lo, c = (float(decimal_field(ohlc, k, f"candle.{self.price}")) for k in "ohlc")
            ts = parse_time(str(candle.get("time")))
            out.append(Bar(symbol, ts, o, h, lo, c, float(candle.get("volume") or 0)))
        return out, len(raw) >= int(params["count"]) and not forming

    def _check_symbol(self, symbol: str) -> str:
        sym = get_instrument(symbol).symbol
        if sym not in self._subs:
            raise UnknownSymbolError(
                f"symbol {symbol!r} is not streamed by this OANDA feed "
                f"({', '.join(self.symbols)}); add it to the configured symbols"
            )
        return sym


def _price_of(msg: Mapping[str, Any], component: PriceComponent) -> float | None:
    """The best bid, best ask or their mid of a PRICE message; ``None`` if a side is empty."""
    sides: dict[str, Decimal] = {}
    for side, key in (("bid", "bids"), ("ask", "asks")):
        buckets = msg.get(key) or []
        if buckets:
            sides[side] = decimal_field(buckets[0], "price", key)
    if component == "mid":
        if len(sides) < 2:
            return None
        return float((sides["bid"] + sides["ask"]) / 2)
    value = sides.get(component)
    return None if value is None else float(value)
