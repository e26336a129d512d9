"""Windows service: the platform-independent parts (spec, commands, stop bridge, log file)."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import threading
from collections.abc import Sequence
from pathlib import Path, PureWindowsPath

import anyio
import pytest

from forexd import __version__
from forexd.daemon import winservice
from forexd.daemon.logfile import RotatingLogFile
from forexd.daemon.winservice import (
    ServiceError,
    ServiceSpec,
    StopBridge,
    default_data_dir,
    host_service,
    install_service,
    uninstall_service,
)

PYTHON = PureWindowsPath(r"C:\Program Files\Python311\python.exe")
DATA = PureWindowsPath(r"C:\ProgramData\forexd")


class FakeRunner:
    """Records commands; answers with a chosen exit code per command verb."""

    def __init__(self, failures: dict[str, tuple[int, str]] | None = None) -> None:
        self.commands: list[list[str]] = []
        self.failures = failures or {}

    def __call__(self, command: Sequence[str]) -> subprocess.CompletedProcess[str]:
        self.commands.append(list(command))
        code, out = self.failures.get(command[1] if len(command) > 1 else "", (0, ""))
        return subprocess.CompletedProcess(list(command), code, out, "")


def test_module_imports_without_pywin32() -> None:
    """Importing the module pulls in no pywin32 module (it must import on Linux)."""
    loaded = [m for m in sys.modules if m.split(".")[0] in {"win32service", "servicemanager"}]
    assert (True, []) == (hasattr(winservice, "ServiceSpec"), loaded)


def test_service_paths_live_under_the_data_dir() -> None:
    """Runtime dir, log dir and log file are derived from the data dir."""
    spec = ServiceSpec(python=PYTHON, data_dir=DATA)
    expected = (DATA / "run", DATA / "logs", DATA / "logs" / "forexd.jsonl")
    assert expected == (spec.runtime_dir, spec.log_dir, spec.log_file)


def test_default_data_dir_is_under_programdata(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine-wide default follows %ProgramData%."""
    monkeypatch.setenv("PROGRAMDATA", r"D:\PD")
    assert PureWindowsPath(r"D:\PD\forexd") == default_data_dir()


def test_command_line_runs_the_interpreter_on_the_host_subcommand() -> None:
    """Outside a virtualenv: python -m forexd service host with the paths, Windows-quoted."""
    spec = ServiceSpec(python=PYTHON, data_dir=DATA, config=DATA / "forexd.toml")
    expected = (
        r'"C:\Program Files\Python311\python.exe" -m forexd service host '
        r"--data-dir C:\ProgramData\forexd --runtime-dir C:\ProgramData\forexd\run "
        r"--config C:\ProgramData\forexd\forexd.toml"
    )
    assert expected == spec.command_line()


def test_virtualenv_command_line_bootstraps_its_site_packages() -> None:
    """In a virtualenv the base interpreter runs with -S and adds the venv's packages."""
    spec = ServiceSpec(python=PYTHON, data_dir=DATA, site_packages=PureWindowsPath(r"C:\v\Lib"))
    argv = spec.argv()
    assert [str(PYTHON), "-S", "-c"] == argv[:3]
    assert [r"C:\v\Lib", "service", "host"] == argv[4:7]


