"""Reload in process: SIGHUP and ctl reload share one guarded path; ML symbols keep trading."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import anyio
import pytest

from forexd.daemon import supervisor
from tests._inproc import call, make_daemon, wait_until, write_daemon_config
from tests._mlsupport import SMALL_WF, bundled_frame

pytestmark = pytest.mark.anyio

SMA = """
[[symbols]]
symbol = "EURUSD"
params = { fast = 3, slow = 7, units = {units} }
"""

ML = """
[[symbols]]
symbol = "EURUSD"
strategy = "ml"

[symbols.params]
lookback_candles = 600
retrain_every_bars = 600
entry_threshold = 0.01
exit_threshold = 0.01
units = {units}
walk_forward = {{ n_folds = 3, min_train_rows = 60 }}
"""
assert SMALL_WF["n_folds"] == 3  # the config above spells out the small walk-forward


def _sma(units: int) -> str:
    return SMA.replace("{units}", str(units))


async def test_sighup_reload_that_raises_anything_is_logged_and_the_daemon_keeps_running(
    short_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reload failing with a non-forexd error on SIGHUP does not take the daemon down."""

    async def broken(daemon: Any) -> dict[str, Any]:
        raise RuntimeError("boom in reload")

    monkeypatch.setattr(supervisor, "apply_reload", broken)
    daemon = await anyio.to_thread.run_sync(make_daemon, write_daemon_config(short_tmp, _sma(1000)))
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(daemon.run)
            await wait_until(lambda: daemon.state == "running", "daemon ready")
            os.kill(os.getpid(), signal.SIGHUP)
            await wait_until(lambda: daemon.reloads_failed == 1, "reload failure counted")
            assert "running" == daemon.state
            assert (await call(daemon, "ping"))["pong"]
            daemon.request_stop("test")
    assert "test" == daemon.stop_reason


async def test_sigterm_during_a_slow_reload_stops_the_daemon(
    short_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM is acted on while a SIGHUP reload is still running."""
    entered = anyio.Event()

    async def slow(daemon: Any) -> dict[str, Any]:
        entered.set()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    monkeypatch.setattr(supervisor, "apply_reload", slow)
    daemon = await anyio.to_thread.run_sync(make_daemon, write_daemon_config(short_tmp, _sma(1000)))
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(daemon.run)
            await wait_until(lambda: daemon.state == "running", "daemon ready")
            os.kill(os.getpid(), signal.SIGHUP)
            await entered.wait()
            os.kill(os.getpid(), signal.SIGTERM)
    assert "SIGTERM" == daemon.stop_reason


async def test_ml_symbol_keeps_trading_with_its_champion_and_retraining_after_reload(
    short_tmp: Path,
) -> None:
    """After ctl reload changes an ml symbol's params it trades with its champion at the new
    size, and a retrain promotes into the strategy that now trades."""
    config = write_daemon_config(short_tmp, ML.format(units=1000))
    daemon = await anyio.to_thread.run_sync(make_daemon, config)
    frame = await anyio.to_thread.run_sync(bundled_frame)
    with anyio.fail_after(240):
        async with anyio.create_task_group() as tg:
            tg.start_soon(daemon.run)
            await wait_until(lambda: daemon.state == "running", "daemon ready")
            feed: Any = daemon.feed
            actor = daemon.actors["EURUSD"]

            def training() -> dict[str, Any]:
                stats = actor.stats().training
                assert stats is not None
                return stats

            feed.push("EURUSD", frame.iloc[:620])
            await wait_until(lambda: training()["cycles"] == 1 and training()["state"] == "idle",
                             "first cycle")  # fmt: skip
            first = training()["champion"]
            assert first is not None, training()
            await wait_until(  # the hand-over reaches the strategy between bars (see below)
                lambda: (
                    actor.core.strategy.champion is not None
                    and actor.core.strategy.champion.model_id == first["model_id"]
                ),
                "the first champion installed",
            )
            feed.push("EURUSD", frame.iloc[620:630])
            await wait_until(lambda: actor.stats().bars_seen == 630, "630 bars")
            await wait_until(lambda: abs(actor.position.units) == 1000, "a 1,000 position")

            config.write_text(config.read_text().replace("units = 1000", "units = 3000"))
            result = await call(daemon, "reload")
            assert ["EURUSD"] == result["strategies_changed"]
            feed.push("EURUSD", frame.iloc[630:640])
            await wait_until(lambda: actor.stats().bars_seen == 640, "640 bars")
            await wait_until(lambda: abs(actor.position.units) == 3000, "a 3,000 position")

            await call(daemon, "retrain", symbol="EURUSD")
            await wait_until(lambda: training()["cycles"] == 2 and training()["state"] == "idle",
                             "second cycle")  # fmt: skip
            second = training()
            assert second["last_error"] is None, second
            assert "promoted" == second["last_cycle"]["decision"], second
            # The hand-over is a message through the actor's command queue: it reaches the
            # strategy between two bars, not necessarily before the cycle reads idle (under
            # load the 20 bars below could all be traded first). Wait for it, as an event.
            promoted = second["champion"]["model_id"]
            await wait_until(
                lambda: (
                    actor.core.strategy.champion is not None
                    and actor.core.strategy.champion.model_id == promoted
                ),
                "the promoted champion installed",
            )
            feed.push("EURUSD", frame.iloc[640:660])
            await wait_until(lambda: actor.stats().bars_seen == 660, "660 bars")
            # The promoted champion is the one the trading strategy decides with.
            assert actor.strategy is actor.core.strategy
            assert promoted == actor.core.strategy.champion.model_id
            assert 3000 == abs(actor.position.units)
            daemon.request_stop("test")


TWO = """
[actors]
restart_backoff_s = 0.01
restart_backoff_max_s = 0.02
max_crashes = 2
crash_window_s = 60

[[symbols]]
symbol = "EURUSD"
params = { fast = 2, slow = 3, units = 1000 }

[[symbols]]
symbol = "GBPUSD"
strategy = "tests.faulty_strategy:AlwaysRaises"
"""


async def test_flatten_all_lists_a_parked_symbol_and_still_flattens_the_others(
    short_tmp: Path,
) -> None:
    """ctl flatten --yes over all symbols: the failed one is reported, the live one closed."""
    daemon = await anyio.to_thread.run_sync(make_daemon, write_daemon_config(short_tmp, TWO))
    frame = await anyio.to_thread.run_sync(bundled_frame)
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(daemon.run)
            await wait_until(lambda: daemon.state == "running", "daemon ready")
            feed: Any = daemon.feed
            eur, gbp = daemon.actors["EURUSD"], daemon.actors["GBPUSD"]
            feed.push("GBPUSD", frame.iloc[:20])
            await wait_until(lambda: gbp.state == "failed", "GBPUSD parked")
            feed.push("EURUSD", frame.iloc[:40])
            await wait_until(lambda: eur.stats().bars_seen == 40, "EURUSD bars")
            await wait_until(lambda: eur.position.units != 0, "a EURUSD position")
            result = await call(daemon, "flatten", confirm=True)
            by_symbol = {r["symbol"]: r for r in result["flattened"]}
            assert "failed" in by_symbol["GBPUSD"]["error"]
            assert -eur.position.units == by_symbol["EURUSD"]["units"]
            assert by_symbol["EURUSD"]["client_id"]
            assert eur.paused
            feed.push("EURUSD", frame.iloc[40:41])
            await wait_until(lambda: eur.position.units == 0, "EURUSD flat")
            daemon.request_stop("test")
