"""The control protocol under garbage: every request gets one well-formed answer."""

from __future__ import annotations

import json
import socket
import tempfile
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forexd.daemon.control import (
    MAX_DEPTH,
    MAX_REQUEST_BYTES,
    ControlServer,
    nesting_depth,
    request,
)
from forexd.daemon.paths import DaemonPaths

pytestmark = pytest.mark.anyio

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=10,
)
# Deep nesting: the recursion limit must never be reachable through the socket.
deep = st.builds(
    lambda depth, opener, wrap: (
        (b'{"v": 1, "cmd": "echo", "args": {"a": ' if wrap else b"")
        + opener * depth
        + (b"}}" if wrap else b"")
    ),
    st.integers(1, 30_000),
    st.sampled_from([b"[", b'{"a":', b"[[{}", b'["\\\\"', b'"[']),
    st.booleans(),
)
requests = st.one_of(
    st.binary(max_size=300).filter(lambda b: b"\n" not in b),
    deep,
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {
            "v": st.sampled_from([1, 2, "1", None]),
            "cmd": st.one_of(st.text(), json_values),
            "args": json_values,
        }
    ).map(lambda v: json.dumps(v).encode()),
)


async def _echo(args: dict[str, Any]) -> dict[str, Any]:
    return {"echo": args}


async def _boom(args: dict[str, Any]) -> dict[str, Any]:
    raise RuntimeError("handler bug")


def _exchange(path: Path, lines: list[bytes]) -> list[dict[str, Any]]:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(path))
        s.sendall(b"".join(line + b"\n" for line in lines))
        reader = s.makefile("rb")
        return [json.loads(reader.readline()) for _ in lines]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=st.lists(requests, min_size=1, max_size=5))
def test_any_bytes_get_one_json_answer_each_and_the_server_survives(
    batch: list[bytes],
) -> None:
    """Random lines on one connection: one JSON answer per line; the server keeps serving."""

    async def main() -> None:
        with tempfile.TemporaryDirectory(prefix="fxf-", dir="/tmp") as tmp:
            paths = DaemonPaths(Path(tmp), Path(tmp))
            server = ControlServer(paths, "unix")
            server.register("echo", _echo)
            server.register("boom", _boom)
            async with anyio.create_task_group() as tg:
                await tg.start(server.serve)
                answers = await anyio.to_thread.run_sync(_exchange, paths.socket, batch)
                assert len(batch) == len(answers)
                for answer in answers:
                    assert 1 == answer["v"]
                    assert isinstance(answer["ok"], bool)
                    if not answer["ok"]:
                        assert {"code", "message"} <= set(answer["error"])
                ok = await anyio.to_thread.run_sync(request, paths, "echo", {"x": 1})
                assert {"echo": {"x": 1}} == ok
                tg.cancel_scope.cancel()

    anyio.run(main)


async def test_oversized_and_handler_errors_are_answered(tmp_path: Path) -> None:
    """A line over the limit is refused; a crashing handler returns `internal`."""
    with tempfile.TemporaryDirectory(prefix="fxf-", dir="/tmp") as tmp:
        paths = DaemonPaths(Path(tmp), Path(tmp))
        server = ControlServer(paths, "unix")
        server.register("boom", _boom)
        async with anyio.create_task_group() as tg:
            await tg.start(server.serve)
            big = await anyio.to_thread.run_sync(
                _exchange,
                paths.socket,
                [b"x" * (MAX_REQUEST_BYTES + 10), b"y" * (3 * MAX_REQUEST_BYTES), b"{}"],
            )
            # each oversized line is answered and skipped; the next line is answered in turn
            assert ["too_large", "too_large", "bad_version"] == [a["error"]["code"] for a in big]
            boom = await anyio.to_thread.run_sync(
                _exchange, paths.socket, [b'{"v": 1, "cmd": "boom"}']
            )
            assert "internal" == boom[0]["error"]["code"]
            assert "handler bug" in boom[0]["error"]["message"]
            tg.cancel_scope.cancel()


async def test_a_20000_deep_line_is_refused_before_parsing_and_the_server_survives(
    tmp_path: Path,
) -> None:
    """40 KB of nested brackets (under the size limit) gets too_deep; the next request works."""
    with tempfile.TemporaryDirectory(prefix="fxf-", dir="/tmp") as tmp:
        paths = DaemonPaths(Path(tmp), Path(tmp))
        server = ControlServer(paths, "unix")
        server.register("echo", _echo)
        async with anyio.create_task_group() as tg:
            await tg.start(server.serve)
            lines = [b"[" * 20_000 + b"]" * 20_000, b'{"v": 1, "cmd": "echo", "args": {}}']
            assert len(lines[0]) < MAX_REQUEST_BYTES
            answers = await anyio.to_thread.run_sync(_exchange, paths.socket, lines)
            assert "too_deep" == answers[0]["error"]["code"]
            assert answers[1]["ok"]
            tg.cancel_scope.cancel()


def test_nesting_depth_ignores_brackets_inside_strings() -> None:
    """Brackets in strings (also after escaped quotes) do not count; real ones do."""
    assert 3 == nesting_depth(b'{"a": [{"b": 1}]}')
    assert 1 == nesting_depth(b'["[[[", "\\\\"]')
    assert 1 == nesting_depth(b'["\\"[[[["]')
    assert MAX_DEPTH + 1 == nesting_depth(b"[" * 20_000)


async def test_tcp_token_is_checked_before_any_request_and_a_wrong_one_closes(
    tmp_path: Path,
) -> None:
    """Over loopback TCP the first line must be the token; a wrong one is answered, closed."""
    paths = DaemonPaths(tmp_path, tmp_path)
    server = ControlServer(paths, "tcp")
    server.register("echo", _echo)
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve)
        assert 0o600 == paths.token.stat().st_mode & 0o777
        ok = await anyio.to_thread.run_sync(request, paths, "echo", {"a": 2})
        assert {"echo": {"a": 2}} == ok
        host, port = paths.tcp_endpoint.read_text().split()
        assert "127.0.0.1" == host

        def guess(first: bytes) -> tuple[dict[str, Any], bytes]:
            with socket.create_connection((host, int(port)), timeout=10) as s:
                # A deep line that would crash a parser, then more guesses on one connection.
                s.sendall(first + b"\n" + b"wrong-again\n" * 300)
                reader = s.makefile("rb")
                answer: dict[str, Any] = json.loads(reader.readline())
                return answer, reader.read()  # b"" once the server has closed

        parsed = server.requests
        for first in (b"wrong", b"[" * 20_000, b'{"v": 1, "cmd": "echo", "token": "x"}'):
            denied, rest = await anyio.to_thread.run_sync(guess, first)
            assert "forbidden" == denied["error"]["code"]
            assert b"" == rest
        assert parsed == server.requests  # nothing after a wrong token was parsed
        tg.cancel_scope.cancel()
