"""Hot reload (SIGHUP, ``ctl reload``): apply a changed config without a restart.

The new file is loaded and validated completely, and every new strategy is built, before
anything changes; any error rejects the whole reload and the old configuration stays.
What can change live: symbols added (a new actor starts) or removed (its actor stops; the
position is kept, never closed behind the operator's back), strategy and parameters (the
actor keeps its bars and position), risk limits, actor restart policy, replay speed, log
level. What needs a restart (data or runtime dir, broker, feed source, control transport,
compute budget) is refused with the key named, so nothing half-applies.

A changed strategy reaches its actor as a message (the actor owns its state); SIGHUP and
``ctl reload`` both come through :meth:`~forexd.daemon.supervisor.Daemon.reload`.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import anyio

from forexd.config import Settings, load_settings
from forexd.daemon.paths import resolve_paths
from forexd.errors import ConfigError
from forexd.feeds.base import is_replay
from forexd.strategies import build_strategy

if TYPE_CHECKING:
    from forexd.daemon.supervisor import Daemon

RESTART_ONLY = ("broker", "control", "compute", "runtime_dir", "data_dir")
RESTART_ONLY_FEED = ("kind", "source", "format", "timeframe", "start", "end")


def _restart_only_changes(old: Settings, new: Settings) -> list[str]:
    changed = [k for k in RESTART_ONLY if getattr(old, k) != getattr(new, k)]
    changed += [
        f"feed.{k}" for k in RESTART_ONLY_FEED if getattr(old.feed, k) != getattr(new.feed, k)
    ]
    return changed


async def apply_reload(daemon: Daemon) -> dict[str, Any]:
    """Validate the new configuration, then apply it; see the module note.

    Raises:
        ConfigError: invalid file, or a change that needs a restart.
    """
    old = daemon.settings
    # Reading and parsing the file blocks: off the loop (trading goes on meanwhile).
    read = functools.partial(load_settings, daemon.config_path, **daemon.overrides)
    new = await anyio.to_thread.run_sync(read)
    if resolve_paths(new) != daemon.paths:
        raise ConfigError("reload cannot move the data or runtime directory; restart instead")
    blocked = _restart_only_changes(old, new)
    if blocked:
        raise ConfigError(
            f"reload rejected: {', '.join(blocked)} changed, which needs a "
            "restart; the running configuration is unchanged"
        )
    old_syms = {s.symbol: s for s in old.active_symbols}
    new_syms = {s.symbol: s for s in new.active_symbols}
    # Build every changed strategy first: a bad parameter must reject the whole reload.
    rebuilt = {
        sym: build_strategy(cfg.strategy, cfg.params, where=f"symbols ({sym})")
        for sym, cfg in new_syms.items()
        if sym in old_syms
        and (cfg.strategy, cfg.params) != (old_syms[sym].strategy, old_syms[sym].params)
    }
    added = [s for s in new_syms if s not in old_syms]
    if added and not is_replay(daemon.feed):
        raise ConfigError(
            f"reload rejected: adding {', '.join(added)} to a live feed needs "
            "a restart; the running configuration is unchanged"
        )
    # Load the new symbols' bars first too: a missing or bad file rejects the whole reload
    # (load_frame's own checks), instead of failing after other changes were applied.
    frames = await daemon.load_frames([new_syms[sym] for sym in added])  # worker thread

    daemon.settings = new
    for sym, strategy in rebuilt.items():
        # A message to the actor, applied between two bars; an ML symbol keeps its trainer
        # and champion (the actor hands the champion to the new strategy object).
        await daemon.actors[sym].replace_strategy(strategy, new_syms[sym].params)
    removed = [s for s in old_syms if s not in new_syms and s in daemon.actors]
    for sym in removed:
        daemon.stop_actor(sym)
    for sym in added:
        daemon.feed.frames[sym] = frames[sym]
        await daemon.start_actor(new_syms[sym])
    if new.risk != old.risk:
        daemon.risk.update_limits(new.risk)
    if is_replay(daemon.feed):
        daemon.feed.speed = new.feed.speed
        daemon.feed.max_sleep_s = new.feed.max_sleep_s
    result = {
        "added": added,
        "removed": removed,
        "strategies_changed": sorted(rebuilt),
        "risk_limits_changed": new.risk != old.risk,
    }
    daemon.log.info("reloaded", **result)
    return result
