"""The OANDA v20 REST transport shared by the OANDA broker and the OANDA feed.

One ``httpx.AsyncClient`` serves both hosts (REST and stream) so the process keeps one
keep-alive session, one request-rate limiter and one place where the token lives. Options
weighed: OANDA's ``v20`` package is synchronous and would need a thread per call; hand
written httpx calls are a few lines each and run on the daemon's event loop under anyio.

Retry policy, the part that matters for money: a GET is idempotent and is retried on
connection errors, timeouts, 429 and 5xx with exponential backoff. A POST is sent once:
:meth:`OandaApi.post` tells the caller whether the request provably never left
(:class:`RequestNotSentError`) or may have reached OANDA without an answer coming back
(:class:`ResponseLostError`); the broker then resolves the order from OANDA's
transaction record and never sends it again (:mod:`forexd.brokers.oanda_resolve`).

Datetimes are requested as ``UNIX`` by default: decimal seconds parse to integer
nanoseconds exactly, with no time-zone parsing. ``RFC3339`` works too; the parsers in
:mod:`forexd.brokers.oanda_wire` accept both, whichever the header asked for.

Why it is over 400 lines: the transport, its retry/backoff policy for GET vs POST, the
rate limiter and the streaming reader share one client and one error mapping; splitting
them would spread the token and the retry rules over several modules.
"""

from __future__ import annotations

import random
import re
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import anyio
import httpx
import structlog
from pydantic import SecretStr

from forexd.brokers.oanda_wire import (
    DatetimeFormat,
    OandaUnreachableError,
    RequestNotSentError,
    ResponseLostError,
    api_error,
    malformed,
    mask_account_id,
)
from forexd.errors import ConfigError

REST_HOSTS = {
    "practice": "https://api-fxpractice.oanda.com",
    "live": "https://api-fxtrade.oanda.com",
}
STREAM_HOSTS = {
    "practice": "https://stream-fxpractice.oanda.com",
    "live": "https://stream-fxtrade.oanda.com",
}
API_PREFIX = "/v3"

REQUEST_TIMEOUT_S = 10.0  # every REST request; a guess that covers OANDA's usual < 1 s
STREAM_STALL_TIMEOUT_S = 10.0  # heartbeats come every 5 s; 10 s of silence = dead stream
MAX_REQUESTS_PER_S = 100.0  # best-practices page: <= 100 requests/s on one connection
REQUEST_BURST = 10  # tokens the limiter may hand out at once (guessed)
STREAM_CONNECT_INTERVAL_S = 0.5  # documented limit: 2 new connections/s per IP
BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 30.0
GET_ATTEMPTS = 5
ERROR_TEXT_MAX_CHARS = 300  # a non-JSON error body is quoted up to this length

_ACCOUNT_ID = re.compile(r"\d+(-\d+){3}")
_log = structlog.get_logger().bind(component="oanda")


# -- pacing ---------------------------------------------------------------------------------


class Backoff:
    """Exponential backoff with up to 25 % added jitter: initial, 2x, 4x ... capped."""

    def __init__(self, initial_s: float = BACKOFF_INITIAL_S, max_s: float = BACKOFF_MAX_S) -> None:
        self.initial_s = initial_s
        self.max_s = max_s
        self._failures = 0

    def next_delay(self) -> float:
        """The next wait in seconds; each call doubles the base delay."""
        base = min(self.max_s, self.initial_s * 2.0**self._failures)
        self._failures += 1
        # Jitter only adds: the base is what keeps reconnects under 2 per second.
        return base * (1.0 + 0.25 * random.random())

    def reset(self) -> None:
        """Start again from the initial delay (after a healthy period)."""
        self._failures = 0


