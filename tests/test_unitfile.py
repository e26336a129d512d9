"""systemd unit rendering and installation; ``systemd-analyze`` checks where it exists."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from forexd.daemon.unitfile import (
    DEFAULT_SYSTEM_CONFIG,
    DEFAULT_USER_CONFIG,
    EXE_PLACEHOLDER,
    TEMPLATE_NOTE,
    UnitInstallError,
    install_unit,
    render_default_unit,
    render_unit,
)

REPO = Path(__file__).resolve().parents[1]
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None,
    reason="systemd-analyze not installed (Debian/Ubuntu: apt-get install systemd)",
)
MAX_EXPOSURE_X10 = 20  # `systemd-analyze security` exposure 2.0 ("OK") at most


def directives(text: str) -> dict[str, list[str]]:
    """``Key`` → every value it is given, across sections (comments skipped)."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if not line or line.startswith(("#", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key, []).append(value)
    return out


@pytest.fixture
def exe(tmp_path: Path) -> Path:
    """An executable standing in for the installed ``forexd``."""
    path = tmp_path / "bin" / "forexd"
    path.parent.mkdir()
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


TEMPLATES = [(False, "forexd.service.in"), (True, "forexd-user.service.in")]


@pytest.mark.parametrize(("user", "name"), TEMPLATES)
def test_repository_templates_are_the_rendered_defaults(user: bool, name: str) -> None:
    """systemd/*.service.in are exactly the renderer's default templates."""
    assert render_default_unit(user) == (REPO / "systemd" / name).read_text(encoding="utf-8")


@pytest.mark.parametrize(("user", "name"), TEMPLATES)
def test_shipped_template_filled_in_is_what_service_install_writes(
    tmp_path: Path, exe: Path, user: bool, name: str
) -> None:
    """The template hard-codes no executable: filled in, it equals the installed unit."""
    template = (REPO / "systemd" / name).read_text(encoding="utf-8")
    assert "/usr/bin/forexd" not in template
    unit = template.replace(TEMPLATE_NOTE + "\n", "")
    assert 1 == unit.count(EXE_PLACEHOLDER)
    filled = unit.replace(EXE_PLACEHOLDER, str(exe))
    config = DEFAULT_USER_CONFIG if user else DEFAULT_SYSTEM_CONFIG
    installed = install_unit(user, exe=exe, config=config, unit_dir=tmp_path / "units")
    assert installed.text == filled
    assert not list((REPO / "systemd").glob("*.service")), "ship templates, not units"


def test_system_unit_runs_notify_with_watchdog_restart_and_state_directories() -> None:
    """The system unit carries the service contract the daemon relies on."""
    unit = directives(render_default_unit(user=False))
    expected = {
        "Type": ["notify"],
        "NotifyAccess": ["main"],
        "ExecStart": [f"{EXE_PLACEHOLDER} run --config /etc/forexd/forexd.toml"],
        "ExecReload": ["/bin/kill -HUP $MAINPID"],
        "WatchdogSec": ["30"],
        "Restart": ["on-failure"],
        "RestartPreventExitStatus": ["2 4 5"],
        "StartLimitIntervalSec": ["600"],
        "StartLimitBurst": ["5"],
        "TimeoutStopSec": ["30"],
        "KillMode": ["mixed"],
        "User": ["forexd"],
        "StateDirectory": ["forexd"],
        "RuntimeDirectory": ["forexd"],
        "LogsDirectory": ["forexd"],
        "CacheDirectory": ["forexd"],
        "UMask": ["0077"],
        "WantedBy": ["multi-user.target"],
    }
    assert expected == {key: unit.get(key) for key in expected}
    assert [
        "FOREXD_DATA_DIR=%S/forexd",
        "FOREXD_RUNTIME_DIR=%t/forexd",
        "PYTHONUNBUFFERED=1",
        "XDG_CACHE_HOME=%C/forexd",
        "MPLCONFIGDIR=%C/forexd/matplotlib",
    ] == unit["Environment"]


