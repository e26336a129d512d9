"""systemd unit files for forexd: render one for this install's paths, and install it.

The templates in ``systemd/*.service.in`` are this renderer's defaults with ``@FOREXD_EXE@``
where the executable goes (a test keeps them equal), so the hardening is written once,
here, with the reasons next to it. No unit with a guessed path is shipped: where pip puts
``forexd`` (a venv, ``~/.local/bin``, ``/usr/local/bin``) is only known at install time,
so ``forexd service install`` renders the unit for the running installation.

Choices made (docs/service.md has the ``systemd-analyze security`` result):

- ``User=forexd`` (a static system user) over ``DynamicUser=yes``. A dynamic uid would
  drop the user creation step, but the control socket is 0600 and checks the peer's
  uid, so an operator could then only run ``forexd ctl`` as root; a stable uid also owns
  the data directory across reinstalls and can read a ``root:forexd 0640`` config that
  holds the broker token.
- ``MemoryDenyWriteExecute=no``. Measured with the kernel's W^X switch
  (``PR_SET_MDWE``, what systemd ≥ 254 applies): numpy and scikit-learn run, but
  torch's oneDNN kernels (Conv2d, LSTM) are JIT-compiled and fail with "could not
  create a primitive" — mid-training, not at start. ``deny_write_execute=True`` turns it
  on for installs without the torch extra.
- ``PrivateDevices=yes`` hides GPUs; ``gpu=True`` renders ``PrivateDevices=no`` with a
  closed device policy that allows only ``char-nvidia*`` (and drops ``PrivateUsers``,
  which would map the device nodes' groups to nobody).
- The user unit keeps only the protections that work in an unprivileged user manager
  (those enforced by seccomp and ``NoNewPrivileges``); mount-namespace options there
  need unprivileged user namespaces and fail the start where those are disabled.
- Exit codes 2, 4 and 5 (bad configuration, data directory held by another daemon,
  unusable risk state) are ``RestartPreventExitStatus``: a restart cannot fix them.

Why it is over 400 lines: it has one responsibility, the unit file, and its length is
the rendering of about forty directives with the reason for each beside it, plus the
install step that must agree with them (paths, quoting, the service user). Splitting
render from install would put the two halves of one contract in two files.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeAlias

from forexd.errors import ForexdError
from forexd.fsutil import write_atomic

SERVICE_NAME = "forexd"
UNIT_NAME = f"{SERVICE_NAME}.service"
SERVICE_USER = "forexd"
DEFAULT_SYSTEM_CONFIG = Path("/etc/forexd/forexd.toml")
SYSTEM_UNIT_DIR = Path("/etc/systemd/system")
UNIT_FILE_MODE = 0o644

WATCHDOG_SEC = 30
RESTART_SEC = 5
START_LIMIT_INTERVAL_SEC = 600  # guessed: 5 crashes in 10 min is a crash loop, not bad luck
START_LIMIT_BURST = 5
TIMEOUT_START_SEC = 120  # start-up loads history and reconciles with the broker
TIMEOUT_STOP_SEC = 30  # shutdown_timeout_s (10 s by default) plus margin
NO_RESTART_EXIT_CODES = (2, 4, 5)  # see forexd.errors: config, already running, risk state

_HOME_PREFIXES = ("/home/", "/root/", "/run/user/")


@dataclass(frozen=True, slots=True)
class Specified:
    """Text written into the unit verbatim, so systemd specifiers (``%S``, ``%E``) expand.

    A :class:`~pathlib.Path` is a literal path instead: its ``%`` and ``$`` are escaped.
    """

    text: str


DEFAULT_DATA_DIR = Specified("%S/forexd")  # StateDirectory=: /var/lib/forexd for root
DEFAULT_RUNTIME_DIR = Specified("%t/forexd")  # RuntimeDirectory=: /run/forexd for root
DEFAULT_USER_CONFIG = Specified("%E/forexd/forexd.toml")  # ~/.config/forexd/forexd.toml

UnitPath: TypeAlias = Path | Specified

EXE_PLACEHOLDER = "@FOREXD_EXE@"
TEMPLATE_NOTE = (
    f"# Template: `forexd service install` writes it with this installation's executable "
    f"for {EXE_PLACEHOLDER}."
)


class UnitInstallError(ForexdError):
    """A unit file could not be installed (exists and differs, no permission, no exe)."""


@dataclass(frozen=True, slots=True)
class UnitInstall:
    """What :func:`install_unit` did.

    Attributes:
        path: where the unit file is (or would be) installed.
        text: the rendered unit.
        action: ``printed`` (nothing written), ``written`` (new file), ``unchanged``
            (an identical file was already there) or ``replaced`` (a different one was
            overwritten, with ``force``).
        next_steps: shell commands the operator runs next, in order.
    """

    path: Path
    text: str
    action: Literal["printed", "written", "unchanged", "replaced"]
    next_steps: tuple[str, ...]


# -- rendering ----------------------------------------------------------------------------


def render_unit(
    user: bool,
    exe: UnitPath,
    config: UnitPath | None,
    data_dir: UnitPath = DEFAULT_DATA_DIR,
    runtime_dir: UnitPath = DEFAULT_RUNTIME_DIR,
    *,
    gpu: bool = False,
    deny_write_execute: bool = False,
    service_user: str = SERVICE_USER,
) -> str:
    """Render the unit file text.

    Args:
        user: a ``systemctl --user`` unit instead of a system one.
        exe: the ``forexd`` executable.
        config: the TOML config passed as ``--config``; ``None`` runs on defaults and
            ``FOREXD_*`` environment variables only.
        data_dir: ``FOREXD_DATA_DIR``; the default lets systemd create and own it
            (``StateDirectory=``), any other path is made writable in the sandbox.
        runtime_dir: ``FOREXD_RUNTIME_DIR`` (socket, pid file), same rules.
        gpu: allow NVIDIA devices (system unit only; a user unit sees them anyway).
        deny_write_execute: ``MemoryDenyWriteExecute=yes`` (breaks torch, see module note).
        service_user: ``User=``/``Group=`` of a system unit.
    """
    exec_args = [_exec_arg(exe), "run"]
    if config is not None:
        exec_args += ["--config", _exec_arg(config)]
    unit = [
        "Description=forexd FX trading daemon" + (" (user service)" if user else ""),
        *([] if user else ["Wants=network-online.target", "After=network-online.target"]),
        f"# At most {START_LIMIT_BURST} starts in {START_LIMIT_INTERVAL_SEC // 60} min; "
        "then it stays failed for a human to look.",
        f"StartLimitIntervalSec={START_LIMIT_INTERVAL_SEC}",
        f"StartLimitBurst={START_LIMIT_BURST}",
    ]
    service = [
        "Type=notify",
        "NotifyAccess=main",
        "ExecStart=" + " ".join(exec_args),
        "# SIGHUP asks the daemon to reload: it answers RELOADING=1, then READY=1.",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "# Pinged every WatchdogSec/2, and only while the event loop is responsive.",
        f"WatchdogSec={WATCHDOG_SEC}",
        "Restart=on-failure",
        f"RestartSec={RESTART_SEC}",
        "# 2 bad config, 4 data dir held by another daemon, 5 risk state unusable.",
        "RestartPreventExitStatus=" + " ".join(str(c) for c in NO_RESTART_EXIT_CODES),
        f"TimeoutStartSec={TIMEOUT_START_SEC}",
        "# SIGTERM to the main process; whatever is left gets SIGKILL at the timeout.",
        f"TimeoutStopSec={TIMEOUT_STOP_SEC}",
        "KillMode=mixed",
        *([] if user else [f"User={service_user}", f"Group={service_user}"]),
        _environment("FOREXD_DATA_DIR", data_dir),
        _environment("FOREXD_RUNTIME_DIR", runtime_dir),
        "Environment=PYTHONUNBUFFERED=1",
        *([] if user else _cache_environment()),
        *_directories(data_dir, runtime_dir),
        "UMask=0077",
        f"SyslogIdentifier={SERVICE_NAME}",
        "",
        *(_user_sandbox() if user else _system_sandbox(exe, config, data_dir, runtime_dir, gpu)),
        "# W^X off: torch's JIT-compiled oneDNN kernels fail under it (see unitfile.py).",
        f"MemoryDenyWriteExecute={_yes(deny_write_execute)}",
        "SystemCallArchitectures=native",
        "SystemCallFilter=@system-service",
        "SystemCallFilter=~@privileged",
        "SystemCallErrorNumber=EPERM",
    ]
    install = ["WantedBy=" + ("default.target" if user else "multi-user.target")]
    header = [
        f"# forexd {'user' if user else 'system'} service, rendered by forexd/daemon/unitfile.py.",
        "# Change the renderer, not a copy; local tweaks belong in "
        f"`systemctl{' --user' if user else ''} edit {SERVICE_NAME}`.",
        "# Installing and running it: docs/service.md.",
    ]
    sections = [("Unit", unit), ("Service", service), ("Install", install)]
    body = "\n\n".join(f"[{name}]\n" + "\n".join(lines) for name, lines in sections)
    return "\n".join(header) + "\n\n" + body + "\n"


def render_default_unit(user: bool) -> str:
    """The template shipped in ``systemd/`` (``forexd.service.in``, ``forexd-user.service.in``).

    It is the default unit with :data:`EXE_PLACEHOLDER` for the executable and a note saying
    so: replacing the placeholder and dropping the note gives what ``service install``
    writes for the default paths.
    """
    config = DEFAULT_USER_CONFIG if user else DEFAULT_SYSTEM_CONFIG
    header, _, body = render_unit(user, Specified(EXE_PLACEHOLDER), config).partition("\n\n")
    return f"{header}\n{TEMPLATE_NOTE}\n\n{body}"


def _system_sandbox(
    exe: UnitPath, config: UnitPath | None, data_dir: UnitPath, runtime_dir: UnitPath, gpu: bool
) -> list[str]:
    in_home = any(_under_home(p) for p in (exe, config, data_dir, runtime_dir) if p is not None)
    writable = [_path_arg(p) for p in (data_dir, runtime_dir) if isinstance(p, Path)]
    lines = [
        "# Sandbox; `systemd-analyze security forexd` scores it (docs/service.md).",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
        "AmbientCapabilities=",
        "ProtectSystem=strict",
        f"ProtectHome={'read-only' if in_home else 'yes'}",
        *([f"ReadWritePaths={' '.join(writable)}"] if writable else []),
        "PrivateTmp=yes",
        "PrivateMounts=yes",
    ]
    if gpu:
        lines += [
            "# GPU: only the NVIDIA device groups; PrivateUsers would hide their owners.",
            "PrivateDevices=no",
            "DevicePolicy=closed",
            "DeviceAllow=char-nvidia* rw",
            "PrivateUsers=no",
        ]
    else:
        lines += [
            "# For CUDA: PrivateDevices=no, DevicePolicy=closed, DeviceAllow=char-nvidia* rw,",
            "# PrivateUsers=no (what `gpu=True` in the renderer writes).",
            "PrivateDevices=yes",
            "PrivateUsers=yes",
        ]
    return [
        *lines,
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "ProtectClock=yes",
        "ProtectHostname=yes",
        "ProtectProc=invisible",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "RestrictNamespaces=yes",
        "RestrictRealtime=yes",
        "RestrictSUIDSGID=yes",
        "LockPersonality=yes",
        "RemoveIPC=yes",
    ]


def _user_sandbox() -> list[str]:
    return [
        "# A user manager cannot build mount namespaces without unprivileged user",
        "# namespaces: only the seccomp-enforced protections are used here.",
        "NoNewPrivileges=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "RestrictNamespaces=yes",
        "RestrictRealtime=yes",
        "RestrictSUIDSGID=yes",
        "LockPersonality=yes",
    ]


def _cache_environment() -> list[str]:
    return [
        "# Caches (torch, matplotlib) go to CacheDirectory=, not to a home the sandbox hides.",
        "Environment=XDG_CACHE_HOME=%C/forexd",
        "Environment=MPLCONFIGDIR=%C/forexd/matplotlib",
        f"CacheDirectory={SERVICE_NAME}",
        "CacheDirectoryMode=0700",
    ]


def _directories(data_dir: UnitPath, runtime_dir: UnitPath) -> list[str]:
    lines = []
    if data_dir == DEFAULT_DATA_DIR:
        lines += [f"StateDirectory={SERVICE_NAME}", "StateDirectoryMode=0700"]
    if runtime_dir == DEFAULT_RUNTIME_DIR:
        lines += [f"RuntimeDirectory={SERVICE_NAME}", "RuntimeDirectoryMode=0700"]
    return [*lines, f"LogsDirectory={SERVICE_NAME}", "LogsDirectoryMode=0700"]


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _under_home(path: UnitPath) -> bool:
    if isinstance(path, Specified):
        return "%h" in path.text or path.text.startswith(_HOME_PREFIXES)
    return str(path).startswith(_HOME_PREFIXES)


_NEEDS_QUOTES = re.compile(r"[\s\"'\\;]")


def _exec_arg(value: UnitPath) -> str:
    """One ``ExecStart=`` word: a literal's ``%`` and ``$`` escaped, quoted when needed."""
    if isinstance(value, Specified):
        return value.text
    text = str(value).replace("%", "%%").replace("$", "$$")
    return _quote(text) if _NEEDS_QUOTES.search(text) else text


