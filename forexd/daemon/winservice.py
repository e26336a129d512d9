"""Running forexd as a Windows service.

Options weighed for hosting:

- pywin32's ``pythonservice.exe`` finds the service class through a registry key and
  picks its interpreter from ``PATH``; it is the usual source of "error 1053" reports,
  and of virtualenvs that silently run the wrong Python.
- NSSM/WinSW wrap any console program, but are one more binary to ship, and they stop
  a console program with Ctrl+C emulation and a kill, not with a graceful request.
- The SCM starting ``python.exe`` itself, which calls ``StartServiceCtrlDispatcher``
  (pywin32's ``servicemanager.PrepareToHostSingle``) — chosen: the service's command
  line names the exact interpreter, and the SCM's stop request reaches the daemon as a
  call. One catch: a virtualenv's ``Scripts\\python.exe`` is a redirector that runs the
  base interpreter as a *child*, and the SCM only talks to the process it started
  (the child fails with error 1063). So in a virtualenv
  the command line runs the base interpreter with ``-S`` and adds the virtualenv's
  site-packages itself (``.pth`` files, pywin32's DLL bootstrap included).

The command line is ``… forexd service host --data-dir D --runtime-dir D\\run
[--config C]``; ``cli.py`` routes ``service host`` to :func:`host_service`. A stop or a
system shutdown from the SCM calls :meth:`StopBridge.request` on the SCM's thread, which
queues the daemon's own ``request_stop`` on the event loop without waiting for it — a
loop stuck in a blocking call is exactly when a stop must not hang the SCM too.

Installation uses ``sc.exe`` and ``icacls`` (present on every Windows): a virtual account
``NT SERVICE\\forexd`` (no password, no profile to manage), delayed automatic start,
restart on failure, and a data directory only SYSTEM, Administrators and the service can
open (it holds the control token and the broker state). A service has no console, so
its JSON log lines go to a size-rotated file under the data directory.

All pywin32 imports are inside functions: this module imports (and its platform-free
parts are tested) on Linux.

Why it is over 400 lines: the SCM's contract is one piece — the command line the service
is installed with (:class:`ServiceSpec`, virtualenv handling included) must be exactly
what :func:`host_service` expects when the SCM starts it, and the stop bridge is the
other half of that start. Kept together so that install and hosting cannot drift apart.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import sysconfig
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath, PureWindowsPath
from typing import Any, Literal, TextIO, cast

from forexd.daemon.logfile import RotatingLogFile
from forexd.errors import ForexdError

SERVICE_NAME = "forexd"
DISPLAY_NAME = "forexd FX trading daemon"
DESCRIPTION = "Trades FX symbols with self-retraining models (forexd)."
LOCAL_SYSTEM = "LocalSystem"
HOST_ARGS = ("service", "host")  # the CLI sub-command the SCM starts
SYSTEM_SID = "*S-1-5-18"  # SIDs, not names: group names are localised
ADMINISTRATORS_SID = "*S-1-5-32-544"
ERROR_SERVICE_EXISTS = 1073
ERROR_FAILED_SERVICE_CONTROLLER_CONNECT = 1063

LOG_FILE_NAME = "forexd.jsonl"
STOP_WAIT_MARGIN_S = 20.0  # beyond shutdown_timeout_s, before the SCM gives up waiting
RESTART_DELAYS_MS = (5_000, 30_000, 60_000)  # 1st, 2nd, later failures
FAILURE_RESET_S = 86_400  # the failure count restarts after a day without one

StartType = Literal["auto", "delayed-auto", "demand"]
CommandRunner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


class ServiceError(ForexdError):
    """A Windows service could not be installed, removed or hosted."""


def default_data_dir() -> PureWindowsPath:
    """``%ProgramData%\\forexd``: machine-wide, not tied to any user's profile."""
    return PureWindowsPath(os.environ.get("PROGRAMDATA", r"C:\ProgramData"), SERVICE_NAME)


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """Everything the SCM needs to run forexd, and the paths the service uses.

    Attributes:
        python: the interpreter the SCM starts (never a virtualenv's redirector).
        data_dir: the data directory; the runtime dir and logs live under it.
        config: the TOML configuration, or ``None`` for defaults and environment.
        site_packages: a virtualenv's site-packages to add (``python`` is then the
            base interpreter, run with ``-S``); ``None`` runs ``python -m forexd``.
        name: the service name (``sc.exe`` and ``net start`` use it).
        display_name: shown in services.msc.
        description: shown in services.msc.
        account: the account it runs as; ``None`` is the virtual account
            ``NT SERVICE\\<name>``; ``LocalSystem`` is possible but has every right.
        start: ``delayed-auto`` starts after boot settles; ``demand`` is manual.
        shutdown_timeout_s: the daemon's ``shutdown_timeout_s`` (sizes the stop hint).
    """

    python: PurePath
    data_dir: PurePath
    config: PurePath | None = None
    site_packages: PurePath | None = None
    name: str = SERVICE_NAME
    display_name: str = DISPLAY_NAME
    description: str = DESCRIPTION
    account: str | None = None
    start: StartType = "delayed-auto"
    shutdown_timeout_s: float = 10.0

    @classmethod
    def for_this_install(
        cls,
        data_dir: PurePath | None = None,
        config: PurePath | None = None,
        **options: Any,
    ) -> ServiceSpec:
        """The spec for the running interpreter (its virtualenv, if it is in one)."""
        in_venv = sys.prefix != sys.base_prefix
        python = PurePath(
            getattr(sys, "_base_executable", sys.executable) if in_venv else sys.executable
        )
        site = PurePath(sysconfig.get_path("purelib")) if in_venv else None
        return cls(
            python=python,
            data_dir=data_dir if data_dir is not None else default_data_dir(),
            config=config,
            site_packages=site,
            **options,
        )

    @property
    def service_account(self) -> str:
        """The account the service runs as."""
        return self.account or rf"NT SERVICE\{self.name}"

    @property
    def runtime_dir(self) -> PurePath:
        """Control endpoint, token and pid file."""
        return self.data_dir / "run"

    @property
    def log_dir(self) -> PurePath:
        """Where the service's log files rotate."""
        return self.data_dir / "logs"

    @property
    def log_file(self) -> PurePath:
        """The current JSON-lines log file (older ones get ``.1`` … ``.N``)."""
        return self.log_dir / LOG_FILE_NAME

    def cli_args(self) -> list[str]:
        """The ``forexd`` arguments: ``service host --data-dir … --runtime-dir …``."""
        args = [
            *HOST_ARGS,
            "--data-dir",
            str(self.data_dir),
            "--runtime-dir",
            str(self.runtime_dir),
        ]
        if self.config is not None:
            args += ["--config", str(self.config)]
        return args

    def argv(self) -> list[str]:
        """The whole command the SCM runs, one list item per argument."""
        if self.site_packages is None:
            return [str(self.python), "-m", "forexd", *self.cli_args()]
        bootstrap = (
            "import site, sys; site.addsitedir(sys.argv[1]); "
            "from forexd.cli import main; sys.exit(main(sys.argv[2:]))"
        )
        return [str(self.python), "-S", "-c", bootstrap, str(self.site_packages), *self.cli_args()]

    def command_line(self) -> str:
        """:meth:`argv` quoted the way Windows parses it (the service's binary path)."""
        return subprocess.list2cmdline(self.argv())

    def stop_wait_hint_ms(self) -> int:
        """How long the SCM should wait for a stop before it considers us hung."""
        return int((self.shutdown_timeout_s + STOP_WAIT_MARGIN_S) * 1000)

    def install_commands(self) -> list[list[str]]:
        """``sc.exe``/``icacls`` invocations that install the service, in order."""
        name = self.name
        actions = "/".join(f"restart/{ms}" for ms in RESTART_DELAYS_MS)
        commands = [
            [
                "sc.exe",
                "create",
                name,
                "binPath=",
                self.command_line(),
                "start=",
                self.start,
                "DisplayName=",
                self.display_name,
            ],
            ["sc.exe", "description", name, self.description],
            ["sc.exe", "failure", name, "reset=", str(FAILURE_RESET_S), "actions=", actions],
            ["sc.exe", "failureflag", name, "1"],  # a stop with an error counts as failure
        ]
        grants = [f"{SYSTEM_SID}:(OI)(CI)F", f"{ADMINISTRATORS_SID}:(OI)(CI)F"]
        account = self.service_account
        if account != LOCAL_SYSTEM:
            commands += [
                ["sc.exe", "sidtype", name, "unrestricted"],
                ["sc.exe", "config", name, "obj=", account],
            ]
            grants.append(f"{account}:(OI)(CI)M")
        commands.append(["icacls", str(self.data_dir), "/inheritance:r", "/grant:r", *grants])
        return commands

    def uninstall_commands(self) -> list[list[str]]:
        """Stop (if running) and delete the service; the data directory is kept."""
        return [["sc.exe", "stop", self.name], ["sc.exe", "delete", self.name]]


