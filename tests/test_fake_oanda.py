"""The fake OANDA server itself keeps the contract of shared/docs/oanda-v20-subset.md."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fake_oanda import ACCOUNT_ID, START_NS, UNAUTHORIZED, FakeOanda
from tests.fake_oanda_orders import create_order

NS = 1_000_000_000
ACCT = f"/v3/accounts/{ACCOUNT_ID}"


@pytest.fixture
def fake() -> Iterator[FakeOanda]:
    """A running fake with EUR/USD at 1.10000/1.10020."""
    with FakeOanda(heartbeat_s=0.2) as server:
        server.push_price("EUR_USD", START_NS, "1.10000", "1.10020")
        yield server


@pytest.fixture
def http(fake: FakeOanda) -> Iterator[httpx.Client]:
    """A plain client with the fake's token."""
    headers = {"Authorization": f"Bearer {fake.token}"}
    with httpx.Client(base_url=fake.url, headers=headers, timeout=5.0) as client:
        yield client


def market(http: httpx.Client, units: str, **extra: Any) -> httpx.Response:
    """POST a EUR/USD market order."""
    body = {"order": {"type": "MARKET", "instrument": "EUR_USD", "units": units, **extra}}
    return http.post(f"{ACCT}/orders", json=body)


def test_a_missing_or_wrong_token_gets_401_with_only_an_error_message(
    fake: FakeOanda, http: httpx.Client
) -> None:
    """§1: no errorCode, just errorMessage."""
    bare = httpx.get(fake.url + f"{ACCT}/summary")
    wrong = http.get(f"{ACCT}/summary", headers={"Authorization": "Bearer nope"})
    assert (401, UNAUTHORIZED) == (bare.status_code, bare.json())
    assert (401, UNAUTHORIZED) == (wrong.status_code, wrong.json())


def test_amounts_are_strings_and_counts_are_integers(http: httpx.Client) -> None:
    """§1: prices, money and ids are JSON strings; counts are integers."""
    market(http, "1000")
    account = http.get(f"{ACCT}/summary").json()["account"]
    assert ("100000.0000", "99999.8000") == (account["balance"], account["NAV"])  # spread
    assert (1, 1, 0) == (
        account["openTradeCount"],
        account["openPositionCount"],
        account["pendingOrderCount"],
    )
    assert isinstance(account["lastTransactionID"], str)


def test_datetimes_follow_accept_datetime_format(http: httpx.Client) -> None:
    """§1: RFC3339 with nanoseconds by default, decimal seconds with UNIX."""
    rfc = market(http, "1000").json()["orderFillTransaction"]["time"]
    unix = market(http, "1000", clientExtensions={"id": "u"})
    assert "2024-01-02T09:00:00.000000000Z" == rfc
    assert "u" == unix.json()["orderFillTransaction"]["clientOrderID"]
    fill = http.get(f"{ACCT}/orders/@u", headers={"Accept-Datetime-Format": "UNIX"}).json()
    assert "1704186000.000000000" == fill["order"]["filledTime"]


def test_a_fill_has_increasing_ids_and_the_trade_takes_the_fill_id(http: httpx.Client) -> None:
    """§5 outcome A: create id N, fill N+1 = trade id, related ids, last id."""
    answer = market(http, "10000")
    body = answer.json()
    create, fill = body["orderCreateTransaction"], body["orderFillTransaction"]
    assert (201, True) == (answer.status_code, answer.headers["Location"].endswith(create["id"]))
    assert int(fill["id"]) == int(create["id"]) + 1
    assert (fill["id"], "1.10020") == (fill["tradeOpened"]["tradeID"], fill["tradeOpened"]["price"])
    assert ([create["id"], fill["id"]], fill["id"]) == (
        body["relatedTransactionIDs"],
        body["lastTransactionID"],
    )


def test_a_reject_is_a_400_with_the_reason_in_a_transaction(http: httpx.Client) -> None:
    """§5 outcome C: fractional units on EUR_USD exceed tradeUnitsPrecision 0."""
    answer = market(http, "1.5")
    body = answer.json()
    assert (400, "UNITS_PRECISION_EXCEEDED") == (answer.status_code, body["errorCode"])
    assert "UNITS_PRECISION_EXCEEDED" == body["orderRejectTransaction"]["rejectReason"]
    assert [] == http.get(f"{ACCT}/openTrades").json()["trades"]


