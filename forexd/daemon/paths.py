"""Where the daemon keeps its files, resolved the same way by ``run`` and ``ctl``.

Data dir: ``--data-dir`` > ``FOREXD_DATA_DIR`` / config ``data_dir`` > the platform default
(XDG ``$XDG_DATA_HOME/forexd`` on Linux, via platformdirs). Runtime dir (socket, pid file):
``--runtime-dir``/``FOREXD_RUNTIME_DIR``/config ``runtime_dir`` > ``<data dir>/run``.
Keeping the runtime dir under the data dir by default means one option finds everything.

Private by default (issue 10): the daemon runs with umask 077, creates both directories
0700, and tightens files an older forexd left wider (database, WAL, shared memory, risk
state and its lock) to 0600. An existing directory that group or others can enter is
left as the operator made it, but ``forexd run`` warns and ``forexd config check``
reports it: with it, another local user could read every order and hold the risk lock.
"""

from __future__ import annotations

import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import platformdirs

from forexd.errors import ConfigError

if TYPE_CHECKING:  # ctl resolves paths without loading pydantic (forexd.daemon.ctlclient)
    from forexd.config import Settings

UNIX_SOCKET_PATH_MAX = 104  # macOS limit (Linux allows 108); be conservative
PRIVATE_UMASK = 0o077
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
# Files of the data dir that an older forexd created 0644; tightened at start.
PRIVATE_FILES = (
    "forexd.db",
    "forexd.db-wal",
    "forexd.db-shm",
    "risk_state.json",
    "risk_state.json.lock",
)


@dataclass(frozen=True, slots=True)
class DaemonPaths:
    """Every path the daemon reads or writes."""

    data_dir: Path
    runtime_dir: Path

    @property
    def db(self) -> Path:
        """The SQLite store."""
        return self.data_dir / "forexd.db"

    @property
    def risk_state(self) -> Path:
        """The locked risk state file."""
        return self.data_dir / "risk_state.json"

    @property
    def models(self) -> Path:
        """Model artifacts."""
        return self.data_dir / "models"

    @property
    def reports(self) -> Path:
        """Backtest reports."""
        return self.data_dir / "reports"

    @property
    def socket(self) -> Path:
        """The control socket (Unix)."""
        return self.runtime_dir / "ctl.sock"

    @property
    def tcp_endpoint(self) -> Path:
        """Where the TCP control transport writes ``host port`` (platforms without AF_UNIX)."""
        return self.runtime_dir / "ctl.endpoint"

    @property
    def token(self) -> Path:
        """The TCP control transport's token file."""
        return self.runtime_dir / "ctl.token"

    @property
    def pidfile(self) -> Path:
        """The pid file, exclusively locked while a daemon runs."""
        return self.runtime_dir / "forexd.pid"


def default_data_dir() -> Path:
    """The platform's per-user data directory for forexd."""
    return Path(platformdirs.user_data_dir("forexd", appauthor=False))


def resolve_paths(settings: Settings) -> DaemonPaths:
    """Resolve the data and runtime directories (not created here).

    Raises:
        ConfigError: the socket path would be too long for a Unix socket.
    """
    return paths_from(settings.data_dir, settings.runtime_dir)


def paths_from(data_dir: Path | None, runtime_dir: Path | None) -> DaemonPaths:
    """:func:`resolve_paths` from the two location settings themselves.

    Raises:
        ConfigError: the socket path would be too long for a Unix socket.
    """
    data_dir = (data_dir or default_data_dir()).expanduser().absolute()
    runtime_dir = (runtime_dir or data_dir / "run").expanduser().absolute()
    paths = DaemonPaths(data_dir, runtime_dir)
    if sys.platform != "win32" and len(str(paths.socket).encode()) >= UNIX_SOCKET_PATH_MAX:
        raise ConfigError(
            f"control socket path {paths.socket} is longer than {UNIX_SOCKET_PATH_MAX - 1} "
            "bytes; set a shorter runtime_dir (FOREXD_RUNTIME_DIR or --runtime-dir)"
        )
    return paths


def exposure_warnings(paths: DaemonPaths) -> list[str]:
    """One message per existing daemon directory that group or others may access."""
    if os.name != "posix":
        return []
    found = []
    for directory in dict.fromkeys((paths.data_dir, paths.runtime_dir)):
        try:
            mode = stat.S_IMODE(directory.stat().st_mode)
        except OSError:  # missing (created later) or unreachable (creating it will say)
            continue
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            found.append(
                f"{directory} has mode {mode:04o}: other local users may read the orders "
                f"and balance or hold the daemon's locks; run `chmod 700 {directory}`"
            )
    return found


def make_private(paths: DaemonPaths) -> list[str]:
    """Set the process umask to 077 and create the daemon's directories 0700.

    Called before the daemon creates anything (log file, pid lock, database). Files an
    older forexd left group/world readable are tightened to 0600; directories that
    already exist keep their mode (see :func:`exposure_warnings`, whose messages are
    returned for the caller to log).

    Raises:
        ConfigError: a directory cannot be created.
    """
    if os.name != "posix":
        return []
    os.umask(PRIVATE_UMASK)
    warnings = exposure_warnings(paths)
    for directory in (paths.data_dir, paths.runtime_dir):
        try:
            directory.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create directory {directory} ({exc.strerror or exc}); choose "
                "another --data-dir / --runtime-dir or fix the parent's permissions"
            ) from None
    for name in PRIVATE_FILES:
        path = paths.data_dir / name
        try:
            if stat.S_IMODE(path.stat().st_mode) & (stat.S_IRWXG | stat.S_IRWXO):
                path.chmod(PRIVATE_FILE_MODE)
        except FileNotFoundError:
            continue
    return warnings