def _path_arg(path: Path) -> str:
    """One word of a path list (``ReadWritePaths=``): no ``$`` expansion there."""
    text = str(path).replace("%", "%%")
    return _quote(text) if _NEEDS_QUOTES.search(text) else text


def _environment(name: str, value: UnitPath) -> str:
    text = value.text if isinstance(value, Specified) else str(value).replace("%", "%%")
    assignment = f"{name}={text}"
    if _NEEDS_QUOTES.search(assignment):
        return f"Environment={_quote(assignment)}"
    return f"Environment={assignment}"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# -- installing ---------------------------------------------------------------------------


def user_unit_dir() -> Path:
    """``$XDG_CONFIG_HOME/systemd/user`` (``~/.config/systemd/user`` by default)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "systemd" / "user"


def default_executable() -> Path:
    """The ``forexd`` launcher of this installation.

    The one beside the running interpreter wins (a virtualenv's ``bin/``), then ``PATH``.
    It is not resolved: a venv's ``python`` symlink must keep pointing into the venv.

    Raises:
        UnitInstallError: no ``forexd`` executable was found.
    """
    sibling = Path(sys.executable).parent / SERVICE_NAME
    if sibling.is_file() and os.access(sibling, os.X_OK):
        return sibling.absolute()
    found = shutil.which(SERVICE_NAME)
    if found:
        return Path(found).absolute()
    raise UnitInstallError(
        f"cannot find the `{SERVICE_NAME}` executable beside {sys.executable} or on PATH; "
        "pass the executable's path explicitly (--exe)"
    )


def install_unit(
    user: bool,
    print_only: bool = False,
    force: bool = False,
    *,
    exe: Path | None = None,
    config: UnitPath | None = None,
    data_dir: UnitPath = DEFAULT_DATA_DIR,
    runtime_dir: UnitPath = DEFAULT_RUNTIME_DIR,
    gpu: bool = False,
    deny_write_execute: bool = False,
    unit_dir: Path | None = None,
) -> UnitInstall:
    """Render the unit for this installation and write it where systemd looks.

    Writing an identical unit again is a no-op; an existing *different* unit (another
    forexd installation, or hand edits) is replaced only with ``force``.

    Args:
        user: install for ``systemctl --user`` (``~/.config/systemd/user``) instead of
            the system (``/etc/systemd/system``, needs root).
        print_only: render and return the text, write nothing.
        force: replace an existing unit that differs.
        exe: the ``forexd`` executable; found with :func:`default_executable` if omitted.
        config: ``--config`` for the service; ``/etc/forexd/forexd.toml`` (system) or
            ``%E/forexd/forexd.toml`` (user) if omitted. A relative path is made absolute.
        data_dir: see :func:`render_unit`.
        runtime_dir: see :func:`render_unit`.
        gpu: see :func:`render_unit`.
        deny_write_execute: see :func:`render_unit`.
        unit_dir: install here instead of the standard directory (tests, packaging).

    Raises:
        UnitInstallError: the unit exists and differs (without ``force``), the directory
            is not writable, or no executable was found.
    """
    exe_path = (exe or default_executable()).absolute()
    if config is None:
        config = DEFAULT_USER_CONFIG if user else DEFAULT_SYSTEM_CONFIG
    elif isinstance(config, Path):
        config = config.absolute()
    text = render_unit(
        user,
        exe_path,
        config,
        data_dir,
        runtime_dir,
        gpu=gpu,
        deny_write_execute=deny_write_execute,
    )
    path = (unit_dir or (user_unit_dir() if user else SYSTEM_UNIT_DIR)) / UNIT_NAME
    steps = _next_steps(user, config)
    if print_only:
        return UnitInstall(path, text, "printed", steps)
    if not exe_path.is_file():
        raise UnitInstallError(
            f"executable {exe_path} does not exist; install forexd first or pass --exe"
        )
    existing = _read_existing(path)
    if existing == text:
        return UnitInstall(path, text, "unchanged", steps)
    if existing is not None and not force:
        scope = " --user" if user else ""
        raise UnitInstallError(
            f"{path} already exists and differs from the unit this installation would "
            f"write (another forexd installation, or local edits). Compare it with the "
            f"output of `forexd service install{scope} --print`; keep local changes in "
            f"`systemctl{scope} edit {SERVICE_NAME}` drop-ins; pass --force to replace it"
        )
    _write_atomically(path, text)
    return UnitInstall(path, text, "written" if existing is None else "replaced", steps)


def _read_existing(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise UnitInstallError(f"cannot read the existing unit {path}: {exc}") from None


def _write_atomically(path: Path, text: str) -> None:
    try:
        write_atomic(path, text.encode("utf-8"), mode=UNIT_FILE_MODE)
    except PermissionError:
        raise UnitInstallError(
            f"no permission to write {path}; run as root (sudo), or install a user service (--user)"
        ) from None
    except OSError as exc:
        raise UnitInstallError(f"cannot write {path}: {exc}") from None


def _next_steps(user: bool, config: UnitPath) -> tuple[str, ...]:
    ctl = "systemctl --user" if user else "systemctl"
    steps: list[str] = []
    if not user and not _user_exists(SERVICE_USER):
        steps.append(
            f"useradd --system --home-dir /var/lib/{SERVICE_NAME} "
            f"--shell /usr/sbin/nologin {SERVICE_USER}"
        )
    if isinstance(config, Path) and not config.exists():
        steps.append(f"create the configuration {config} (`forexd config check` validates it)")
    steps += [f"{ctl} daemon-reload", f"{ctl} enable --now {SERVICE_NAME}"]
    if user:
        steps.append("loginctl enable-linger  # keep it running while you are logged out")
    return tuple(steps)


def _user_exists(name: str) -> bool:
    if sys.platform == "win32":  # pragma: no cover - systemd units are for Linux
        return False
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
