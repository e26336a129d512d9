"""``forexd service ...``: install and run forexd as a systemd or Windows service.

On Linux: ``install [--user] [--print] [--force] [--gpu] [--config F]`` writes (or prints)
the systemd unit for this installation's paths. On Windows: ``install``, ``uninstall``
and ``host`` (what the Service Control Manager starts) via pywin32 (``forexd[windows]``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import PurePath
from typing import Any

from forexd.cli.options import add_json, add_location
from forexd.cli.output import Output
from forexd.cli.parser import bind


def configure(name: str, svc: argparse.ArgumentParser) -> None:
    """Add ``service``'s action and options."""
    svc.add_argument("service_command", choices=("install", "uninstall", "host"))
    svc.add_argument("--user", action="store_true", help="systemd: a `systemctl --user` unit")
    svc.add_argument(
        "--print",
        dest="print_only",
        action="store_true",
        help="print the unit instead of writing it",
    )
    svc.add_argument("--force", action="store_true", help="replace a different existing unit")
    svc.add_argument("--gpu", action="store_true", help="allow NVIDIA devices in the sandbox")
    add_location(svc)
    add_json(svc)
    bind(svc, handle)


def handle(args: argparse.Namespace, out: Output) -> int:
    """Run ``forexd service ...``."""
    if sys.platform == "win32":  # pragma: no cover - Windows only
        return _windows(args)
    from forexd.daemon.unitfile import install_unit
    from forexd.errors import ConfigError

    if args.service_command != "install":
        raise ConfigError(
            f"`forexd service {args.service_command}` is for Windows; on Linux "
            "use systemctl (see docs/service.md)"
        )
    config = args.config.expanduser().absolute() if args.config else None
    result = install_unit(args.user, args.print_only, args.force, config=config, gpu=args.gpu)
    if args.print_only and not out.as_json:
        print(result.text, end="")
        return 0
    data = {
        "action": result.action,
        "path": str(result.path),
        "next_steps": list(result.next_steps),
        "unit": result.text,
    }

    def draw(console: Any) -> None:
        console.print(f"{result.action} {result.path}", markup=False)
        for step in result.next_steps:
            console.print(f"  next: {step}", markup=False)

    return out.result(data, draw)


def _windows(args: argparse.Namespace) -> int:  # pragma: no cover - Windows only
    from forexd.daemon import winservice

    spec = winservice.ServiceSpec.for_this_install(
        data_dir=PurePath(args.data_dir) if args.data_dir else None,
        config=PurePath(args.config) if args.config else None,
    )
    if args.service_command == "install":
        winservice.install_service(spec)
        print(f"installed service {spec.name}; start it with: sc.exe start {spec.name}")
    elif args.service_command == "uninstall":
        winservice.uninstall_service(spec)
        print(f"removed service {spec.name}")
    else:
        winservice.host_service(spec, lambda bridge: _host(args, bridge))
    return 0


def _host(args: argparse.Namespace, bridge: Any) -> int:  # pragma: no cover - Windows only
    import anyio

    from forexd.config import load_settings
    from forexd.daemon.logsetup import configure_logging
    from forexd.daemon.paths import resolve_paths
    from forexd.daemon.runner import event_loop_options
    from forexd.daemon.supervisor import Daemon

    overrides = {"data_dir": args.data_dir, "runtime_dir": args.runtime_dir}
    settings = load_settings(args.config, **overrides)
    configure_logging(settings.log_level, "json")
    daemon = Daemon(settings, resolve_paths(settings), config_path=args.config, overrides=overrides)

    async def main() -> None:
        bridge.bind(daemon.request_stop)  # SCM stop -> the same graceful shutdown
        try:
            await daemon.run()
        finally:
            bridge.unbind()

    anyio.run(main, backend="asyncio", backend_options=event_loop_options())
    return 0