class RateLimiter:
    """A token bucket: at most ``rate_per_s`` acquisitions a second, ``burst`` at once."""

    def __init__(self, rate_per_s: float, burst: int = REQUEST_BURST) -> None:
        if rate_per_s <= 0:
            raise ValueError(f"rate_per_s must be > 0, got {rate_per_s}")
        self.rate_per_s = rate_per_s
        self.burst = max(1, burst)
        self._tokens = float(self.burst)
        self._stamp: float | None = None
        self._lock = anyio.Lock()

    async def acquire(self) -> float:
        """Take one token, waiting for it if needed; return the seconds waited."""
        async with self._lock:  # FIFO among waiters: the one holding the lock sleeps
            now = anyio.current_time()
            if self._stamp is not None:
                self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate_per_s)
            self._stamp = now
            waited = 0.0
            if self._tokens < 1.0:
                waited = (1.0 - self._tokens) / self.rate_per_s
                await anyio.sleep(waited)
                self._tokens = 1.0
                self._stamp = anyio.current_time()
            self._tokens -= 1.0
            return waited


# -- the client -----------------------------------------------------------------------------


class OandaSettings(Protocol):
    """What :meth:`OandaApi.from_config` reads: ``forexd.config.OandaConfig`` has it.

    A protocol, so this adapter does not import the configuration layer above it.
    """

    @property
    def account_id(self) -> str: ...
    @property
    def token(self) -> SecretStr: ...
    @property
    def environment(self) -> Literal["practice", "live"]: ...
    @property
    def api_url(self) -> str | None: ...
    @property
    def stream_url(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class ApiStats:
    """Counters of one :class:`OandaApi` (for ``ctl status``)."""

    requests: int
    retries: int
    rate_limited: int
    transport_errors: int
    stream_connects: int
    throttled_s: float


class OandaApi:
    """Authenticated, rate-limited access to one OANDA v20 account."""

    def __init__(
        self,
        account_id: str,
        token: SecretStr,
        *,
        rest_url: str,
        stream_url: str,
        datetime_format: DatetimeFormat = "UNIX",
        timeout_s: float = REQUEST_TIMEOUT_S,
        max_requests_per_s: float = MAX_REQUESTS_PER_S,
        get_attempts: int = GET_ATTEMPTS,
        backoff_initial_s: float = BACKOFF_INITIAL_S,
        backoff_max_s: float = BACKOFF_MAX_S,
        stream_connect_interval_s: float = STREAM_CONNECT_INTERVAL_S,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """Create the client (no request is made until one is needed).

        Args:
            account_id: ``{site}-{division}-{user}-{number}``, e.g. ``101-004-1435156-001``.
            token: the personal access token; only ever placed in the ``Authorization``
                header, never in a log line or an exception message.
            rest_url: scheme and host of the REST API (a trailing ``/v3`` is accepted).
            stream_url: scheme and host of the streaming API.
            datetime_format: the ``Accept-Datetime-Format`` to ask for.
            timeout_s: connect/read/write/pool timeout of each REST request.
            max_requests_per_s: client-side request rate cap.
            get_attempts: tries of an idempotent GET before giving up.
            backoff_initial_s: first retry delay (doubles, with jitter).
            backoff_max_s: retry delay cap.
            stream_connect_interval_s: minimum spacing of new stream connections.
            transport: an httpx transport (tests, proxies); default: a real one.

        Raises:
            ConfigError: the account id or the token is missing or malformed.
        """
        if not _ACCOUNT_ID.fullmatch(account_id):
            raise ConfigError(
                f"broker.oanda.account_id {account_id!r} is not an OANDA v20 account id; "
                "copy it from the OANDA hub, it looks like 101-004-1435156-001"
            )
        if not token.get_secret_value().strip():
            raise ConfigError(
                "broker.oanda.token is empty; set it (or FOREXD_BROKER__OANDA__TOKEN) to a "
                "personal access token of the configured environment"
            )
        self.account_id = account_id
        self.shown_account_id = mask_account_id(account_id)
        self.datetime_format: DatetimeFormat = datetime_format
        self.rest_url = _base(rest_url)
        self.stream_url = _base(stream_url)
        self.timeout_s = timeout_s
        self.get_attempts = max(1, get_attempts)
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self._limiter = RateLimiter(max_requests_per_s)
        self._stream_interval_s = stream_connect_interval_s
        self._last_stream_connect: float | None = None
        self._stream_lock = anyio.Lock()
        self._counts = {"requests": 0, "retries": 0, "rate_limited": 0, "transport_errors": 0}
        self._stream_connects = 0
        self._throttled_s = 0.0
        self._client = httpx.AsyncClient(
            headers={
                "Authorization": f"Bearer {token.get_secret_value()}",
                "Accept-Datetime-Format": datetime_format,
                "Accept": "application/json",
            },
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=4),
            transport=transport,
        )

    @classmethod
    def from_config(cls, cfg: OandaSettings, **options: Any) -> OandaApi:
        """Build from ``[broker.oanda]``: hosts follow ``environment`` unless overridden.

        Args:
            cfg: the validated config section.
            options: keyword arguments of the constructor (timeouts, rates ...).
        """
        return cls(
            cfg.account_id,
            cfg.token,
            rest_url=cfg.api_url or REST_HOSTS[cfg.environment],
            stream_url=cfg.stream_url or STREAM_HOSTS[cfg.environment],
            **options,
        )

    def __repr__(self) -> str:
        return f"OandaApi(account_id={self.shown_account_id!r}, rest_url={self.rest_url!r})"

    def shown(self, path: str) -> str:
        """``path`` with the account id masked: what error messages and logs quote."""
        return path.replace(self.account_id, self.shown_account_id)

    async def aclose(self) -> None:
        """Close the connections."""
        await self._client.aclose()

    def account_path(self, suffix: str) -> str:
        """``/v3/accounts/{id}`` + ``suffix``."""
        return f"{API_PREFIX}/accounts/{self.account_id}{suffix}"

    def backoff(self) -> Backoff:
        """A fresh backoff with this client's settings."""
        return Backoff(self.backoff_initial_s, self.backoff_max_s)

    def stats(self) -> ApiStats:
        """A snapshot of the counters."""
        return ApiStats(
            requests=self._counts["requests"],
            retries=self._counts["retries"],
            rate_limited=self._counts["rate_limited"],
            transport_errors=self._counts["transport_errors"],
            stream_connects=self._stream_connects,
            throttled_s=round(self._throttled_s, 3),
        )

    async def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        if self._client.is_closed:
            # Shutdown closed the client while a background task still asks: a clean
            # "not sent", which those tasks already handle, not httpx's RuntimeError.
            raise RequestNotSentError(f"{method} not sent: the OANDA client is closed")
        self._throttled_s += await self._limiter.acquire()
        self._counts["requests"] += 1
        return await self._client.request(method, url, **kwargs)

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        """GET a REST path and return its JSON object, retrying what is safe to retry.

        Raises:
            OandaApiError: a 4xx answer (404 included; callers check ``error_code``).
            OandaUnreachableError: still no answer after ``get_attempts`` tries.
        """
        backoff = self.backoff()
        problem = ""
        shown = self.shown(path)
        for attempt in range(1, self.get_attempts + 1):
            if attempt > 1:
                self._counts["retries"] += 1
            try:
                response = await self._send("GET", self.rest_url + path, params=params)
            except httpx.TransportError as exc:
                self._counts["transport_errors"] += 1
                problem = f"{type(exc).__name__}: {exc}"
                delay = backoff.next_delay()
            else:
                status = response.status_code
                if status != 429 and status < 500:
                    return _json_or_raise(response, f"GET {shown}")
                self._counts["rate_limited"] += status == 429
                problem = f"HTTP {status}"
                delay = _retry_after(response) or backoff.next_delay()
            if attempt < self.get_attempts:
                _log.warning("oanda_get_retry", path=shown, problem=problem, retry_in_s=delay)
                await anyio.sleep(min(delay, self.backoff_max_s))
        raise OandaUnreachableError(
            f"OANDA GET {shown} failed {self.get_attempts} times (last: {problem}); "
            "check the network and OANDA's status page"
        )

    async def post(self, path: str, body: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        """POST a JSON body once; return the status and the JSON body, whatever the status.

        Raises:
            RequestNotSentError: the request never left (resending is safe).
            ResponseLostError: it may have been executed; the outcome must be looked up.
        """
        url = self.rest_url + path
        shown = self.shown(path)
        try:
            response = await self._send("POST", url, json=body)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            self._counts["transport_errors"] += 1
            raise RequestNotSentError(
                f"POST {self.shown(path)} not sent: {type(exc).__name__}"
            ) from exc
        except httpx.TransportError as exc:
            self._counts["transport_errors"] += 1
            raise ResponseLostError(
                f"POST {shown}: no response ({type(exc).__name__}); it may have been executed"
            ) from exc
        self._counts["rate_limited"] += response.status_code == 429
        return response.status_code, _body(response)

    async def stream_lines(
        self, path: str, params: Mapping[str, str], *, stall_timeout_s: float
    ) -> AsyncGenerator[str, None]:
        """Yield the lines of a streaming endpoint (use with ``contextlib.aclosing``).

        Lines are reassembled across chunks by httpx; a chunk is never a message.

        Raises:
            OandaApiError: the stream was refused with a 4xx.
            OandaUnreachableError: connect failure, 429/5xx, or ``stall_timeout_s`` of silence.
        """
        await self._pace_stream_connect()
        shown = self.shown(path)
        timeout = httpx.Timeout(self.timeout_s, read=stall_timeout_s)
        try:
            async with self._client.stream(
                "GET", self.stream_url + path, params=params, timeout=timeout
            ) as response:
                if response.status_code != 200:
                    await response.aread()
                    if response.status_code == 429 or response.status_code >= 500:
                        raise OandaUnreachableError(f"stream {shown}: HTTP {response.status_code}")
                    _json_or_raise(response, f"stream {shown}")
                self._stream_connects += 1
                async for line in response.aiter_lines():
                    yield line
        except httpx.ReadTimeout as exc:
            raise OandaUnreachableError(
                f"stream {shown}: nothing received for {stall_timeout_s} s"
            ) from exc
        except httpx.TransportError as exc:
            raise OandaUnreachableError(f"stream {shown} broke: {type(exc).__name__}") from exc

    async def _pace_stream_connect(self) -> None:
        async with self._stream_lock:
            now = anyio.current_time()
            if self._last_stream_connect is not None:
                wait = self._last_stream_connect + self._stream_interval_s - now
                if wait > 0:
                    await anyio.sleep(wait)
            self._last_stream_connect = anyio.current_time()


def _base(url: str) -> str:
    url = url.rstrip("/")
    return url[: -len(API_PREFIX)] if url.endswith(API_PREFIX) else url


def _retry_after(response: httpx.Response) -> float | None:
    # UNVERIFIED whether OANDA sends Retry-After on 429; honour it when it is there.
    try:
        value = float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None
    return value if value >= 0 else None


def _parse(response: httpx.Response) -> dict[str, Any] | None:
    try:
        data = response.json()
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _body(response: httpx.Response) -> dict[str, Any]:
    """The JSON object of an answer; a non-JSON body (a proxy's page) becomes a message."""
    data = _parse(response)
    return data if data is not None else {"errorMessage": response.text[:ERROR_TEXT_MAX_CHARS]}


def _json_or_raise(response: httpx.Response, what: str) -> dict[str, Any]:
    if 200 <= response.status_code < 300:
        data = _parse(response)
        if data is None:
            raise malformed(f"{what} response", response.text[:ERROR_TEXT_MAX_CHARS])
        return data
    raise api_error(response.status_code, _body(response), what)