class StopBridge:
    """Carries a stop request from the SCM's thread into the daemon's event loop.

    ``request`` may come first (a stop during start-up): :meth:`bind` then delivers it at
    once. The first reason wins; later requests are ignored.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._event = threading.Event()
        self._reason = ""
        self._deliver: Callable[[str], None] | None = None

    @property
    def requested(self) -> bool:
        """Whether a stop was requested."""
        return self._event.is_set()

    @property
    def reason(self) -> str:
        """Why (empty until requested)."""
        return self._reason

    def request(self, reason: str = "service stop") -> None:
        """Ask for a graceful stop; any thread, returns without waiting for the loop."""
        with self._lock:
            if self._event.is_set():
                return
            self._reason = reason
            self._event.set()
            deliver = self._deliver
        if deliver is not None:
            deliver(reason)

    def bind(self, request_stop: Callable[[str], None]) -> None:
        """Route stops to ``request_stop(reason)``; call it on the running event loop.

        Raises:
            RuntimeError: not called from a running event loop.
        """
        loop = asyncio.get_running_loop()

        def deliver(reason: str) -> None:
            try:
                loop.call_soon_threadsafe(request_stop, reason)
            except RuntimeError:  # the loop is closed: the daemon has already stopped
                return

        with self._lock:
            self._deliver = deliver
            pending = self._reason if self._event.is_set() else None
        if pending is not None:
            request_stop(pending)

    def unbind(self) -> None:
        """Stop delivering (the loop is about to close)."""
        with self._lock:
            self._deliver = None

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until a stop is requested; ``False`` on timeout."""
        return self._event.wait(timeout_s)