def test_virtualenv_bootstrap_really_starts_forexd(tmp_path: Path) -> None:
    """The -S bootstrap, run here with this venv, reaches forexd's command line."""
    base = getattr(sys, "_base_executable", sys.executable)
    site = sysconfig.get_path("purelib")
    argv = ServiceSpec(python=PureWindowsPath(base), data_dir=DATA, site_packages=Path(site)).argv()
    bootstrap = argv[3]
    result = subprocess.run(
        [base, "-S", "-c", bootstrap, site, "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert (0, f"forexd {__version__}") == (result.returncode, result.stdout.strip())


def test_spec_for_this_install_uses_the_base_interpreter_in_a_venv() -> None:
    """for_this_install picks base interpreter + site-packages inside a virtualenv."""
    spec = ServiceSpec.for_this_install(data_dir=DATA)
    if sys.prefix != sys.base_prefix:
        expected = (str(getattr(sys, "_base_executable", "")), sysconfig.get_path("purelib"))
        assert expected == (str(spec.python), str(spec.site_packages))
    else:
        assert (sys.executable, None) == (str(spec.python), spec.site_packages)


def test_stop_wait_hint_covers_the_shutdown_timeout() -> None:
    """The SCM waits the daemon's shutdown timeout plus a margin."""
    assert 30_000 == ServiceSpec(PYTHON, DATA, shutdown_timeout_s=10.0).stop_wait_hint_ms()


def test_install_commands_create_a_restarting_service_with_a_private_data_dir() -> None:
    """sc.exe create/description/failure/sidtype/config, then icacls on the data dir."""
    spec = ServiceSpec(python=PYTHON, data_dir=DATA)
    expected = [
        ["sc.exe", "create", "forexd", "binPath=", spec.command_line(), "start=", "delayed-auto",
         "DisplayName=", "forexd FX trading daemon"],
        ["sc.exe", "description", "forexd", spec.description],
        ["sc.exe", "failure", "forexd", "reset=", "86400", "actions=",
         "restart/5000/restart/30000/restart/60000"],
        ["sc.exe", "failureflag", "forexd", "1"],
        ["sc.exe", "sidtype", "forexd", "unrestricted"],
        ["sc.exe", "config", "forexd", "obj=", r"NT SERVICE\forexd"],
        ["icacls", str(DATA), "/inheritance:r", "/grant:r", "*S-1-5-18:(OI)(CI)F",
         "*S-1-5-32-544:(OI)(CI)F", r"NT SERVICE\forexd:(OI)(CI)M"],
    ]  # fmt: skip
    assert expected == spec.install_commands()


def test_the_virtual_account_follows_the_service_name() -> None:
    """A service installed under another name gets its own virtual account."""
    spec = ServiceSpec(PYTHON, DATA, name="forexd-paper")
    assert r"NT SERVICE\forexd-paper" == spec.service_account
    assert ["sc.exe", "config", "forexd-paper", "obj=", r"NT SERVICE\forexd-paper"] in (
        spec.install_commands()
    )


def test_local_system_install_skips_the_virtual_account() -> None:
    """LocalSystem needs no account change and no grant of its own."""
    commands = ServiceSpec(PYTHON, DATA, account="LocalSystem").install_commands()
    assert [] == [c for c in commands if c[1] in ("sidtype", "config")]
    assert "LocalSystem" not in " ".join(commands[-1])


def test_install_runs_every_command_in_order() -> None:
    """install_service hands each command to the runner, in order."""
    spec = ServiceSpec(python=PYTHON, data_dir=DATA)
    runner = FakeRunner()
    install_service(spec, runner)
    assert spec.install_commands() == runner.commands


def test_second_install_reports_the_existing_service() -> None:
    """sc.exe's 'service exists' (1073) becomes a clear error, and nothing else runs."""
    runner = FakeRunner({"create": (1073, "[SC] CreateService FAILED 1073: exists")})
    with pytest.raises(ServiceError, match="already installed"):
        install_service(ServiceSpec(python=PYTHON, data_dir=DATA), runner)
    assert 1 == len(runner.commands)


def test_a_failing_install_step_names_the_command() -> None:
    """Any other failure names the command, its exit code and its output."""
    runner = FakeRunner({"failure": (5, "Access is denied.")})
    with pytest.raises(ServiceError, match=r"sc.exe failure forexd .* 5: Access is denied\."):
        install_service(ServiceSpec(python=PYTHON, data_dir=DATA), runner)


def test_uninstall_stops_then_deletes() -> None:
    """A stop failure (not running) is ignored; the delete is what counts."""
    runner = FakeRunner({"stop": (1062, "not started")})
    uninstall_service(ServiceSpec(python=PYTHON, data_dir=DATA), runner)
    assert [["sc.exe", "stop", "forexd"], ["sc.exe", "delete", "forexd"]] == runner.commands


@pytest.mark.skipif(sys.platform == "win32", reason="checks the non-Windows refusal")
def test_off_windows_install_and_host_refuse_clearly() -> None:
    """Without a runner, installing or hosting off Windows is a ServiceError."""
    spec = ServiceSpec(python=PYTHON, data_dir=DATA)
    with pytest.raises(ServiceError, match="only be installed on Windows"):
        install_service(spec)
    with pytest.raises(ServiceError, match="forexd run"):
        host_service(spec, lambda bridge: 0)


@pytest.mark.anyio
async def test_a_stop_from_another_thread_reaches_the_event_loop() -> None:
    """The SCM thread's request runs request_stop on the loop, without waiting for it."""
    bridge = StopBridge()
    stopped = anyio.Event()
    reasons: list[str] = []

    def request_stop(reason: str) -> None:
        reasons.append(reason)
        stopped.set()

    bridge.bind(request_stop)
    thread = threading.Thread(target=bridge.request, args=("service stop",))
    thread.start()
    thread.join(timeout=5)
    with anyio.fail_after(5):
        await stopped.wait()
    assert (["service stop"], False) == (reasons, thread.is_alive())


@pytest.mark.anyio
async def test_a_stop_before_binding_is_delivered_at_bind() -> None:
    """A stop during start-up is not lost; the first reason wins."""
    bridge = StopBridge()
    bridge.request("system shutdown")
    bridge.request("service stop")
    reasons: list[str] = []
    bridge.bind(reasons.append)
    assert (["system shutdown"], "system shutdown", True) == (
        reasons,
        bridge.reason,
        bridge.wait(0),
    )


def test_a_stop_after_the_loop_closed_does_not_raise() -> None:
    """Once the daemon's loop is gone, a late SCM stop is a no-op."""
    bridge = StopBridge()

    async def bind_and_return() -> None:
        bridge.bind(lambda reason: None)

    anyio.run(bind_and_return)
    bridge.request("late stop")
    assert bridge.requested


def test_bind_outside_an_event_loop_is_an_error() -> None:
    """bind must be called on the running loop it delivers to."""
    with pytest.raises(RuntimeError):
        StopBridge().bind(lambda reason: None)


def test_wait_times_out_without_a_request() -> None:
    """wait() returns False when nobody asked for a stop."""
    assert not StopBridge().wait(0.01)


def test_log_file_rotates_by_size_keeping_whole_lines(tmp_path: Path) -> None:
    """Lines go to forexd.jsonl; past max_bytes it rotates to .1, .2 and drops older."""
    log = RotatingLogFile(tmp_path / "logs" / "forexd.jsonl", max_bytes=100, backups=2)
    lines = [f'{{"n": {i:03d}, "pad": "{"x" * 20}"}}\n' for i in range(20)]
    for line in lines:
        log.write(line)
    log.flush()
    log.close()
    files = sorted(p.name for p in (tmp_path / "logs").iterdir())
    kept = "".join(
        (tmp_path / "logs" / name).read_text()
        for name in ("forexd.jsonl.2", "forexd.jsonl.1", "forexd.jsonl")
    )
    assert ["forexd.jsonl", "forexd.jsonl.1", "forexd.jsonl.2"] == files
    assert kept == "".join(lines[-len(kept.splitlines()) :])
    assert all(p.stat().st_size <= 100 for p in (tmp_path / "logs").iterdir())


def test_log_file_appends_across_reopen_and_is_not_a_terminal(tmp_path: Path) -> None:
    """A restarted service appends to the existing file; isatty() is False (JSON logs)."""
    path = tmp_path / "forexd.jsonl"
    for text in ("one\n", "two\n"):
        log = RotatingLogFile(path)
        log.write(text)
        log.close()
    assert ("one\ntwo\n", False) == (path.read_text(), RotatingLogFile(path).isatty())
