"""The control channel: newline-delimited JSON over a Unix socket (or loopback TCP).

Request:  ``{"v": 1, "id": 7, "cmd": "status", "args": {}}``
Response: ``{"v": 1, "id": 7, "ok": true, "result": {...}}`` or
          ``{"v": 1, "id": 7, "ok": false, "error": {"code": "...", "message": "..."}}``

A connection may send several requests. Garbage, oversized, too deeply nested or slow
requests get an error response (or the connection is closed) and never reach a handler;
the daemon carries on. An oversized line is answered ``too_large`` and skipped, so the
next line on the connection is answered in turn; one that does not end within 1 MiB
closes the connection. Limits hold *before* parsing: a line is at most 64 KiB and its
nesting depth is counted by a byte scan first, so ``json.loads`` never sees input that
could exhaust the recursion limit (a 20,000-deep line once killed the daemon).

The Unix socket is created with mode 0600 (umask set before bind, so there is no window
where it is wider) and, on Linux, the peer's uid is checked with SO_PEERCRED. Over TCP the
first line of a connection is the token alone (at most 256 bytes, compared in constant
time); nothing else is read, let alone parsed, until it matches, and a wrong token closes
the connection, so guesses cost a connection each.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import struct
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import ByteStream, Listener, TaskStatus
from anyio.streams.buffered import BufferedByteReceiveStream

# The client lives in ctlclient (light imports for `forexd ctl`); re-exported here.
from forexd.daemon.ctlclient import CLIENT_TIMEOUT_S, PROTOCOL_VERSION, request
from forexd.daemon.logsetup import get_logger
from forexd.daemon.paths import DaemonPaths
from forexd.daemon.tokenfile import tokens_match, write_token

__all__ = ["CLIENT_TIMEOUT_S", "MAX_REQUEST_BYTES", "PROTOCOL_VERSION", "ControlServer", "request"]

MAX_REQUEST_BYTES = 64 * 1024
MAX_SKIP_BYTES = 1024 * 1024  # an oversized line up to this is skipped; longer closes
MAX_DEPTH = 32  # nesting of arrays/objects; real requests use 3
MAX_TOKEN_LINE_BYTES = 256
REQUEST_TIMEOUT_S = 5.0  # a client has this long to send a whole line
_LINE_NOT_READ = (  # a bounded line read that ends the connection: gone, too long, too slow
    anyio.EndOfStream,
    anyio.IncompleteRead,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.DelimiterNotFound,
    TimeoutError,
)

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


class RequestError(Exception):
    """A request the daemon will not carry out; ``code`` is machine-readable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _error(req_id: Any, code: str, message: str) -> dict[str, Any]:
    return {
        "v": PROTOCOL_VERSION,
        "id": req_id,
        "ok": False,
        "error": {"code": code, "message": message},
    }