def install_service(spec: ServiceSpec, runner: CommandRunner | None = None) -> None:
    """Install the service with ``sc.exe``/``icacls`` (run as Administrator).

    Args:
        spec: what to install.
        runner: runs one command and returns its completed process; the default runs it
            for real (Windows only) after creating the data and log directories.

    Raises:
        ServiceError: not on Windows, a service of that name already exists (a second
            installation), or a command failed; the message names the command.
    """
    if runner is None:
        _require_windows(
            "Windows services can only be installed on Windows; on Linux install the "
            "systemd unit (forexd.daemon.unitfile.install_unit)"
        )
        for directory in (spec.data_dir, spec.log_dir):
            Path(directory).mkdir(parents=True, exist_ok=True)
        runner = _run_command
    for command in spec.install_commands():
        result = runner(command)
        if result.returncode == 0:
            continue
        output = " ".join((result.stdout or "").split() + (result.stderr or "").split())
        if command[:2] == ["sc.exe", "create"] and (
            result.returncode == ERROR_SERVICE_EXISTS or str(ERROR_SERVICE_EXISTS) in output
        ):
            raise ServiceError(
                f"a Windows service named {spec.name!r} is already installed (another forexd "
                f"installation?); remove it first (sc.exe delete {spec.name}) or install "
                "this one under another name"
            )
        raise ServiceError(
            f"installing service {spec.name!r}: `{subprocess.list2cmdline(command)}` failed "
            f"with exit code {result.returncode}: {output or 'no output'}"
        )


def uninstall_service(spec: ServiceSpec, runner: CommandRunner | None = None) -> None:
    """Stop and delete the service; its data directory is left in place.

    Raises:
        ServiceError: not on Windows, or ``sc.exe delete`` failed.
    """
    if runner is None:
        _require_windows("Windows services can only be removed on Windows")
        runner = _run_command
    stop, delete = spec.uninstall_commands()
    runner(stop)  # fails harmlessly when the service is not running
    result = runner(delete)
    if result.returncode != 0:
        output = " ".join((result.stdout or "").split())
        raise ServiceError(
            f"removing service {spec.name!r} failed with exit code {result.returncode}: "
            f"{output or 'no output'}"
        )


