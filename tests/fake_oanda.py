"""A fake OANDA v20 server: a real HTTP/1.1 server on 127.0.0.1, a random port, a thread.

It follows ``shared/docs/oanda-v20-subset.md`` (§ numbers below): Bearer auth answered by
``401 {"errorMessage": ...}`` (§1), numbers and ids as strings, datetimes per
``Accept-Datetime-Format`` (RFC3339 by default), account summary, candles, a chunked
newline-delimited pricing stream with heartbeats and lines split across chunks (§4),
market orders with fill/cancel/reject outcomes (§5), positions and closes (§6), order and
transaction lookups with an optional read-after-write 404 lag (§7), and an optional 429
above a request rate (§8). The account lives in ``fake_oanda_book.py``, with orders,
closes and candles in the ``fake_oanda_*`` modules beside it.

Fault hooks for tests: :meth:`FakeOanda.reject_next_order`, :meth:`cancel_next_order`,
:meth:`drop_next_order` (close the connection before or after executing),
:meth:`delay_next_order_response`, :meth:`execute_next_order_late` (the order runs only
after the client has given up on the answer), :meth:`fail_next` (any status on any
path), :meth:`outage` (503 on matching paths for a span of seconds),
:meth:`silence_streams`, :meth:`cut_streams`, :meth:`refuse_streams` (503, or 401 as
for a revoked token) and :meth:`open_outside` (a position opened by hand, not through
forexd). The market moves only when a test pushes a price or a heartbeat, so results
are deterministic. Which source each behaviour follows is listed in docs/oanda.md.

(About 590 lines, over the house ~400: the HTTP routing, the stream pump and the fault
hooks share the server's lock and queues; the account, orders, closes and candles are
already in the ``fake_oanda_*`` modules.)
"""

from __future__ import annotations

import contextlib
import json
import queue
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from tests.fake_oanda_book import SPECS, Book, render
from tests.fake_oanda_candles import candles
from tests.fake_oanda_close import close_position, close_trade
from tests.fake_oanda_orders import create_order, execute
from tests.fake_oanda_protect import trigger

TOKEN = "fake-oanda-token-3f9c2a"
ACCOUNT_ID = "101-004-1234567-001"
START_NS = 1_704_186_000 * 1_000_000_000  # 2024-01-02T09:00:00Z
UNAUTHORIZED = {"errorMessage": "Insufficient authorization to perform request."}
_CUT = object()
_STOP = object()


@dataclass
class _Fault:
    status: int
    path_contains: str
    remaining: int
    body: dict[str, Any]
    retry_after: float | None


@dataclass
class _Stream:
    instruments: set[str]
    fmt: str
    queue: queue.Queue[Any] = field(default_factory=queue.Queue)


