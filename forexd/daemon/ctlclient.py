"""The synchronous control-channel client, and where it finds the daemon, without the server.

``forexd ctl`` is a new process per command, so its import path is its start-up time. The
server (:mod:`forexd.daemon.control`) needs anyio and the logging stack, and the full
configuration (:func:`forexd.config.load_settings`) needs pydantic and, through the strategy
registry, numpy. The client needs neither: it sends one JSON line over a socket, and it only
needs the two location keys of the configuration. So this module imports the standard
library only, and :mod:`forexd.daemon.control` re-exports :func:`request` from here.

Location (same precedence as :func:`forexd.config.load_settings` for these two keys):
command-line flag > ``FOREXD_DATA_DIR`` / ``FOREXD_RUNTIME_DIR`` > the config file's
``data_dir`` / ``runtime_dir`` > the platform default. Only those keys are read from the
file: a config that is invalid elsewhere still lets ``ctl`` reach (and stop) the daemon.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

from forexd.daemon.paths import DaemonPaths, paths_from
from forexd.daemon.tokenfile import read_token
from forexd.errors import ConfigError, ControlError, DaemonNotRunningError

PROTOCOL_VERSION = 1
CLIENT_TIMEOUT_S = 10.0
LOCATION_KEYS = ("data_dir", "runtime_dir")


def locate(
    config: Path | None, data_dir: Path | None = None, runtime_dir: Path | None = None
) -> DaemonPaths:
    """The daemon's paths from flags, environment and the config file's location keys.

    Raises:
        ConfigError: the config file is missing, unreadable or not TOML, a location key in
            it is not a string, or the socket path would be too long.
    """
    flags = {"data_dir": data_dir, "runtime_dir": runtime_dir}
    from_file = _location_keys(config) if config is not None else {}
    found: dict[str, Path | None] = {}
    for key in LOCATION_KEYS:
        env = os.environ.get(f"FOREXD_{key.upper()}")
        value = flags[key] or (Path(env) if env else None) or from_file.get(key)
        found[key] = value
    return paths_from(found["data_dir"], found["runtime_dir"])


def _location_keys(path: Path) -> dict[str, Path]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist; pass an existing file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    out: dict[str, Path] = {}
    for key in LOCATION_KEYS:
        value = data.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or not value:
            raise ConfigError(f"invalid configuration in {path}:\n  {key}: expected a path string")
        out[key] = Path(value)
    return out


def request(
    paths: DaemonPaths,
    cmd: str,
    args: dict[str, Any] | None = None,
    timeout_s: float = CLIENT_TIMEOUT_S,
) -> Any:
    """Send one request to the daemon and return its result (synchronous client).

    Raises:
        DaemonNotRunningError: nothing is listening for this data directory.
        ControlError: the daemon answered with an error.
    """
    payload: dict[str, Any] = {"v": PROTOCOL_VERSION, "id": 1, "cmd": cmd, "args": args or {}}
    sock, preamble = _connect(paths, timeout_s)
    with sock:
        sock.sendall(preamble + json.dumps(payload).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                raise ControlError(f"daemon did not answer {cmd!r} within {timeout_s} s") from None
            if not chunk:
                break
            data += chunk
    try:
        resp = json.loads(data)
    except ValueError:
        raise ControlError(f"daemon sent an unreadable answer to {cmd!r}") from None
    if not resp.get("ok"):
        err = resp.get("error", {})
        raise ControlError(f"{cmd}: {err.get('message', 'failed')} ({err.get('code', '?')})")
    return resp.get("result")


def _connect(paths: DaemonPaths, timeout_s: float) -> tuple[socket.socket, bytes]:
    """A connected socket and what must precede the request.

    On TCP the token goes alone on the first line: the daemon checks it before it reads
    (let alone parses) any request, and closes the connection on a wrong one.
    """
    where = paths.tcp_endpoint if paths.tcp_endpoint.exists() else paths.socket
    not_running = DaemonNotRunningError(
        f"no forexd is running for data directory {paths.data_dir} (looked for {where}); "
        "start it with `forexd run`, or pass the --data-dir / --config it was started with"
    )
    if paths.tcp_endpoint.exists():
        try:
            host, port = paths.tcp_endpoint.read_text().split()
            token = read_token(paths.token)
            sock = socket.create_connection((host, int(port)), timeout=timeout_s)
            return sock, token.encode("utf-8") + b"\n"
        except (OSError, ValueError):
            raise not_running from None
    if not hasattr(socket, "AF_UNIX") or not paths.socket.exists():
        raise not_running
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout_s)
    try:
        sock.connect(str(paths.socket))
    except OSError:
        sock.close()
        raise not_running from None
    return sock, b""
