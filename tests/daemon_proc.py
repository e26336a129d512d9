"""Run ``forexd`` as a real subprocess and follow its JSON log lines."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

READY_TIMEOUT_S = 30.0


def forexd_cmd(*args: str) -> list[str]:
    """The command line that runs forexd with this interpreter."""
    return [sys.executable, "-m", "forexd", *args]


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """Run a forexd command to completion and capture its output."""
    return subprocess.run(
        forexd_cmd(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


def write_config(path: Path, body: str) -> Path:
    """Write a TOML config file and return its path."""
    path.write_text(body, encoding="utf-8")
    return path


class DaemonProc:
    """A ``forexd run`` subprocess whose stdout (JSON lines) is read by a thread."""

    def __init__(
        self,
        data_dir: Path,
        config: Path | None = None,
        *extra: str,
        env: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.config = config
        args = ["run", "--data-dir", str(data_dir), "--log-format", "json", *extra]
        if config is not None:
            args += ["--config", str(config)]
        self.proc = subprocess.Popen(
            forexd_cmd(*args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.lines: list[dict[str, Any]] = []
        self._changed = threading.Condition()
        self._cursor: dict[str, int] = {}
        self._eof = False
        self.raw: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.raw.append(line)
            try:
                event = json.loads(line)
            except ValueError:
                event = {"event": "_unparsed", "line": line}
            with self._changed:
                self.lines.append(event)
                self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    def wait_for(
        self, event: str, timeout: float = READY_TIMEOUT_S, **match: Any
    ) -> dict[str, Any]:
        """Block until a log line with ``event`` (and the given fields) has been written.

        Each event name has its own cursor: waiting for ``ready`` never skips an
        ``order_denied`` logged before it, and two waits for ``order_filled`` return two
        different lines.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                start = self._cursor.get(event, 0)
                for i in range(start, len(self.lines)):
                    got = self.lines[i]
                    if got.get("event") == event and all(got.get(k) == v for k, v in match.items()):
                        self._cursor[event] = i + 1
                        return got
                if self._eof:
                    raise AssertionError(
                        f"daemon exited (rc={self.proc.wait()}) before {event!r}; "
                        f"stderr: {self.stderr()}"
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no {event!r} within {timeout} s; stderr: {self.stderr()}")
                self._changed.wait(remaining)

    def ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``forexd ctl ARGS`` against this daemon's data dir."""
        return run_cli("ctl", *args, "--data-dir", str(self.data_dir))

    def status(self) -> dict[str, Any]:
        """``ctl status --json`` parsed."""
        res = self.ctl("status", "--json")
        assert res.returncode == 0, res.stderr
        result: dict[str, Any] = json.loads(res.stdout)
        return result

    def signal(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send a signal and wait for exit; return the exit code."""
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)

    def wait(self, timeout: float = 60.0) -> int:
        """Wait for the process to exit by itself."""
        return self.proc.wait(timeout=timeout)

    def stderr(self) -> str:
        """Whatever the process wrote to stderr (only after it exited)."""
        if self.proc.poll() is None or self.proc.stderr is None:
            return "(still running)"
        return self.proc.stderr.read()

    def kill(self) -> None:
        """SIGKILL if still running."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
