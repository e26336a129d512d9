"""Issue 11: the daemon against a fake OANDA that misbehaves as the real one may.

One test per failure of issue 11 (cases 2-7): a late execution, an order never placed,
a REST outage, a 401 on a stream reconnect, positions opened outside the daemon, and a
data-dir reset against the same account. Each asserts what the user's money depends on:
orders posted, fills at the broker, and the position on both sides.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests._oanda_daemon import (
    DOWN,
    NS,
    T0,
    UP,
    Prices,
    db_rows,
    live_config,
    start,
    symbol_link,
)
from tests.daemon_proc import DaemonProc, run_cli
from tests.fake_oanda import ACCOUNT_ID, FakeOanda

pytestmark = pytest.mark.e2e


def test_an_order_oanda_executes_after_the_read_timeout_fills_once(
    short_tmp: Path, daemon_factory: type[DaemonProc]
) -> None:
    """Case 2: the answer is lost, the order fills late; never resent; books agree."""
    with FakeOanda(heartbeat_s=0.2, lookup_lag_s=0.5) as fake:
        prices = Prices(fake)
        d = start(daemon_factory, fake, short_tmp, oanda="request_timeout_s = 1.0")
        fake.execute_next_order_late()  # held until released below
        prices.push(DOWN)
        unknown = d.wait_for("oanda_order_outcome_unknown")
        status = d.status()
        assert "reducing" == symbol_link(status)["state"]
        assert [unknown["client_id"]] == [
            u["client_id"] for u in status["broker_link"]["unresolved_orders"]
        ]
        prices.push(UP[:2])  # bars while unresolved: nothing new may open
        fake.release_held_orders()  # OANDA executes it now, long after the timeout
        d.wait_for("oanda_order_resolved_filled", timeout=30)
        prices.push(UP[2:])
        d.wait_for("order_filled", client_id=unknown["client_id"])
        second = d.wait_for("order_filled", position_units=1000)
        status = d.status()
        assert 0 == d.signal()
    orders, position = db_rows(short_tmp / "data")
    install = (short_tmp / "data" / "installation_id").read_text().strip()
    fills = fake.fills_for(install)
    # One POST and one fill per decision, and both books hold the same position.
    assert len(orders) == fake.order_posts == len(fills) == 2
    assert [o[0] for o in orders] == [unknown["client_id"], second["client_id"]]
    assert ["filled", "filled"] == [o[2] for o in orders]
    assert fake.net_units("EUR_USD") == position == status["symbols"][0]["position_units"]
    assert 1000 == position
    assert 0 == status["symbols"][0]["pending_units"]


def test_an_order_in_flight_at_a_crash_is_resolved_after_restart_not_resent(
    short_tmp: Path, daemon_factory: type[DaemonProc]
) -> None:
    """Case 2 across a crash: killed while OANDA still holds the order; one fill in all."""
    with FakeOanda(heartbeat_s=0.2) as fake:
        prices = Prices(fake)
        first = start(daemon_factory, fake, short_tmp, oanda="request_timeout_s = 1.0")
        fake.execute_next_order_late()  # held until released below
        prices.push(DOWN)
        unknown = first.wait_for("oanda_order_outcome_unknown")
        first.kill()  # SIGKILL: no shutdown, the row stays pending
        d = daemon_factory(short_tmp / "data", short_tmp / "live.toml")
        tracked = d.wait_for("reconcile_order_unresolved")
        d.wait_for("ready")
        status = d.status()
        assert "reducing" == symbol_link(status)["state"]
        fake.release_held_orders()
        d.wait_for("oanda_order_resolved_filled", timeout=60)
        # The restarted stream's first price opens a bar; the second closes it, and
        # that bar delivers the fill to the actor.
        prices.push(DOWN[-1:] * 2)
        d.wait_for("order_filled", client_id=unknown["client_id"])
        status = d.status()
        assert 0 == d.signal()
    orders, position = db_rows(short_tmp / "data")
    assert unknown["client_id"] == tracked["client_id"]
    assert [(unknown["client_id"], "filled")] == [(o[0], o[2]) for o in orders]
    assert (1, 1) == (fake.order_posts, len(fake.fills_for("")))
    assert fake.net_units("EUR_USD") == position == -1000
    assert (-1000, 0) == (
        status["symbols"][0]["position_units"],
        status["symbols"][0]["pending_units"],
    )


def test_an_order_proven_never_executed_releases_its_units_and_row(
    short_tmp: Path, daemon_factory: type[DaemonProc]
) -> None:
    """Case 3: 503 on the POST and on every lookup; resolved absent; a new id follows."""
    with FakeOanda(heartbeat_s=0.2) as fake:
        prices = Prices(fake)
        d = start(daemon_factory, fake, short_tmp, oanda="absent_after_s = 5.0")
        fake.outage(None, "/orders", "/transactions")  # the POST and every lookup: 503
        prices.push(DOWN)
        unknown = d.wait_for("oanda_order_outcome_unknown")
        d.wait_for("oanda_order_still_unknown")  # a background pass failed too
        fake.end_outage()
        d.wait_for("oanda_order_resolved_not_executed", timeout=40)
        prices.push(UP[:1])
        d.wait_for("order_not_executed", client_id=unknown["client_id"])
        assert 0 == d.status()["symbols"][0]["pending_units"]
        prices.push(UP[1:])
        filled = d.wait_for("order_filled", position_units=1000)
        status = d.status()
        assert 0 == d.signal()
    orders, position = db_rows(short_tmp / "data")
    first = next(o for o in orders if o[0] == unknown["client_id"])
    assert ("cancelled", True) == (first[2], "no transaction" in (first[3] or ""))
    assert filled["client_id"] != unknown["client_id"]
    # Every later decision was posted once and filled once (the released one never).
    fills = fake.fills_for("")
    assert len(orders) == fake.order_posts == len(fills) + 1
    assert ["filled"] * len(fills) == [o[2] for o in orders if o[0] != unknown["client_id"]]
    # The strategy's 1,000 units: not three times the intended exposure.
    assert fake.net_units("EUR_USD") == position == status["symbols"][0]["position_units"]
    assert 1000 == position
    assert 0 == status["symbols"][0]["pending_units"]


def test_a_rest_outage_degrades_the_symbol_and_it_recovers_by_itself(
    short_tmp: Path, daemon_factory: type[DaemonProc]
) -> None:
    """Case 4: /summary answers 503 for a while: degraded, no crash, then trading again."""
    with FakeOanda(heartbeat_s=0.2) as fake:
        prices = Prices(fake)
        d = start(
            daemon_factory,
            fake,
            short_tmp,
            oanda="account_refresh_s = 1.0",
            actors="max_crashes = 2\nrestart_backoff_s = 0.1",
        )
        fake.outage(None, "/summary")  # the case: 503 on /summary only
        degraded = d.wait_for("oanda_degraded", timeout=20)
        prices.push(DOWN)  # bars keep coming: decisions are denied, nothing crashes
        denied = d.wait_for("order_denied")
        status = d.status()
        assert ("degraded", "degraded") == (status["state"], symbol_link(status)["state"])
        assert "OANDA unreachable" in symbol_link(status)["reason"]
        fake.end_outage()
        d.wait_for("oanda_recovered", timeout=60)
        prices.push(UP)
        d.wait_for("order_filled", position_units=1000)
        status = d.status()
        assert 0 == d.signal()
    orders, position = db_rows(short_tmp / "data")
    assert "HTTP 503" in degraded["reason"]
    assert denied["reason"].startswith("degraded")
    assert ("running", "trading") == (status["state"], symbol_link(status)["state"])
    assert (0, "running") == (status["symbols"][0]["restarts"], status["symbols"][0]["state"])
    assert len(orders) == fake.order_posts == len(fake.fills_for(""))
    assert fake.net_units("EUR_USD") == position == 1000


def test_a_401_on_a_stream_reconnect_alerts_and_retries_instead_of_exiting(
    short_tmp: Path, daemon_factory: type[DaemonProc]
) -> None:
    """Case 5: token refused on reconnect: error logged, status stale, back when allowed."""
    with FakeOanda(heartbeat_s=0.2) as fake:
        Prices(fake)
        d = start(daemon_factory, fake, short_tmp)
        fake.refuse_streams(status=401)
        fake.cut_streams()
        alert = d.wait_for("oanda_stream_refused_retrying")
        status = d.status()
        assert "error" == alert["level"]
        assert ("degraded", "stale") == (status["state"], symbol_link(status)["state"])
        assert "HTTP 401" in symbol_link(status)["reason"]
        fake.refuse_streams(False)
        d.wait_for("oanda_stream_connected", timeout=60)
        status = d.status()
        assert ("running", "trading") == (status["state"], symbol_link(status)["state"])
        assert 0 == d.signal()
    assert ACCOUNT_ID not in "".join(d.raw)


def test_a_position_opened_outside_halts_the_symbol_until_adopted_or_flattened(
    short_tmp: Path, daemon_factory: type[DaemonProc]
) -> None:
    """Case 6: fresh data dir on a non-flat account, then drift while running."""
    with FakeOanda(heartbeat_s=0.2) as fake:
        fake.push_price("EUR_USD", T0 - 120 * NS, "1.10000", "1.10010")
        fake.open_outside("EUR_USD", 4000)
        prices = Prices(fake)
        d = start(daemon_factory, fake, short_tmp, oanda="drift_check_s = 0.5")
        halt = d.wait_for("position_drift")
        assert (0, 4000, "error") == (halt["daemon_units"], halt["broker_units"], halt["level"])
        status = d.status()
        assert "degraded" == status["state"]
        assert {"state": "reducing", "daemon_units": 0, "broker_units": 4000} == {
            k: symbol_link(status)[k] for k in ("state", "daemon_units", "broker_units")
        }
        prices.push(DOWN + UP)
        d.wait_for("order_denied")
        assert 0 == fake.order_posts  # a flat daemon book may not open anything
        assert 0 == d.ctl("adopt", "EURUSD").returncode
        status = d.status()
        assert ("trading", 4000) == (
            symbol_link(status)["state"],
            status["symbols"][0]["position_units"],
        )
        fake.open_outside("EUR_USD", -1000)  # someone trades by hand while it runs
        drift = d.wait_for("position_drift")
        assert (4000, 3000) == (drift["daemon_units"], drift["broker_units"])
        flat = d.ctl("flatten", "EURUSD", "--yes")
        assert 0 == flat.returncode, flat.stderr
        d.wait_for("order_filled")
        status = d.status()
        assert 0 == d.signal()
    _, position = db_rows(short_tmp / "data")
    assert (1, 0, 0) == (fake.order_posts, fake.net_units("EUR_USD"), position)
    assert 0 == status["symbols"][0]["position_units"]


def test_client_ids_never_repeat_across_data_dir_resets_and_the_account_id_is_masked(
    short_tmp: Path, daemon_factory: type[DaemonProc]
) -> None:
    """Case 7: two installations on one account send disjoint ids; stderr is masked."""
    wire_ids: list[set[str]] = []
    with FakeOanda(heartbeat_s=0.2) as fake:
        prices = Prices(fake)
        for run in ("a", "b"):
            # b starts on a's open position: adopt it, as an operator would.
            d = start(daemon_factory, fake, short_tmp / run, oanda='drift_policy = "adopt"')
            posted = fake.order_posts
            prices.push(DOWN + UP)
            d.wait_for("order_filled")
            d.wait_for("order_filled")
            assert 0 == d.signal()
            install = (short_tmp / run / "data" / "installation_id").read_text().strip()
            sent = {b["order"]["clientExtensions"]["id"] for b in fake.order_bodies[posted:]}
            assert all(i.startswith(install + "-") and len(i) <= 32 for i in sent)
            wire_ids.append(sent)
        fake.outage(120.0, "/summary")
        cfg = live_config(fake, short_tmp / "down.toml")
        failed = run_cli("run", "--data-dir", str(short_tmp / "c"), "--config", str(cfg))
    assert wire_ids[0] and wire_ids[1]
    assert set() == wire_ids[0] & wire_ids[1]
    assert 2 == failed.returncode
    assert "***-***-***-001" in failed.stderr
    assert ACCOUNT_ID not in failed.stderr + failed.stdout


def test_ctl_restart_revives_a_symbol_parked_as_failed(
    short_tmp: Path, daemon_factory: type[DaemonProc]
) -> None:
    """A symbol that crashed too often is parked; once fixed, `ctl restart` revives it."""
    flag = short_tmp / "bug"
    flag.write_text("on")
    repo = Path(__file__).resolve().parents[1]
    with FakeOanda(heartbeat_s=0.2) as fake:
        prices = Prices(fake)
        cfg = live_config(
            fake,
            short_tmp / "live.toml",
            actors="max_crashes = 2\nrestart_backoff_s = 0.05",
            symbol=f'strategy = "tests.faulty_strategy:FailsWhileFlagged"\n'
            f'params = {{ flag = "{flag}", units = 1000 }}',
        )
        d = daemon_factory(short_tmp / "data", cfg, env={"PYTHONPATH": str(repo)})
        d.wait_for("ready")
        # Only the present is traded: each life of the actor crashes on the first bar that
        # closes after it started, so feed one such bar per life (max_crashes = 2).
        d.wait_for("actor_started", symbol="EURUSD")
        prices.push(DOWN[:2])
        d.wait_for("actor_crashed", symbol="EURUSD")
        d.wait_for("actor_started", symbol="EURUSD")
        prices.push(DOWN[2:4])
        d.wait_for("actor_failed", symbol="EURUSD")
        status = d.status()
        assert ("failed", "degraded") == (status["symbols"][0]["state"], status["state"])
        flag.unlink()  # the bug is fixed
        revived = d.ctl("restart", "EURUSD")
        assert 0 == revived.returncode, revived.stderr
        d.wait_for("actor_started", symbol="EURUSD")  # the third life; it trades new bars
        prices.push(DOWN[4:] + UP[:2])
        d.wait_for("order_filled", symbol="EURUSD", position_units=1000)
        status = d.status()
        assert 0 == d.signal()
    assert ("running", "running") == (status["symbols"][0]["state"], status["state"])
    assert 1000 == fake.net_units("EUR_USD")
