"""``forexd run``: the daemon in the foreground until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse

from forexd.cli.options import add_location
from forexd.cli.output import Output
from forexd.cli.parser import bind


def configure(name: str, p: argparse.ArgumentParser) -> None:
    """Add ``run``'s options."""
    add_location(p)
    p.add_argument("--speed", type=float, help="replay speed: 0 = max, N = N× real time")
    p.add_argument("--log-format", choices=("auto", "json", "console"))
    p.add_argument(
        "--exit-when-done",
        action="store_true",
        help="shut down cleanly once every replay feed is exhausted",
    )
    bind(p, handle)


def handle(args: argparse.Namespace, out: Output) -> int:
    """Configure logging once, here at the entry point, and run the daemon."""
    from forexd.config import load_settings
    from forexd.daemon.logfile import RotatingLogFile
    from forexd.daemon.logsetup import configure_logging
    from forexd.daemon.paths import resolve_paths
    from forexd.daemon.redact import RedactSecrets
    from forexd.daemon.runner import run_daemon

    overrides = {
        "data_dir": args.data_dir,
        "runtime_dir": args.runtime_dir,
        "log_format": args.log_format,
        "feed.speed": args.speed,
    }
    settings = load_settings(args.config, **overrides)
    paths = resolve_paths(settings)
    # umask 077 and 0700 dirs before anything is created (docs/risk.md, "Private by default")
    from forexd.daemon.paths import make_private

    exposed = make_private(paths)
    secrets = [settings.broker.oanda.token.get_secret_value(), settings.broker.oanda.account_id]
    log_file = None
    if settings.log_file is not None:
        log_file = RotatingLogFile(
            settings.log_file, int(settings.log_file_max_mb * 2**20), settings.log_file_backups
        )
    configure_logging(
        settings.log_level,
        settings.log_format,
        extra_processors=[RedactSecrets(s for s in secrets if s)],
        log_file=log_file,
    )
    from forexd.daemon.logsetup import get_logger

    for warning in exposed:
        get_logger("paths").warning("data_dir_not_private", detail=warning)
    run_daemon(
        settings,
        paths,
        exit_when_done=args.exit_when_done,
        config_path=args.config,
        overrides=overrides,
    )
    return 0
