"""Shared fixtures: real data location, daemon subprocesses, anyio backend, blocking guard."""

from __future__ import annotations

import inspect
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon_proc import DaemonProc

SHARED_FX = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fx"


# Test files whose async tests still block the loop, with the finding; remove the entry
# together with the fix (the fixture then guards them like every other async test).
KNOWN_BLOCKING: dict[str, str] = {}


@pytest.fixture
def anyio_backend() -> str:
    """Run async tests on asyncio (the daemon's backend)."""
    return "asyncio"


@pytest.fixture(autouse=True)
def no_blocking_on_the_loop(request: pytest.FixtureRequest) -> Iterator[None]:
    """In every in-process async test, a blocking call made by forexd on the loop fails it.

    ``blockbuster`` wraps the usual culprits (``time.sleep``, file and socket I/O, sqlite3,
    ``os.stat``...) and raises ``BlockingError`` when one runs on the event-loop thread
    from code in the ``forexd`` package. Worker threads are not checked: that is where
    blocking work belongs. Test code itself is not scanned (it may set up files freely).
    A test that must block on purpose opts out with ``@pytest.mark.allow_blocking``.
    """
    is_async = inspect.iscoroutinefunction(getattr(request.node, "function", None))
    known = KNOWN_BLOCKING.get(request.node.path.name)
    if not is_async or known or request.node.get_closest_marker("allow_blocking") is not None:
        yield
        return
    from blockbuster import blockbuster_ctx

    with blockbuster_ctx(["forexd"]) as bb:
        # anyio itself stats the socket path on the loop when it binds a Unix listener.
        bb.functions["os.stat"].can_block_in("anyio/_core/_sockets.py", "setup_unix_local_socket")
        # A logged traceback reads source files (linecache; rich in the console renderer
        # tests get by default): accepted on the loop, logged exceptions are rare.
        for function in bb.functions.values():
            function.can_block_in("linecache.py", {"updatecache", "checkcache"})
            function.can_block_in("structlog/dev.py", "__call__")
            # Once at start-up, on the loop thread by design (OpenMP caps are per thread).
            # (daemon/resources.py was split: the caps are ThreadLimiter.apply in threads.py)
            function.can_block_in("forexd/daemon/threads.py", "apply")
        yield


def pytest_configure(config: pytest.Config) -> None:
    """Register this suite's own markers."""
    config.addinivalue_line(
        "markers", "allow_blocking: the test may block the event loop (no blockbuster)"
    )


@pytest.fixture
def shared_fx_dir() -> Path:
    """The real FX data beside the repository; skip when it is absent."""
    if not SHARED_FX.is_dir():
        pytest.skip(f"real FX data not found at {SHARED_FX} (../shared is absent)")
    return SHARED_FX


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short temporary directory (Unix socket paths are limited to ~104 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="fxd-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def daemon_factory(short_tmp: Path) -> Iterator[type[DaemonProc]]:
    """Start daemons as subprocesses; every one still running is killed at teardown."""
    started: list[DaemonProc] = []

    class Factory(DaemonProc):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            started.append(self)

    yield Factory
    for proc in started:
        proc.kill()
