"""The systemd notify protocol: READY, STATUS, WATCHDOG, RELOADING, STOPPING.

systemd passes ``$NOTIFY_SOCKET``: an AF_UNIX datagram socket, a path or, when it starts
with ``@``, a name in the abstract namespace. Each message is one datagram of
newline-separated ``KEY=VALUE`` lines. That is the whole protocol, so it is spoken here
over a plain socket rather than through a dependency (``sdnotify`` on PyPI is the same
few lines; ``cysystemd``/``systemd-python`` need libsystemd headers to build and do not
exist on Windows). ``vsock:`` addresses (systemd ≥ 253, for VMs) are not supported.

Without ``$NOTIFY_SOCKET`` (a terminal, Windows, a plain ``Type=simple`` unit) the
:class:`Notifier` is disabled and every call is a cheap no-op, so callers never check.

The socket is non-blocking: a notification is sent from the event loop, and a full
receive queue in PID 1 must cost one dropped ping, never a stalled loop.

The watchdog is fed by :func:`watchdog_task`, a task of its own that pings only while the
loop is healthy (freqtrade's lesson: a ping fed from the trading loop keeps a wedged
bot alive, or kills a busy one). Healthy means the loop's recent lag, from the
:class:`~forexd.daemon.looplag.LoopLagMonitor`, and the task's own wake-up delay are
both under ``max_lag_s``. A loop blocked for longer than that stops the pings, and
systemd restarts the daemon once ``WatchdogSec`` passes without one.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Mapping

import anyio
from anyio.abc import TaskStatus

from forexd.daemon.logsetup import get_logger

WATCHDOG_PING_FRACTION = 0.5  # ping every half interval, as sd_watchdog_enabled(3) advises
# With WatchdogSec=30 (a ping every 15 s), a stall shorter than this never costs a restart
# (15 + 10 < 30) and one this long or longer does. Guessed: a 10 s stall is a bug.
DEFAULT_MAX_LAG_S = 10.0


class Notifier:
    """Sends notifications to systemd; a disabled instance does nothing.

    Every method returns ``True`` when the datagram was sent, ``False`` when the notifier
    is disabled or the send failed (the first failure after a success is logged). A lost
    notification is never an exception: the daemon keeps trading, and systemd's own
    timeouts report what went missing.
    """

    def __init__(
        self,
        address: str | None,
        *,
        watchdog_usec: int | None = None,
    ) -> None:
        """Create a notifier.

        Args:
            address: the ``$NOTIFY_SOCKET`` value (a path, or ``@name`` for the abstract
                namespace); ``None`` or empty disables the notifier.
            watchdog_usec: the watchdog interval in microseconds (``$WATCHDOG_USEC``), or
                ``None`` when no watchdog is configured for this process.
        """
        self.address = address or None
        self._watchdog_usec = watchdog_usec if watchdog_usec and watchdog_usec > 0 else None
        self._sock: socket.socket | None = None
        self._failing = False
        self._log = get_logger("sdnotify")

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, unset_environment: bool = False
    ) -> Notifier:
        """Build a notifier from ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID``.

        ``WATCHDOG_USEC`` counts only when ``WATCHDOG_PID`` is unset or names this process
        (systemd sets it so that children do not ping on the parent's behalf).

        Args:
            environ: where to read the variables; ``os.environ`` by default.
            unset_environment: remove the three variables from ``os.environ`` afterwards,
                so that child processes (compute workers) do not inherit them.
        """
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET") or None
        watchdog_usec: int | None = None
        pid_text = env.get("WATCHDOG_PID", "").strip()
        usec_text = env.get("WATCHDOG_USEC", "").strip()
        pid_matches = not pid_text or (pid_text.isdigit() and int(pid_text) == os.getpid())
        if usec_text.isdigit() and pid_matches:
            watchdog_usec = int(usec_text)
        if unset_environment:
            for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
                os.environ.pop(key, None)
        return cls(address, watchdog_usec=watchdog_usec)

    @property
    def enabled(self) -> bool:
        """Whether notifications go anywhere."""
        return self.address is not None

    def watchdog_interval_s(self) -> float | None:
        """The watchdog interval systemd enforces (``WatchdogSec``), or ``None`` if unset."""
        if self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 1_000_000

    def watchdog_period_s(self) -> float | None:
        """How often to ping: half the watchdog interval, or ``None`` without a watchdog."""
        interval = self.watchdog_interval_s()
        return None if interval is None else interval * WATCHDOG_PING_FRACTION

    # -- messages ---------------------------------------------------------------------

    def ready(self, status: str | None = None) -> bool:
        """Start-up (or a reload) is complete: ``READY=1``, with an optional status line."""
        fields = ["READY=1"]
        if status is not None:
            fields.append(f"STATUS={_one_line(status)}")
        return self.notify(*fields)

    def status(self, text: str) -> bool:
        """A free-form status line, shown by ``systemctl status``."""
        return self.notify(f"STATUS={_one_line(text)}")

    def watchdog(self) -> bool:
        """Keep-alive ping: ``WATCHDOG=1``."""
        return self.notify("WATCHDOG=1")

    def reloading(self) -> bool:
        """A reload started; send :meth:`ready` when it is done.

        ``MONOTONIC_USEC`` (CLOCK_MONOTONIC, µs) is required with ``RELOADING=1`` by
        systemd ≥ 253 and ignored by older versions.
        """
        monotonic_usec = time.monotonic_ns() // 1000  # CLOCK_MONOTONIC on Linux
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec}")

    def stopping(self, status: str | None = None) -> bool:
        """Shutdown started: ``STOPPING=1``."""
        fields = ["STOPPING=1"]
        if status is not None:
            fields.append(f"STATUS={_one_line(status)}")
        return self.notify(*fields)

    def extend_timeout(self, seconds: float) -> bool:
        """Ask for more time for the current start-up or shutdown (``EXTEND_TIMEOUT_USEC``)."""
        return self.notify(f"EXTEND_TIMEOUT_USEC={max(0, int(seconds * 1_000_000))}")

    def notify(self, *fields: str) -> bool:
        """Send ``KEY=VALUE`` fields as one datagram.

        Returns:
            ``True`` if the datagram was handed to the kernel.
        """
        if self.address is None or not fields:
            return False
        payload = "\n".join(fields).encode("utf-8")
        try:
            sock = self._socket()
            sock.sendto(payload, _sockaddr(self.address))
        except OSError as exc:  # BlockingIOError too: PID 1 is not reading, drop this one
            if not self._failing:
                self._failing = True
                self._log.warning(
                    "sd_notify_failed",
                    socket=self.address,
                    error=f"{type(exc).__name__}: {exc}",
                    message=fields[0],
                )
            return False
        if self._failing:
            self._failing = False
            self._log.info("sd_notify_recovered", socket=self.address)
        return True

    def close(self) -> None:
        """Close the socket (a later notification opens a new one)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _socket(self) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # CLOEXEC by default
            sock.setblocking(False)
            self._sock = sock
        return self._sock


def _sockaddr(address: str) -> str:
    """``@name`` is the abstract namespace: a leading NUL byte in the kernel's eyes."""
    return "\0" + address[1:] if address.startswith("@") else address


def _one_line(text: str) -> str:
    """Each field is one line of the datagram; a newline would start a bogus field."""
    return " ".join(text.splitlines())


async def watchdog_task(
    notifier: Notifier,
    lag_probe: Callable[[], float],
    *,
    max_lag_s: float = DEFAULT_MAX_LAG_S,
    period_s: float | None = None,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Ping ``WATCHDOG=1`` every ``period_s`` while the event loop is healthy.

    Each period the task sleeps, then measures its own wake-up delay. It pings only if
    that delay and ``lag_probe()`` are both under ``max_lag_s``; otherwise it skips the
    ping and logs the transition (once, not every period). A loop blocked for good
    therefore stops the pings and systemd restarts the daemon; a loop that lagged once
    misses one ping and recovers on the next.

    Returns at once (after reporting started) when the notifier is disabled or no
    period is known (no ``WatchdogSec``); otherwise runs until cancelled.

    Args:
        notifier: where pings go.
        lag_probe: the recent maximum loop lag in seconds, e.g.
            ``LoopLagMonitor.recent_max_s``.
        max_lag_s: the lag at or above which the loop counts as unhealthy. Keep
            ``period_s + max_lag_s`` under the watchdog interval, so that a stall shorter
            than ``max_lag_s`` delays a ping without getting the daemon killed.
        period_s: seconds between pings; ``None`` takes :meth:`Notifier.watchdog_period_s`.
        task_status: for ``TaskGroup.start``.
    """
    period = period_s if period_s is not None else notifier.watchdog_period_s()
    task_status.started()
    if not notifier.enabled or period is None or period <= 0:
        return
    log = get_logger("watchdog")
    healthy = True
    while True:
        started = time.monotonic()
        await anyio.sleep(period)
        wake_delay_s = max(0.0, time.monotonic() - started - period)
        lag_s = max(wake_delay_s, lag_probe())
        if lag_s < max_lag_s:
            notifier.watchdog()
            if not healthy:
                healthy = True
                log.info("watchdog_resumed", lag_s=round(lag_s, 3))
        elif healthy:
            healthy = False
            log.warning("watchdog_ping_withheld", lag_s=round(lag_s, 3), max_lag_s=max_lag_s)
