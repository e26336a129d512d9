"""Run ``forexd`` as a real subprocess and follow its JSON log lines.

Every failure these helpers detect (a wrong exit code, an event that never came, a daemon
that died early) prints the daemon's stderr and the tail of its log, so a red test in CI
explains itself without a rerun.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from signal import SIGTERM, Signals
from typing import Any

READY_TIMEOUT_S = 30.0
LOG_TAIL_LINES = 40


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


def handles_signal(pid: int, sig: int) -> bool:
    """True once process ``pid`` has installed a handler for ``sig`` (Linux ``/proc``).

    Before that moment a signal takes its default action (SIGTERM kills outright): no
    program can react to a signal it has not yet asked for.
    """
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except OSError:
        return False
    for line in status.splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    return False


class DaemonProc:
    """A ``forexd run`` subprocess whose stdout (JSON lines) and stderr are read by threads."""

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
        self._err: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        # stderr is drained as it comes: a full pipe would block the daemon's writes.
        self._err_reader = threading.Thread(target=self._read_err, daemon=True)
        self._err_reader.start()

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

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._err.append(line)

    # -- diagnostics ------------------------------------------------------------------

    def diagnostics(self) -> str:
        """The daemon's exit code, stderr and the last log lines, for failure messages."""
        rc = self.proc.poll()
        if rc is not None:
            self._reader.join(timeout=5)
            self._err_reader.join(timeout=5)
        tail = "".join(self.raw[-LOG_TAIL_LINES:]) or "(no log lines)\n"
        err = "".join(self._err) or "(empty)\n"
        return (
            f"--- forexd pid {self.proc.pid}, exit code "
            f"{'still running' if rc is None else rc}\n"
            f"--- stderr:\n{err}--- last {LOG_TAIL_LINES} log lines:\n{tail}"
        )

    def _explain(self) -> None:
        # pytest shows captured stdout of a failing test: print, then let the assert fail.
        print(self.diagnostics(), flush=True)

    # -- waiting ----------------------------------------------------------------------

    def wait_for(
        self, event: str, timeout: float = READY_TIMEOUT_S, **match: Any
    ) -> dict[str, Any]:
        """Block until a log line with ``event`` (and the given fields) has been written.

        Each event name has its own cursor: waiting for ``ready`` never skips an
        ``order_denied`` logged before it, and two waits for ``order_filled`` return two
        different lines.

        Raises:
            AssertionError: the daemon exited first (message: stderr and log tail).
            TimeoutError: the event did not come within ``timeout`` (same message).
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
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(remaining)
        if self._eof:
            self.proc.wait()
            raise AssertionError(f"daemon exited before {event!r} {match}\n{self.diagnostics()}")
        raise TimeoutError(f"no {event!r} {match} within {timeout} s\n{self.diagnostics()}")

    def events(self, event: str) -> list[dict[str, Any]]:
        """Every log line with ``event`` logged so far."""
        with self._changed:
            return [e for e in self.lines if e.get("event") == event]

    def ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``forexd ctl ARGS`` against this daemon's data dir."""
        return run_cli("ctl", *args, "--data-dir", str(self.data_dir))

    def status(self) -> dict[str, Any]:
        """``ctl status --json`` parsed."""
        res = self.ctl("status", "--json")
        if res.returncode != 0:
            self._explain()
        assert res.returncode == 0, res.stderr
        result: dict[str, Any] = json.loads(res.stdout)
        return result

    def signal(self, sig: int = SIGTERM, timeout: float = 30.0) -> int:
        """Send a signal and wait for exit; return the exit code (diagnostics printed if not 0)."""
        self.proc.send_signal(sig)
        return self.wait(timeout)

    def wait(self, timeout: float = 60.0) -> int:
        """Wait for the process to exit by itself; diagnostics are printed if it fails."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._explain()
            raise
        self._reader.join(timeout=10)  # every log line is read before the caller checks
        if rc != 0:
            self._explain()
        return rc

    def stop(self, sig: int = SIGTERM, timeout: float = 30.0) -> None:
        """Send ``sig`` and assert the clean stop: exit code 0 and ``stopped`` logged."""
        rc = self.signal(sig, timeout)
        assert rc == 0, f"exit code {rc} after {Signals(sig).name}\n{self.diagnostics()}"
        assert self.events("stopped"), f"no 'stopped' event\n{self.diagnostics()}"

    def stderr(self) -> str:
        """Whatever the process wrote to stderr so far (complete once it exited)."""
        if self.proc.poll() is not None:
            self._err_reader.join(timeout=5)
        return "".join(self._err)

    def kill(self) -> None:
        """SIGKILL if still running."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
