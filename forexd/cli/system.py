"""``forexd config check``, ``forexd hw`` and ``forexd completion``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from forexd.cli.options import add_json
from forexd.cli.output import Output, Spinner
from forexd.cli.parser import bind

SHELLS = ("bash", "zsh")


def configure(name: str, p: argparse.ArgumentParser) -> None:
    """Add ``config``, ``hw`` or ``completion`` (one module, three small commands)."""
    if name == "config":
        actions = p.add_subparsers(dest="config_command", required=True, metavar="ACTION")
        check = actions.add_parser("check", help="validate a config, print effective settings")
        check.add_argument("file", type=Path, nargs="?", help="omit: defaults + environment")
        add_json(check)
        bind(check, handle_config_check)
    elif name == "hw":
        add_json(p)
        p.add_argument("--config", type=Path, help="TOML config file ([compute] section)")
        bind(p, handle_hw)
    else:
        p.add_argument("shell", choices=SHELLS)
        p.epilog = (
            'activate for this shell:  eval "$(forexd completion bash)"\n'
            "or for every new shell:   forexd completion bash >> ~/.bashrc\n"
            "(zsh: the same with zsh and ~/.zshrc)\n\n" + (p.epilog or "")
        )
        bind(p, handle_completion)


def handle_config_check(args: argparse.Namespace, out: Output) -> int:
    """Validate a config and print the effective settings with resolved paths."""
    from forexd.config import env_snapshot, load_settings
    from forexd.daemon.paths import exposure_warnings, resolve_paths

    settings = load_settings(args.file)
    effective = settings.model_dump(mode="json")
    paths = resolve_paths(settings)
    effective["resolved_paths"] = {
        "data_dir": str(paths.data_dir),
        "runtime_dir": str(paths.runtime_dir),
    }
    origin = args.file or "defaults + environment"
    exposed = exposure_warnings(paths)  # a data/runtime dir other users can enter
    data = {"valid": True, "settings": effective, "env": env_snapshot(), "warnings": exposed}

    def draw(console: Any) -> None:
        console.print(f"{origin}: valid; effective settings:", markup=False)
        for warning in exposed:
            console.print(f"warning: {warning}", markup=False, soft_wrap=True)
        for key, value in _dotted(effective):
            console.print(f"  {key} = {json.dumps(value)}", markup=False, soft_wrap=True)

    return out.result(data, draw)


def _dotted(tree: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """``[("feed.speed", 0.0), ...]``: every leaf of a settings tree under its dotted key."""
    out: list[tuple[str, Any]] = []
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out += _dotted(value, f"{prefix}{key}.")
        else:
            out.append((f"{prefix}{key}", value))
    return out


def handle_hw(args: argparse.Namespace, out: Output) -> int:
    """The hardware found and the compute budget the daemon would use."""
    from forexd.config import load_settings
    from forexd.daemon.budget import budget_from_config
    from forexd.daemon.hardware import detect_hardware
    from forexd.daemon.hwreport import hardware_report

    settings = load_settings(args.config)
    with Spinner(out, "probing CPUs, memory and GPUs (torch loads if installed)…"):
        hw = detect_hardware(import_torch=True)
    budget = budget_from_config(settings.compute, hw, max(1, len(settings.active_symbols)))
    report = hardware_report(hw, budget)
    return out.result(report, lambda console: console.print(hardware_table(report)))


def hardware_table(report: dict[str, Any]) -> Any:
    """``forexd hw``'s table with the figure and value columns never wrapped.

    At 80 columns only the third column (where each figure comes from) wraps, so a value
    such as ``23.5 GiB / 21.8 GiB`` is never split across lines.
    """
    from forexd.daemon.hwreport import render_hardware_table

    table = render_hardware_table(report)
    for column in table.columns[:2]:
        column.no_wrap = True
    return table


def handle_completion(args: argparse.Namespace, out: Output) -> int:
    """Print the completion script for ``args.shell`` (argcomplete's, for ``forexd``)."""
    from argcomplete.shell_integration import shellcode

    print(shellcode(["forexd"], shell=args.shell), end="")
    return 0