def _require_windows(message: str) -> None:
    """Raise :class:`ServiceError` off Windows.

    A function rather than an inline ``sys.platform`` test, so that mypy on Linux still
    type-checks the Windows code that follows.
    """
    if sys.platform != "win32":
        raise ServiceError(message)


def _run_command(command: Sequence[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise ServiceError(f"cannot run {command[0]}: {exc}") from None


def host_service(spec: ServiceSpec, run: Callable[[StopBridge], int]) -> None:
    """Be the service process the SCM started; returns when the service has stopped.

    ``run(bridge)`` runs the daemon to completion and returns its exit code. It must
    call ``bridge.bind(daemon.request_stop)`` from inside its event loop. A non-zero exit
    code, or an exception, stops the service with an error, which triggers the recovery
    actions (restart). Standard output and error go to the rotating log file.

    Raises:
        ServiceError: not on Windows, pywin32 missing, or not started by the SCM.
    """
    _require_windows("`forexd service host` is run by the Windows SCM; use `forexd run`")
    try:
        import servicemanager
    except ImportError:
        raise ServiceError(
            "pywin32 is not installed; install forexd[windows] to run as a service"
        ) from None
    service_class = _service_class(spec, run)
    servicemanager.Initialize()
    servicemanager.PrepareToHostSingle(service_class)
    try:
        servicemanager.StartServiceCtrlDispatcher()
    except Exception as exc:  # pywintypes.error carries winerror
        if getattr(exc, "winerror", None) == ERROR_FAILED_SERVICE_CONTROLLER_CONNECT:
            raise ServiceError(
                "`forexd service host` must be started by the Service Control Manager "
                f"(sc.exe start {spec.name}); in a console use `forexd run`"
            ) from None
        raise


class ServiceExitError(Exception):
    """The daemon returned a non-zero exit code inside the service."""


def _service_class(spec: ServiceSpec, run: Callable[[StopBridge], int]) -> type[Any]:
    """Build the pywin32 ``ServiceFramework`` subclass for ``spec`` (Windows only)."""
    import servicemanager
    import win32service
    import win32serviceutil

    wait_hint_ms = spec.stop_wait_hint_ms()

    class ForexdService(win32serviceutil.ServiceFramework):  # type: ignore[misc]  # pywin32 is untyped
        _svc_name_ = spec.name
        _svc_display_name_ = spec.display_name
        _svc_description_ = spec.description

        def __init__(self, args: Any) -> None:
            super().__init__(args)
            self.bridge = StopBridge()

        def SvcStop(self) -> None:  # noqa: N802 - pywin32 calls it by this name
            self.ReportServiceStatus(win32service.SERVICE_STOP_PENDING, waitHint=wait_hint_ms)
            self.bridge.request("service stop")

        def SvcShutdown(self) -> None:  # noqa: N802 - pywin32 calls it by this name
            self.ReportServiceStatus(win32service.SERVICE_STOP_PENDING, waitHint=wait_hint_ms)
            self.bridge.request("system shutdown")

        def SvcDoRun(self) -> None:  # noqa: N802 - pywin32 calls it by this name
            stream = cast(TextIO, RotatingLogFile(Path(spec.log_file)))
            sys.stdout = sys.stderr = stream
            servicemanager.LogInfoMsg(f"{spec.name}: starting, logs in {spec.log_file}")
            try:
                code = run(self.bridge)
            except BaseException as exc:
                servicemanager.LogErrorMsg(f"{spec.name}: failed: {type(exc).__name__}: {exc}")
                raise
            if code:
                servicemanager.LogErrorMsg(f"{spec.name}: exited with code {code}")
                # An exception makes the framework report SERVICE_STOPPED with an error,
                # so the recovery actions (restart) apply.
                raise ServiceExitError(f"daemon exited with code {code}")
            servicemanager.LogInfoMsg(f"{spec.name}: stopped")

    return ForexdService
