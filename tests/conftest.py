"""Shared fixtures: real data location, daemon subprocesses, anyio backend."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon_proc import DaemonProc

SHARED_FX = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fx"


@pytest.fixture
def anyio_backend() -> str:
    """Run async tests on asyncio (the daemon's backend)."""
    return "asyncio"


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