def test_system_unit_is_sandboxed() -> None:
    """The hardening directives are all present with their decided values."""
    unit = directives(render_default_unit(user=False))
    expected = {
        "NoNewPrivileges": ["yes"],
        "CapabilityBoundingSet": [""],
        "ProtectSystem": ["strict"],
        "ProtectHome": ["yes"],
        "PrivateTmp": ["yes"],
        "PrivateDevices": ["yes"],
        "RestrictAddressFamilies": ["AF_UNIX AF_INET AF_INET6"],
        "SystemCallFilter": ["@system-service", "~@privileged"],
        "SystemCallArchitectures": ["native"],
        "ProtectKernelTunables": ["yes"],
        "ProtectKernelModules": ["yes"],
        "ProtectKernelLogs": ["yes"],
        "ProtectControlGroups": ["yes"],
        "RestrictNamespaces": ["yes"],
        "LockPersonality": ["yes"],
        "RestrictRealtime": ["yes"],
        "MemoryDenyWriteExecute": ["no"],
    }
    assert expected == {key: unit.get(key) for key in expected}


def test_user_unit_leaves_out_what_an_unprivileged_manager_cannot_do() -> None:
    """The user unit has no User=, mount-namespace or capability settings."""
    unit = directives(render_default_unit(user=True))
    privileged = ["User", "ProtectSystem", "ProtectHome", "PrivateTmp", "CapabilityBoundingSet"]
    assert [] == [key for key in privileged if key in unit]
    assert ["default.target"] == unit["WantedBy"]
    assert [f"{EXE_PLACEHOLDER} run --config %E/forexd/forexd.toml"] == unit["ExecStart"]


def test_gpu_unit_opens_only_the_nvidia_devices() -> None:
    """gpu=True swaps PrivateDevices for a closed policy allowing char-nvidia*."""
    unit = directives(render_unit(False, Path("/usr/bin/forexd"), None, gpu=True))
    expected = {
        "PrivateDevices": ["no"],
        "DevicePolicy": ["closed"],
        "DeviceAllow": ["char-nvidia* rw"],
        "PrivateUsers": ["no"],
    }
    assert expected == {key: unit.get(key) for key in expected}


def test_deny_write_execute_can_be_switched_on() -> None:
    """Installs without torch can have W^X enforced."""
    text = render_unit(False, Path("/usr/bin/forexd"), None, deny_write_execute=True)
    assert ["yes"] == directives(text)["MemoryDenyWriteExecute"]


def test_literal_paths_are_escaped_and_quoted_for_systemd() -> None:
    """Spaces are quoted, % and $ escaped; a custom data dir is made writable instead."""
    text = render_unit(
        False,
        Path("/opt/fx env/bin/forexd"),
        Path("/etc/forexd/100%.toml"),
        Path("/home/trader/fx data"),
        Path("/run/fx$1"),
    )
    unit = directives(text)
    assert ['"/opt/fx env/bin/forexd" run --config /etc/forexd/100%%.toml'] == unit["ExecStart"]
    assert ['"FOREXD_DATA_DIR=/home/trader/fx data"', "FOREXD_RUNTIME_DIR=/run/fx$1"] == unit[
        "Environment"
    ][:2]
    assert ['"/home/trader/fx data" /run/fx$1'] == unit["ReadWritePaths"]
    assert ["read-only"] == unit["ProtectHome"]
    assert [None, None] == [unit.get("StateDirectory"), unit.get("RuntimeDirectory")]


def test_install_writes_the_unit_and_lists_next_steps(tmp_path: Path, exe: Path) -> None:
    """A first install writes a 0644 unit file and says how to enable it."""
    result = install_unit(False, exe=exe, unit_dir=tmp_path / "units")
    assert "written" == result.action
    assert result.text == result.path.read_text(encoding="utf-8")
    assert 0o644 == stat.S_IMODE(result.path.stat().st_mode)
    assert ("systemctl daemon-reload", "systemctl enable --now forexd") == result.next_steps[-2:]
    assert f"ExecStart={exe} run --config {DEFAULT_SYSTEM_CONFIG}" in result.text


def test_installing_the_same_unit_again_changes_nothing(tmp_path: Path, exe: Path) -> None:
    """Re-installing identical text is a no-op."""
    install_unit(True, exe=exe, unit_dir=tmp_path)
    again = install_unit(True, exe=exe, unit_dir=tmp_path)
    assert "unchanged" == again.action
    assert f"--config {DEFAULT_USER_CONFIG.text}" in again.text