class ControlServer:
    """Serves control requests with handlers registered by the supervisor."""

    def __init__(
        self,
        paths: DaemonPaths,
        transport: str = "auto",
        tcp_host: str = "127.0.0.1",
        tcp_port: int = 0,
    ) -> None:
        self.paths = paths
        self.handlers: dict[str, Handler] = {}
        self.transport = transport
        if transport == "auto":
            self.transport = (
                "unix" if hasattr(socket, "AF_UNIX") and sys.platform != "win32" else "tcp"
            )
        self.tcp_host = tcp_host
        self.tcp_port = tcp_port
        self.requests = 0
        self.bad_requests = 0
        self._token = ""
        self._log = get_logger("control")

    def register(self, cmd: str, handler: Handler) -> None:
        """Route ``cmd`` to ``handler(args) -> result``."""
        self.handlers[cmd] = handler

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Listen until cancelled; remove the socket/endpoint files on the way out."""
        listener = await self._listen()
        try:
            task_status.started()
            async with listener:
                await listener.serve(self._handle_connection)
        finally:
            with anyio.CancelScope(shield=True):  # file system calls: off the loop
                await anyio.to_thread.run_sync(self._remove_files)

    def _remove_files(self) -> None:
        for path in (self.paths.socket, self.paths.tcp_endpoint, self.paths.token):
            path.unlink(missing_ok=True)

    def _prepare_dir(self) -> None:
        self.paths.runtime_dir.mkdir(parents=True, exist_ok=True)
        if self.transport == "unix":
            self.paths.socket.unlink(missing_ok=True)  # we hold the pid lock: it is stale

    async def _listen(self) -> Listener[Any]:
        await anyio.to_thread.run_sync(self._prepare_dir)
        if self.transport == "unix":
            old = os.umask(0o177)
            try:
                unix_listener = await anyio.create_unix_listener(self.paths.socket)
            finally:
                os.umask(old)
            await anyio.to_thread.run_sync(self.paths.socket.chmod, 0o600)
            return unix_listener
        if self.tcp_host not in ("127.0.0.1", "::1", "localhost"):
            self._log.warning("control_listening_non_loopback", host=self.tcp_host)
        listener = await anyio.create_tcp_listener(
            local_host=self.tcp_host, local_port=self.tcp_port
        )
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        self._token = await anyio.to_thread.run_sync(write_token, self.paths.token)
        await anyio.to_thread.run_sync(
            _write_private, self.paths.tcp_endpoint, f"{self.tcp_host} {port}\n"
        )
        return listener

    def _peer_allowed(self, stream: ByteStream) -> bool:
        if self.transport != "unix" or not hasattr(socket, "SO_PEERCRED"):
            return True
        try:
            raw = stream.extra(anyio.abc.SocketAttribute.raw_socket)
            creds = raw.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            _pid, uid, _gid = struct.unpack("3i", creds)
        except (OSError, anyio.TypedAttributeLookupError):
            return False
        return uid in (os.getuid(), 0)

    async def _handle_connection(self, stream: ByteStream) -> None:
        async with stream:
            try:
                await self._serve_connection(stream)
            except Exception:  # one connection's bug must not take the listener down
                self._log.exception("control_connection_failed")

    async def _serve_connection(self, stream: ByteStream) -> None:
        if not self._peer_allowed(stream):
            await self._send(stream, _error(None, "forbidden", "peer uid not allowed"))
            return
        buffered = BufferedByteReceiveStream(stream)
        if self.transport == "tcp" and not await self._authenticated(stream, buffered):
            return
        while True:
            try:
                with anyio.fail_after(REQUEST_TIMEOUT_S):
                    line = await buffered.receive_until(b"\n", MAX_REQUEST_BYTES)
            except (
                anyio.EndOfStream,
                anyio.IncompleteRead,
                anyio.BrokenResourceError,
                anyio.ClosedResourceError,
            ):
                return
            except anyio.DelimiterNotFound:
                self.bad_requests += 1
                await self._send(
                    stream,
                    _error(None, "too_large", f"request exceeds {MAX_REQUEST_BYTES} bytes"),
                )
                if not await self._skip_line(buffered):
                    return
                continue
            except TimeoutError:
                self.bad_requests += 1
                await self._send(
                    stream,
                    _error(None, "timeout", f"no complete request within {REQUEST_TIMEOUT_S} s"),
                )
                return
            await self._send(stream, await self._dispatch(line))

    async def _skip_line(self, buffered: BufferedByteReceiveStream) -> bool:
        """Discard the rest of an oversized line, so the next line is answered in turn
        (closing at once would reset the connection under the client's unread answer).

        Returns:
            False when the line does not end within :data:`MAX_SKIP_BYTES` and the request
            timeout, or the peer went away: the connection is then closed.
        """
        try:
            with anyio.fail_after(REQUEST_TIMEOUT_S):
                await buffered.receive_until(b"\n", MAX_SKIP_BYTES)
        except _LINE_NOT_READ:
            return False
        return True

    async def _authenticated(self, stream: ByteStream, buffered: BufferedByteReceiveStream) -> bool:
        """Read the token line; on anything but the right token answer and close."""
        try:
            with anyio.fail_after(REQUEST_TIMEOUT_S):
                line = await buffered.receive_until(b"\n", MAX_TOKEN_LINE_BYTES)
        except _LINE_NOT_READ:
            line = b""
        if tokens_match(self._token, line.strip().decode("utf-8", "replace")):
            return True
        self.bad_requests += 1
        message = "the first line must be the token from the token file; closing"
        await self._send(stream, _error(None, "forbidden", message))
        return False

    async def _send(self, stream: ByteStream, response: dict[str, Any]) -> None:
        try:
            data = json.dumps(response, default=str).encode()
        except (TypeError, ValueError) as exc:  # e.g. a circular result: a handler bug
            self._log.error("control_unserialisable_result", error=str(exc))
            data = json.dumps(
                _error(response.get("id"), "internal", f"result not serialisable: {exc}"),
                default=str,
            ).encode()
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            await stream.send(data + b"\n")

    async def _dispatch(self, line: bytes) -> dict[str, Any]:
        self.requests += 1
        if nesting_depth(line) > MAX_DEPTH:
            self.bad_requests += 1
            return _error(None, "too_deep", f"request nests deeper than {MAX_DEPTH} levels")
        try:
            req = json.loads(line)
        except (ValueError, UnicodeDecodeError, RecursionError):
            self.bad_requests += 1
            return _error(None, "bad_json", "request is not a JSON object on one line")
        if not isinstance(req, dict):
            self.bad_requests += 1
            return _error(None, "bad_request", "request must be a JSON object")
        req_id = req.get("id")
        if req.get("v") != PROTOCOL_VERSION:
            self.bad_requests += 1
            return _error(
                req_id,
                "bad_version",
                f"protocol version {req.get('v')!r} unsupported; use {PROTOCOL_VERSION}",
            )
        cmd, args = req.get("cmd"), req.get("args", {})
        handler = self.handlers.get(cmd) if isinstance(cmd, str) else None
        if handler is None:
            self.bad_requests += 1
            known = ", ".join(sorted(self.handlers))
            return _error(req_id, "unknown_command", f"unknown command {cmd!r}; known: {known}")
        if not isinstance(args, dict):
            self.bad_requests += 1
            return _error(req_id, "bad_request", "args must be a JSON object")
        self._log.debug("control_request", cmd=cmd)
        try:
            result = await handler(args)
        except RequestError as exc:
            self._log.debug("control_request_refused", cmd=cmd, code=exc.code)
            return _error(req_id, exc.code, exc.message)
        except Exception as exc:  # a handler bug must not take the daemon down
            self._log.exception("control_handler_failed", cmd=cmd)
            return _error(req_id, "internal", f"{type(exc).__name__}: {exc}")
        return {"v": PROTOCOL_VERSION, "id": req_id, "ok": True, "result": result}


_SPECIAL = re.compile(rb'["\\\[\]{}]')


def nesting_depth(line: bytes) -> int:
    """How deeply arrays/objects nest in ``line``, outside strings, without parsing it.

    Stops counting past :data:`MAX_DEPTH` (the answer is then ``MAX_DEPTH + 1``), so the
    cost is one regex scan plus a step per bracket, quote or backslash.
    """
    depth = peak = 0
    in_string = False
    escaped_at = -1
    for match in _SPECIAL.finditer(line):
        pos = match.start()
        if pos == escaped_at:
            continue
        char = line[pos]
        if in_string:
            if char == 0x5C:  # backslash: the next byte is escaped
                escaped_at = pos + 1
            elif char == 0x22:
                in_string = False
        elif char == 0x22:
            in_string = True
        elif char in (0x5B, 0x7B):
            depth += 1
            if depth > peak:
                peak = depth
                if peak > MAX_DEPTH:
                    return peak
        elif char in (0x5D, 0x7D):
            depth -= 1
    return peak


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