def test_candles_mark_the_forming_one_and_enforce_the_limits(
    fake: FakeOanda, http: httpx.Client
) -> None:
    """§3: count <= 5000, no future 'to', the current candle is incomplete."""
    fake.push_price("EUR_USD", START_NS + 70 * NS, "1.10100", "1.10120")
    url = "/v3/instruments/EUR_USD/candles"
    candles = http.get(url, params={"granularity": "M1", "price": "BA"}).json()["candles"]
    assert [(True, 1), (False, 1)] == [(c["complete"], c["volume"]) for c in candles]
    assert {"o": "1.10100", "h": "1.10100", "l": "1.10100", "c": "1.10100"} == candles[1]["bid"]
    too_many = http.get(url, params={"count": "5001"})
    future = http.get(
        url, params={"to": str(START_NS // NS + 3600)}, headers={"Accept-Datetime-Format": "UNIX"}
    )
    assert (400, "Maximum value for 'count' exceeded") == (
        too_many.status_code,
        too_many.json()["errorMessage"],
    )
    assert "Time is in the future" in future.json()["errorMessage"]


def test_closing_all_on_a_flat_side_sinks_the_whole_position_close(http: httpx.Client) -> None:
    """§6 pitfall: shortUnits ALL with no short position rejects the request."""
    market(http, "10000")
    url = f"{ACCT}/positions/EUR_USD/close"
    both = http.put(url, json={"longUnits": "ALL", "shortUnits": "ALL"})
    assert (400, "CLOSEOUT_POSITION_DOESNT_EXIST") == (both.status_code, both.json()["errorCode"])
    assert "10000" == http.get(f"{ACCT}/openPositions").json()["positions"][0]["long"]["units"]
    long_only = http.put(url, json={"longUnits": "ALL"}).json()
    assert "-10000" == long_only["longOrderFillTransaction"]["units"]
    assert [] == http.get(f"{ACCT}/openPositions").json()["positions"]


def test_a_partial_trade_close_reduces_the_trade(http: httpx.Client) -> None:
    """§6: PUT trades/{id}/close with units reduces; more than open is rejected."""
    trade_id = market(http, "10000").json()["orderFillTransaction"]["tradeOpened"]["tradeID"]
    too_big = http.put(f"{ACCT}/trades/{trade_id}/close", json={"units": "20000"})
    part = http.put(f"{ACCT}/trades/{trade_id}/close", json={"units": "4000"}).json()
    assert "CLOSE_TRADE_UNITS_EXCEED_TRADE_SIZE" == too_big.json()["errorCode"]
    assert (trade_id, "-4000") == (
        part["orderFillTransaction"]["tradeReduced"]["tradeID"],
        part["orderFillTransaction"]["tradeReduced"]["units"],
    )
    assert "6000" == http.get(f"{ACCT}/openTrades").json()["trades"][0]["currentUnits"]


def test_sinceid_answers_pages_of_at_most_1000(fake: FakeOanda, http: httpx.Client) -> None:
    """§7: page through sinceid from the last id received."""
    with fake.lock:
        for _ in range(600):
            create_order(
                fake.book, {"order": {"type": "MARKET", "instrument": "EUR_USD", "units": "1"}}
            )
    first = http.get(f"{ACCT}/transactions/sinceid", params={"id": "0"}).json()
    rest = http.get(f"{ACCT}/transactions/sinceid", params={"id": "1000"}).json()
    assert (1000, "1") == (len(first["transactions"]), first["transactions"][0]["id"])
    assert (201, "1201") == (len(rest["transactions"]), rest["lastTransactionID"])


def test_the_pricing_stream_is_chunked_ndjson_that_splits_lines(fake: FakeOanda) -> None:
    """§4: chunked body, one JSON object per line, a line sometimes across chunks."""
    host, port = fake.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        request = (
            f"GET {ACCT}/pricing/stream?instruments=EUR_USD HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {fake.token}\r\n\r\n"
        )
        sock.sendall(request.encode())
        reader = sock.makefile("rb")
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            head += reader.readline()
        chunks = []
        for n in range(4):
            size = int(reader.readline(), 16)
            chunks.append(reader.read(size))
            reader.readline()
            if n == 0:  # snapshot and first heartbeat came; now three pushes
                for i in range(1, 4):
                    fake.push_price("EUR_USD", START_NS + i * NS, "1.10000", "1.10020")
    assert b"Transfer-Encoding: chunked" in head
    assert any(not c.endswith(b"\n") for c in chunks)
    lines = b"".join(chunks).splitlines()
    kinds = [json.loads(line)["type"] for line in lines]
    assert {"PRICE", "HEARTBEAT"} == set(kinds)


def test_requests_above_the_configured_rate_get_429() -> None:
    """§8: past max_requests_per_s within one second the fake answers 429."""
    with FakeOanda(max_requests_per_s=3) as fake, httpx.Client(base_url=fake.url) as client:
        headers = {"Authorization": f"Bearer {fake.token}"}
        statuses = [client.get(f"{ACCT}/summary", headers=headers).status_code for _ in range(4)]
    assert [200, 200, 200, 429] == statuses


# -- issue 11: behaviours the daemon's failure handling is tested against ---------------


def test_a_late_order_is_unknown_until_it_executes_after_the_read_timeout(
    fake: FakeOanda, http: httpx.Client
) -> None:
    """The POST times out; OANDA has no record of it; then it fills anyway."""
    fake.execute_next_order_late(1.0)
    body = {
        "order": {
            "type": "MARKET",
            "instrument": "EUR_USD",
            "units": "1000",
            "clientExtensions": {"id": "late-1"},
        }
    }
    with pytest.raises(httpx.ReadTimeout):
        http.post(f"{ACCT}/orders", json=body, timeout=0.2)
    before = http.get(f"{ACCT}/orders/@late-1")
    assert (404, "NO_SUCH_ORDER") == (before.status_code, before.json()["errorCode"])
    assert [] == fake.fills_for("late-1")
    fake.wait_for_served("/orders", 1, timeout=5.0)
    assert ["1000"] == [t["units"] for t in fake.fills_for("late-1")]
    assert "FILLED" == http.get(f"{ACCT}/orders/@late-1").json()["order"]["state"]


def test_a_client_id_of_a_filled_order_is_accepted_again_and_fills_twice(
    http: httpx.Client, fake: FakeOanda
) -> None:
    """CLIENT_ORDER_ID_ALREADY_EXISTS guards pending orders only (spec wording)."""
    first = market(http, "1000", clientExtensions={"id": "dup-1"})
    second = market(http, "1000", clientExtensions={"id": "dup-1"})
    assert (201, 201) == (first.status_code, second.status_code)
    assert 2 == len(fake.fills_for("dup-1"))
    assert 2000 == fake.net_units("EUR_USD")


def test_a_fresh_order_is_not_found_by_client_id_during_the_lookup_lag() -> None:
    """§7: right after creation @clientID answers 404, then the order."""
    with FakeOanda(lookup_lag_s=0.5) as fake:
        fake.push_price("EUR_USD", START_NS, "1.10000", "1.10020")
        headers = {"Authorization": f"Bearer {fake.token}"}
        with httpx.Client(base_url=fake.url, headers=headers, timeout=5.0) as http:
            assert 201 == market(http, "1000", clientExtensions={"id": "lag-1"}).status_code
            assert 404 == http.get(f"{ACCT}/orders/@lag-1").status_code
            got = http.get(f"{ACCT}/orders/@lag-1")
            while got.status_code == 404:  # the lag is on the fake's wall clock
                got = http.get(f"{ACCT}/orders/@lag-1")
            assert "FILLED" == got.json()["order"]["state"]


def test_an_outage_answers_503_on_matching_paths_until_it_ends(
    fake: FakeOanda, http: httpx.Client
) -> None:
    """503 on every matching endpoint for the span; other paths keep working."""
    fake.outage(0.5, "/summary")
    assert 503 == http.get(f"{ACCT}/summary").status_code
    assert 200 == http.get(f"{ACCT}/openPositions").status_code
    while http.get(f"{ACCT}/summary").status_code == 503:
        pass  # ends on the fake's clock, 0.5 s after it began
    assert 200 == http.get(f"{ACCT}/summary").status_code


def test_a_stream_reconnect_can_be_refused_with_401(fake: FakeOanda, http: httpx.Client) -> None:
    """A revoked token: the stream answers 401 with only an errorMessage."""
    fake.refuse_streams(status=401)
    got = http.get(f"{ACCT}/pricing/stream", params={"instruments": "EUR_USD"})
    assert (401, UNAUTHORIZED) == (got.status_code, got.json())


def test_a_position_opened_outside_shows_in_open_positions(
    fake: FakeOanda, http: httpx.Client
) -> None:
    """A hand-placed order: no client extensions, visible in /openPositions."""
    fill = fake.open_outside("EUR_USD", -4000)
    assert "clientOrderID" not in fill
    pos = http.get(f"{ACCT}/openPositions").json()["positions"]
    assert [("EUR_USD", "-4000")] == [(p["instrument"], p["short"]["units"]) for p in pos]
