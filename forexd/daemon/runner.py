"""Process entry for the daemon: pick the event loop and run the supervisor.

uvloop is used where it is installed (it is not on Windows); anyio's asyncio backend
gives TaskGroup semantics on every supported Python, 3.10 included.

The GIL switch interval is lowered to 1 ms for the daemon's process: with training threads
holding the GIL, the event loop thread waits up to one interval each time it wants the GIL
back, so Python's default of 5 ms shows up directly as loop lag (docs/benchmarks.md).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import anyio

from forexd.config import Settings
from forexd.daemon import stopsignals
from forexd.daemon.paths import DaemonPaths
from forexd.daemon.supervisor import Daemon
from forexd.errors import ForexdError, first_leaf
from forexd.storage.db import damaged, is_damaged

GIL_SWITCH_INTERVAL_S = 0.001


def event_loop_options() -> dict[str, Any]:
    """anyio backend options: uvloop when available."""
    return {"use_uvloop": importlib.util.find_spec("uvloop") is not None}


def run_daemon(
    settings: Settings,
    paths: DaemonPaths,
    *,
    exit_when_done: bool = False,
    config_path: Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> None:
    """Run a daemon in this process until it stops (blocking).

    ``config_path`` and ``overrides`` are kept so a reload re-reads the same sources.
    """
    # Idempotent; ``python -m forexd run`` did it before its imports already, the
    # ``forexd`` console script gets it here, still before the loop and the daemon exist.
    stopsignals.install(["--log-format", settings.log_format])
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    daemon = Daemon(
        settings, paths, exit_when_done=exit_when_done, config_path=config_path, overrides=overrides
    )
    stopsignals.arm()  # the daemon exists: a stop signal now ends in its clean shutdown
    try:
        anyio.run(daemon.run, backend="asyncio", backend_options=event_loop_options())
    except BaseException as exc:
        leaf = first_leaf(exc)
        if leaf is not exc and isinstance(leaf, ForexdError):
            raise leaf from None
        # -- integrity (issue 10): a damaged page may surface in any reader; it is a
        # user-facing refusal (exit 2, how to restore), not a crash with a traceback.
        if is_damaged(leaf):
            raise damaged(paths.db, leaf) from None
        # -- end integrity
        raise
