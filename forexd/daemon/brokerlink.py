"""Wiring of the live OANDA broker into the daemon: installation id, broker, guard.

Kept out of the supervisor so that it stays a top-down read, and imported lazily so a
paper or replay daemon never loads httpx.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anyio.abc import TaskGroup

from forexd.daemon.logsetup import get_logger

if TYPE_CHECKING:
    from forexd.brokers.base import Broker
    from forexd.daemon.brokerguard import BrokerGuard
    from forexd.daemon.supervisor import Daemon

INSTALLATION_FILE = "installation_id"


def installation_id(data_dir: Path) -> str:
    """This data dir's installation id: read, or created once (6 random hex digits).

    It is part of every OANDA client id, so ids never repeat on one account across
    installations or data-dir resets.

    Raises:
        BrokerError: the file exists but does not hold a valid id.
    """
    from forexd.brokers.oanda import check_installation_id

    path = data_dir / INSTALLATION_FILE
    if path.exists():
        return check_installation_id(path.read_text(encoding="utf-8").strip())
    value = secrets.token_hex(3)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(value + "\n", encoding="utf-8")
    tmp.replace(path)
    return value


async def make_oanda_broker(daemon: Daemon, tg: TaskGroup) -> Broker:
    """Build, verify and start the OANDA broker (its account refresh runs in ``tg``).

    Raises:
        BrokerError: the token or account is refused at start-up (exit code 2).
    """
    from forexd.brokers.oanda import OandaBroker

    ocfg = daemon.settings.broker.oanda
    install = installation_id(daemon.paths.data_dir)
    broker = OandaBroker(
        daemon._oanda_api(),
        installation_id=install,
        account_refresh_s=ocfg.account_refresh_s,
        absent_after_s=ocfg.absent_after_s,
    )
    await broker.verify()  # token, account and currency before anything trades
    get_logger("oanda_broker").info("oanda_installation", installation_id=install)
    await tg.start(broker.run)
    return broker


async def brokerguard_for(
    daemon: Daemon, tg: TaskGroup, mismatches: Mapping[str, tuple[int, int]]
) -> BrokerGuard | None:
    """The guard of an OANDA daemon (``None`` for paper), drift loop started in ``tg``."""
    if daemon.settings.broker.kind != "oanda":
        return None  # and httpx stays unimported
    from forexd.brokers.oanda import OandaBroker

    broker: Any = daemon.broker
    if not isinstance(broker, OandaBroker):
        return None
    from forexd.daemon.brokerguard import BrokerGuard
    from forexd.feeds.oanda import OandaFeed

    ocfg = daemon.settings.broker.oanda
    feed = getattr(daemon, "feed", None)
    guard = BrokerGuard(
        broker,
        feed if isinstance(feed, OandaFeed) else None,
        lambda: daemon.actors,
        daemon.writer,
        get_logger("brokerguard"),
        inner=daemon.risk,
        policy=ocfg.drift_policy,
        drift_check_s=ocfg.drift_check_s,
        installation_id=broker.installation_id,
    )
    await guard.start_up_mismatches(mismatches)
    await daemon.writer.flush()
    await tg.start(guard.run)
    return guard