def test_install_refuses_to_overwrite_a_different_unit(tmp_path: Path, exe: Path) -> None:
    """A second installation does not silently replace the first one's unit."""
    first = install_unit(False, exe=exe, unit_dir=tmp_path, config=Path("/etc/a.toml"))
    with pytest.raises(UnitInstallError, match=r"already exists and differs.*--force"):
        install_unit(False, exe=exe, unit_dir=tmp_path, config=Path("/etc/b.toml"))
    assert first.text == first.path.read_text(encoding="utf-8")


def test_install_with_force_replaces_a_different_unit(tmp_path: Path, exe: Path) -> None:
    """force=True overwrites, and says so."""
    install_unit(False, exe=exe, unit_dir=tmp_path, config=Path("/etc/a.toml"))
    second = install_unit(False, force=True, exe=exe, unit_dir=tmp_path)
    assert "replaced" == second.action
    assert second.text == second.path.read_text(encoding="utf-8")


def test_print_only_writes_nothing(tmp_path: Path) -> None:
    """print_only renders without touching the disk, even for a missing executable."""
    result = install_unit(False, print_only=True, exe=tmp_path / "nope", unit_dir=tmp_path / "u")
    assert ("printed", False) == (result.action, (tmp_path / "u").exists())


def test_install_refuses_a_missing_executable(tmp_path: Path) -> None:
    """The unit must point at an executable that exists."""
    with pytest.raises(UnitInstallError, match="does not exist"):
        install_unit(False, exe=tmp_path / "missing", unit_dir=tmp_path)


def test_install_into_an_unusable_directory_is_a_clear_error(tmp_path: Path, exe: Path) -> None:
    """An OS error while writing becomes UnitInstallError naming the path."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(UnitInstallError, match="not-a-dir"):
        install_unit(False, exe=exe, unit_dir=blocker)


def _analyze(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    assert SYSTEMD_ANALYZE is not None
    return subprocess.run(
        [SYSTEMD_ANALYZE, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )


@needs_systemd_analyze
@pytest.mark.parametrize(
    ("user", "gpu"), [(False, False), (False, True), (True, False)], ids=["system", "gpu", "user"]
)
def test_systemd_analyze_verify_accepts_the_unit(
    tmp_path: Path, exe: Path, user: bool, gpu: bool
) -> None:
    """systemd parses every directive without a warning."""
    config = DEFAULT_USER_CONFIG if user else DEFAULT_SYSTEM_CONFIG
    unit = tmp_path / "forexd.service"
    unit.write_text(render_unit(user, exe, config, gpu=gpu), encoding="utf-8")
    scope = ["--user"] if user else []
    result = _analyze(
        *scope, "verify", "--man=no", str(unit), env={"XDG_RUNTIME_DIR": str(tmp_path)}
    )
    assert (0, "", "") == (result.returncode, result.stdout, result.stderr)


@needs_systemd_analyze
def test_systemd_analyze_verify_catches_a_bad_directive(tmp_path: Path, exe: Path) -> None:
    """The verify check above can fail: an unknown key is reported."""
    unit = tmp_path / "forexd.service"
    unit.write_text(render_unit(False, exe, None).replace("UMask=0077", "UMask=0077\nBogus=1"))
    result = _analyze("verify", "--man=no", str(unit))
    assert "Unknown key" in result.stderr


@needs_systemd_analyze
@pytest.mark.parametrize("gpu", [False, True], ids=["cpu", "gpu"])
def test_system_unit_exposure_stays_ok(tmp_path: Path, exe: Path, gpu: bool) -> None:
    """`systemd-analyze security --offline` rates the system unit 2.0 or better."""
    unit = tmp_path / "forexd.service"
    unit.write_text(render_unit(False, exe, DEFAULT_SYSTEM_CONFIG, gpu=gpu), encoding="utf-8")
    result = _analyze("security", "--offline=yes", f"--threshold={MAX_EXPOSURE_X10}", str(unit))
    if "--offline" in result.stderr and "unrecognized" in result.stderr:
        pytest.skip("this systemd-analyze has no --offline (needs systemd >= 250)")
    assert 0 == result.returncode, result.stdout[-500:] + result.stderr