class FakeOanda:
    """The server and its knobs; use as a context manager."""

    def __init__(
        self,
        *,
        token: str = TOKEN,
        account_id: str = ACCOUNT_ID,
        heartbeat_s: float = 5.0,
        hedging: bool = False,
        commission_per_million: str = "0",
        lookup_lag_s: float = 0.0,
        max_requests_per_s: float | None = None,
        split_lines: bool = True,
    ) -> None:
        self.token = token
        self.account_id = account_id
        self.heartbeat_s = heartbeat_s
        self.lookup_lag_s = lookup_lag_s
        self.max_requests_per_s = max_requests_per_s
        self.split_lines = split_lines
        self.book = Book(
            account_id,
            hedging=hedging,
            commission_per_million=Decimal(commission_per_million),
            now_ns=START_NS,
        )
        self.lock = threading.RLock()
        self._changed = threading.Condition(self.lock)
        self._stop = threading.Event()
        self._release = threading.Event()
        self._streams: list[_Stream] = []
        self._faults: list[_Fault] = []
        self._order_faults: deque[tuple[str, float]] = deque()
        self._recent: deque[float] = deque()
        self._order_seen_at: dict[str, float] = {}
        self._request_id = 0
        self.requests: list[tuple[str, str]] = []
        self.served: list[tuple[str, str]] = []
        self.order_bodies: list[dict[str, Any]] = []
        self.stream_connections = 0
        self.auth_headers: list[str] = []
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,))

    @property
    def url(self) -> str:
        """Base URL (REST and streams share it)."""
        return f"http://127.0.0.1:{self._server.server_port}"

    def __enter__(self) -> FakeOanda:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        with self.lock:
            for stream in self._streams:
                stream.queue.put(_STOP)
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    # -- market -----------------------------------------------------------------------

    def push_price(
        self, instrument: str, ts: int, bid: str, ask: str, *, tradeable: bool = True
    ) -> None:
        """A new price: recorded for candles and fills, sent to every subscribed stream."""
        with self.lock:
            tick = self.book.push(instrument, ts, Decimal(bid), Decimal(ask))
            self._broadcast(self.book.price_message(instrument, tick, tradeable), instrument)
            trigger(self.book, instrument)  # dependent orders (stops) react to the price

    def push_heartbeat(self, ts: int | None = None) -> None:
        """Advance the server clock to ``ts`` and send a heartbeat to every stream."""
        with self.lock:
            if ts is not None:
                self.book.now_ns = max(self.book.now_ns, ts)
            self._broadcast(self._heartbeat(), None)

    def _heartbeat(self) -> dict[str, Any]:
        return {"type": "HEARTBEAT", "time": self.book.now_ns}

    def _broadcast(self, message: dict[str, Any], instrument: str | None) -> None:
        for stream in self._streams:
            if instrument is None or instrument in stream.instruments:
                stream.queue.put(message)

    # -- faults -----------------------------------------------------------------------

    def reject_next_order(self, reason: str) -> None:
        """The next order is rejected (400, ``orderRejectTransaction``) with ``reason``."""
        with self.lock:
            self.book.next_reject = reason

    def cancel_next_order(self, reason: str) -> None:
        """The next order is created then cancelled (201, ``orderCancelTransaction``)."""
        with self.lock:
            self.book.next_cancel = reason

    def drop_next_order(self, *, before_execute: bool = False) -> None:
        """Close the connection of the next order POST, after (default) or before executing."""
        with self.lock:
            self._order_faults.append(("drop_before" if before_execute else "drop_after", 0.0))

    def delay_next_order_response(self, seconds: float) -> None:
        """Execute the next order, then wait ``seconds`` before answering."""
        with self.lock:
            self._order_faults.append(("delay", seconds))

    def fail_next(
        self,
        status: int,
        *,
        path_contains: str = "",
        count: int = 1,
        body: dict[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        """Answer the next ``count`` requests whose path contains ``path_contains``."""
        with self.lock:
            default = {"errorMessage": "Too many requests" if status == 429 else "fault"}
            self._faults.append(_Fault(status, path_contains, count, body or default, retry_after))

    def silence_streams(self, silent: bool = True) -> None:
        """Streams send nothing (not even heartbeats) while silent; new ones too."""
        with self.lock:
            self._silent = silent

    _silent = False
    _refusing = 0

    def refuse_streams(self, refuse: bool = True, *, status: int = 503) -> None:
        """New stream connections get ``status`` while refusing (open ones are untouched).

        ``status=401`` answers as for a revoked token (``errorMessage`` only, §1).
        """
        with self.lock:
            self._refusing = status if refuse else 0

    def execute_next_order_late(self, after_s: float | None = None) -> None:
        """Hold the next order POST, *then* execute and answer it.

        It is held ``after_s`` seconds, or until :meth:`release_held_orders` when
        ``after_s`` is ``None`` (a test decides when OANDA gets to it). Until then OANDA
        has no record of it (no transaction, ``@clientID`` answers 404); a client whose
        read timeout is shorter loses the answer to an order that fills.
        """
        with self.lock:
            self._order_faults.append(("late", -1.0 if after_s is None else after_s))

    def release_held_orders(self) -> None:
        """Let orders held by ``execute_next_order_late()`` (no delay given) execute."""
        self._release.set()

    def outage(self, seconds: float | None, *path_parts: str, status: int = 503) -> None:
        """Answer ``status`` to every request whose path contains one of ``path_parts``
        (any path when none is given) for the next ``seconds`` (wall clock), or until
        :meth:`end_outage` when ``seconds`` is ``None``."""
        until = float("inf") if seconds is None else time.monotonic() + seconds
        with self.lock:
            self._outage = (until, path_parts or ("",), status)

    def end_outage(self) -> None:
        """OANDA answers again."""
        with self.lock:
            self._outage = None

    _outage: tuple[float, tuple[str, ...], int] | None = None

    def open_outside(self, instrument: str, units: int) -> dict[str, Any]:
        """Fill a market order placed outside forexd (by hand: no client extensions)."""
        with self.lock:
            created = execute(
                self.book,
                instrument,
                Decimal(units),
                create_fields={"reason": "CLIENT_ORDER", "timeInForce": "FOK"},
                fill_reason="MARKET_ORDER",
                targets=None,
            )
            assert "fill" in created, created
            return created["fill"]

    def net_units(self, instrument: str) -> int:
        """The account's net position in ``instrument`` (what ``/openPositions`` sums)."""
        with self.lock:
            return int(
                sum(t.current_units for t in self.book.open_trades() if t.instrument == instrument)
            )

    def fills_for(self, wire_id_part: str) -> list[dict[str, Any]]:
        """``ORDER_FILL`` transactions whose client order id contains ``wire_id_part``."""
        with self.lock:
            return [
                t
                for t in self.book.transactions
                if t["type"] == "ORDER_FILL" and wire_id_part in t.get("clientOrderID", "")
            ]

    def cut_streams(self) -> None:
        """Reset every open stream connection mid-body."""
        with self.lock:
            for stream in self._streams:
                stream.queue.put(_CUT)

    # -- observation ------------------------------------------------------------------

    @property
    def order_posts(self) -> int:
        """``POST /orders`` requests that reached the server."""
        with self.lock:
            return sum(1 for m, p in self.requests if m == "POST" and p.endswith("/orders"))

    def wait_for_served(self, path_suffix: str, n: int, timeout: float = 5.0) -> None:
        """Block until ``n`` requests for paths ending ``path_suffix`` have been answered."""

        def done() -> bool:
            return sum(1 for _, p in self.served if p.endswith(path_suffix)) >= n

        with self._changed:
            if not self._changed.wait_for(done, timeout):
                raise TimeoutError(f"fewer than {n} answered requests for *{path_suffix}")

    def wait_for_stream_connections(self, n: int, timeout: float = 5.0) -> None:
        """Block until ``n`` stream connections have been made in total."""
        with self._changed:
            if not self._changed.wait_for(lambda: self.stream_connections >= n, timeout):
                raise TimeoutError(f"{self.stream_connections} stream connections, not {n}")

    # -- request handling ---------------------------------------------------------------

    def handle(self, h: _Handler, method: str) -> None:
        """Route one request (runs on a server thread)."""
        url = urlsplit(h.path)
        path = url.path
        query = dict(parse_qsl(url.query))
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        fmt = h.headers.get("Accept-Datetime-Format", "RFC3339")
        with self.lock:
            self.requests.append((method, path))
            self.auth_headers.append(h.headers.get("Authorization", ""))
            limited = self._rate_limited()
            fault = self._take_fault(path)
            down = self._outage
            if down is not None and time.monotonic() >= down[0]:
                down = self._outage = None
        if down is not None and any(part in path for part in down[1]):
            return self._send(h, down[2], {"errorMessage": "fake: service unavailable"}, fmt)
        if limited:
            return self._send(h, 429, {"errorMessage": "Too many requests"}, fmt)
        if fault is not None:
            extra = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
            return self._send(h, fault.status, fault.body, fmt, extra)
        if h.headers.get("Authorization") != f"Bearer {self.token}":
            return self._send(h, 401, UNAUTHORIZED, fmt)
        if fmt not in ("RFC3339", "UNIX"):
            return self._send(h, 400, {"errorMessage": "Invalid Accept-Datetime-Format"}, fmt)
        for verb, pattern, action in self._routes():
            match = re.fullmatch(pattern, path)
            if match is None:
                continue
            if verb != method:
                return self._send(h, 405, {"errorMessage": "Method not allowed"}, fmt)
            args = [unquote(g) for g in match.groups()]
            if path.startswith("/v3/accounts/") and args[0] != self.account_id:
                return self._send(
                    h, 404, {"errorMessage": "The Account specified does not exist"}, fmt
                )
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                return self._send(h, 400, {"errorMessage": "Invalid JSON body"}, fmt)
            action(h, args, query, body, fmt)
            with self._changed:
                self.served.append((method, path))
                self._changed.notify_all()
            return None
        return self._send(h, 404, {"errorMessage": f"No such endpoint {path}"}, fmt)

    def _routes(self) -> list[tuple[str, str, Callable[..., None]]]:
        acct = r"/v3/accounts/([^/]+)"
        return [
            ("GET", acct + r"/summary", self._summary),
            ("GET", acct + r"/openPositions", self._positions),
            ("GET", acct + r"/openTrades", self._trades),
            ("GET", acct + r"/pricing/stream", self._stream),
            ("POST", acct + r"/orders", self._order),
            ("GET", acct + r"/orders/([^/]+)", self._get_order),
            ("GET", acct + r"/transactions/sinceid", self._since),
            ("GET", acct + r"/transactions/(\d+)", self._transaction),
            ("PUT", acct + r"/trades/([^/]+)/close", self._close_trade),
            ("PUT", acct + r"/positions/([^/]+)/close", self._close_position),
            ("GET", acct + r"/instruments/([^/]+)/candles", self._candles),
            ("GET", r"/v3/instruments/([^/]+)/candles", self._candles),
        ]

    def _rate_limited(self) -> bool:
        if self.max_requests_per_s is None:
            return False
        now = time.monotonic()
        while self._recent and now - self._recent[0] >= 1.0:
            self._recent.popleft()
        if len(self._recent) >= self.max_requests_per_s:
            return True
        self._recent.append(now)
        return False

    def _take_fault(self, path: str) -> _Fault | None:
        for fault in self._faults:
            if fault.path_contains in path and fault.remaining > 0:
                fault.remaining -= 1
                return fault
        return None

    def _send(
        self,
        h: _Handler,
        status: int,
        body: dict[str, Any],
        fmt: str,
        extra: dict[str, str] | None = None,
    ) -> None:
        data = json.dumps(render(body, fmt)).encode()
        with self.lock:
            self._request_id += 1
            request_id = self._request_id
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.send_header("RequestID", str(request_id))
        for key, value in (extra or {}).items():
            h.send_header(key, value)
        h.end_headers()
        h.wfile.write(data)

    # -- endpoints ----------------------------------------------------------------------

    def _summary(self, h: _Handler, args: list[str], q: dict[str, str], b: Any, fmt: str) -> None:
        with self.lock:
            body = {"account": self.book.summary(), "lastTransactionID": self.book.last_id}
        self._send(h, 200, body, fmt)

    def _positions(self, h: _Handler, args: list[str], q: dict[str, str], b: Any, fmt: str) -> None:
        with self.lock:
            body = {"positions": self.book.positions(), "lastTransactionID": self.book.last_id}
        self._send(h, 200, body, fmt)

    def _trades(self, h: _Handler, args: list[str], q: dict[str, str], b: Any, fmt: str) -> None:
        with self.lock:
            trades = [self.book.trade_view(t) for t in reversed(self.book.open_trades())]
            body = {"trades": trades, "lastTransactionID": self.book.last_id}
        self._send(h, 200, body, fmt)

    def _order(self, h: _Handler, args: list[str], q: dict[str, str], body: Any, fmt: str) -> None:
        with self.lock:
            fault, arg = self._order_faults.popleft() if self._order_faults else ("", 0.0)
            if fault == "drop_before":
                return _abort(h)
        if fault == "late":  # nothing is recorded while the order is held
            if arg < 0:
                while not (self._release.is_set() or self._stop.is_set()):
                    self._release.wait(0.05)
            else:
                self._stop.wait(arg)
        with self.lock:
            self.order_bodies.append(body)
            status, answer = create_order(self.book, body)
            created = answer.get("orderCreateTransaction")
            if created is not None:
                self._order_seen_at[created["id"]] = time.monotonic()
        if fault == "drop_after":
            return _abort(h)
        if fault == "delay":
            self._stop.wait(arg)
        extra = {}
        if status == 201 and created is not None:  # §1: a 201 adds Location (form guessed)
            extra["Location"] = f"{self.url}/v3/accounts/{self.account_id}/orders/{created['id']}"
        with contextlib.suppress(OSError):  # a late answer may find the client gone
            self._send(h, status, answer, fmt, extra)

    def _get_order(self, h: _Handler, args: list[str], q: dict[str, str], b: Any, fmt: str) -> None:
        with self.lock:
            order = self.book.order(args[1])
            seen = self._order_seen_at.get(order["id"], 0.0) if order else 0.0
            if order is not None and time.monotonic() - seen < self.lookup_lag_s:
                order = None  # §7: a fresh order can answer 404 for a moment
            last = self.book.last_id
        if order is None:
            body = {
                "errorCode": "NO_SUCH_ORDER",
                "errorMessage": "The order ID specified does not exist",
                "lastTransactionID": last,
            }
            return self._send(h, 404, body, fmt)
        self._send(h, 200, {"order": order, "lastTransactionID": last}, fmt)

    def _since(self, h: _Handler, args: list[str], q: dict[str, str], b: Any, fmt: str) -> None:
        if not q.get("id", "").isdigit():
            return self._send(h, 400, {"errorMessage": "Invalid value specified for 'id'"}, fmt)
        with self.lock:
            body = {
                "transactions": self.book.since(int(q["id"])),
                "lastTransactionID": self.book.last_id,
            }
        self._send(h, 200, body, fmt)

    def _transaction(
        self, h: _Handler, args: list[str], q: dict[str, str], b: Any, fmt: str
    ) -> None:
        with self.lock:
            txn = self.book.transaction(args[1])
            last = self.book.last_id
        if txn is None:
            body = {
                "errorCode": "NO_SUCH_TRANSACTION",
                "errorMessage": "The transaction ID specified does not exist",
            }
            return self._send(h, 404, body, fmt)
        self._send(h, 200, {"transaction": txn, "lastTransactionID": last}, fmt)

    def _close_trade(
        self, h: _Handler, args: list[str], q: dict[str, str], body: Any, fmt: str
    ) -> None:
        with self.lock:
            status, answer = close_trade(self.book, args[1], body)
        self._send(h, status, answer, fmt)

    def _close_position(
        self, h: _Handler, args: list[str], q: dict[str, str], body: Any, fmt: str
    ) -> None:
        with self.lock:
            status, answer = close_position(self.book, args[1], body)
        self._send(h, status, answer, fmt)

    def _candles(self, h: _Handler, args: list[str], q: dict[str, str], b: Any, fmt: str) -> None:
        with self.lock:
            status, body = candles(
                args[-1], q, list(self.book.ticks.get(args[-1], [])), self.book.now_ns
            )
        self._send(h, status, body, fmt)

    def _stream(self, h: _Handler, args: list[str], q: dict[str, str], b: Any, fmt: str) -> None:
        names = [n for n in q.get("instruments", "").split(",") if n]
        if not names or any(n not in SPECS for n in names):
            return self._send(
                h, 400, {"errorMessage": "Invalid value specified for 'instruments'"}, fmt
            )
        if self._refusing == 401:
            return self._send(h, 401, UNAUTHORIZED, fmt)
        if self._refusing:
            return self._send(h, self._refusing, {"errorMessage": "fake: streams refused"}, fmt)
        stream = _Stream(set(names), fmt)
        with self._changed:
            pending: list[Any] = []
            if q.get("snapshot", "true") != "false":
                for name in names:
                    tick = self.book.tick(name)
                    if tick is not None:
                        pending.append(self.book.price_message(name, tick))
            pending.append(self._heartbeat())  # fake's choice: the first line comes at once
            self._streams.append(stream)
            self.stream_connections += 1
            self._changed.notify_all()
        h.send_response(200)
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Transfer-Encoding", "chunked")
        h.send_header("Connection", "close")
        h.end_headers()
        h.close_connection = True
        try:
            self._pump(h, stream, pending)
        except OSError:
            pass  # the client went away
        finally:
            with self.lock:
                self._streams.remove(stream)

    def _pump(self, h: _Handler, stream: _Stream, pending: list[Any]) -> None:
        sent = 0
        while not self._stop.is_set():
            if pending and not self._silent:
                data = b"".join(json.dumps(render(m, stream.fmt)).encode() + b"\n" for m in pending)
                sent += 1
                if self.split_lines and sent % 3 == 0 and len(data) > 2:
                    # §4: a line may span chunks; send this one in two.
                    _chunk(h, data[: len(data) // 2])
                    _chunk(h, data[len(data) // 2 :])
                else:
                    _chunk(h, data)
            try:
                item = stream.queue.get(timeout=self.heartbeat_s)
            except queue.Empty:
                with self.lock:
                    item = self._heartbeat()
            if item is _CUT:
                return _abort(h)
            if item is _STOP:
                h.wfile.write(b"0\r\n\r\n")
                return
            pending = [item]
            while True:
                try:
                    more = stream.queue.get_nowait()
                except queue.Empty:
                    break
                if more is _CUT or more is _STOP:
                    stream.queue.put(more)
                    break
                pending.append(more)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake: FakeOanda

    def do_GET(self) -> None:
        self.fake.handle(self, "GET")

    def do_POST(self) -> None:
        self.fake.handle(self, "POST")

    def do_PUT(self) -> None:
        self.fake.handle(self, "PUT")

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read ``FakeOanda.requests`` instead."""


def _chunk(h: BaseHTTPRequestHandler, data: bytes) -> None:
    h.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
    h.wfile.flush()


def _abort(h: BaseHTTPRequestHandler) -> None:
    """Drop the connection without (the rest of) a response."""
    h.close_connection = True
    with contextlib.suppress(OSError):
        h.connection.shutdown(socket.SHUT_RDWR)
