"""Secret redaction processor: keys, credentials, account ids, literal secrets anywhere."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from hypothesis import example, given, settings
from hypothesis import strategies as st

from forexd.daemon.redact import MASK, RedactSecrets, is_secret_key

ACCOUNT = "101-004-1234567-001"


def strings_in(value: Any) -> Iterator[str]:
    """Every string inside ``value``: nested values and nested dict keys."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings_in(key)
            yield from strings_in(item)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from strings_in(item)
    else:
        yield repr(value)


def redact(event: dict[str, Any], *secrets: str) -> dict[str, Any]:
    """Run the processor on a copy of ``event``."""
    return dict(RedactSecrets(secrets)(None, "info", dict(event)))


def render(event: dict[str, Any], *secrets: str) -> dict[str, Any]:
    """Redact and render to a JSON line as the daemon does, then parse it back."""
    logger = structlog.wrap_logger(
        structlog.ReturnLogger(),
        processors=[RedactSecrets(secrets), structlog.processors.JSONRenderer()],
    )
    line = logger.info(**event)
    parsed: dict[str, Any] = json.loads(line)
    return parsed


@pytest.mark.parametrize(
    "key",
    [
        "token",
        "access_token",
        "accessToken",
        "oanda_token",
        "secret",
        "client_secret",
        "password",
        "PASSWORD",
        "Authorization",
        "api_key",
        "apiKey",
        "X-Api-Key",
        "apikey",
        "private_key",
        "cookie",
        "credentials",
    ],
)
def test_secret_looking_keys_are_recognised(key: str) -> None:
    """Key names are matched by their words, whatever the casing or separator."""
    assert is_secret_key(key)


@pytest.mark.parametrize(
    "key", ["borrowed_tokens", "total_tokens", "event", "symbol", "keyboard", "monkey", "secrets_n"]
)
def test_ordinary_keys_are_left_alone(key: str) -> None:
    """Counters like anyio's borrowed_tokens are not secrets."""
    assert not is_secret_key(key)


def test_values_under_secret_keys_are_masked_at_any_depth() -> None:
    """A secret key's value becomes *** at the top level and inside dicts and lists."""
    event = {
        "event": "connect",
        "token": "abc123",
        "headers": {"Authorization": "whatever", "Accept": "json"},
        "accounts": [{"api_key": 42, "name": "main"}],
    }
    expected = {
        "event": "connect",
        "token": MASK,
        "headers": {"Authorization": MASK, "Accept": "json"},
        "accounts": [{"api_key": MASK, "name": "main"}],
    }
    assert expected == redact(event)


def test_empty_and_boolean_values_under_secret_keys_stay_readable() -> None:
    """None, "" and booleans hide nothing and say whether a token is configured."""
    event = {"event": "cfg", "token": None, "password": "", "has_token": False}
    assert event == redact(event)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer eyJhbGciOi.J9x-y_z~+/=", f"Authorization: Bearer {MASK}"),
        ("auth basic dXNlcjpwYXNz==", f"auth basic {MASK}"),
        ("GET /v3?token=s3cr3t&count=5", f"GET /v3?token={MASK}&count=5"),
        ("url api_key=ZZZ9 next", f"url api_key={MASK} next"),
        ("cache key=H1 is fine", "cache key=H1 is fine"),
    ],
)
def test_credentials_in_text_are_masked(text: str, expected: str) -> None:
    """Bearer/Basic credentials and token-like query parameters are removed from text."""
    assert expected == redact({"event": text})["event"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (ACCOUNT, "***-***-***-001"),
        (f"account {ACCOUNT} rejected", "account ***-***-***-001 rejected"),
        ("ids 001-011-9-123,101-001-22222222-999", "ids ***-***-***-123,***-***-***-999"),
        ("2024-01-15 12-34 1-2-3-4", "2024-01-15 12-34 1-2-3-4"),
    ],
)
def test_oanda_account_ids_keep_only_their_last_three_digits(text: str, expected: str) -> None:
    """Account ids are masked wherever they appear; dates and short numbers are not."""
    assert expected == redact({"event": text})["event"]


def test_account_ids_are_masked_in_nested_values_and_exception_text() -> None:
    """Nested values and a rendered traceback get the same treatment."""
    try:
        raise PermissionError(f"account {ACCOUNT} is not allowed")
    except PermissionError:
        out = redact({"event": "fail", "ctx": {"ids": [ACCOUNT]}, "exc_info": True})
    assert {"ids": ["***-***-***-001"]} == out["ctx"]
    assert "account ***-***-***-001 is not allowed" in out["exception"]
    assert (False, False) == (ACCOUNT in out["exception"], "exc_info" in out)


def test_configured_secrets_are_removed_from_every_string() -> None:
    """A literal secret is replaced wherever it occurs: text, nested keys, tuples, sets."""
    secret = "tok-3f9a77"
    event = {
        "event": f"sent {secret}",
        "nested": {f"k{secret}": [f"x{secret}y", (secret,)], "tags": {secret}},
        "number": 7,
    }
    out = redact(event, secret)
    assert [] == [s for s in strings_in(out) if secret in s]
    assert {"event": f"sent {MASK}", "number": 7} == {k: out[k] for k in ("event", "number")}


def test_numeric_secrets_are_masked_in_numbers_too() -> None:
    """A PIN configured as a secret is masked when logged as an int."""
    assert {"event": "pin", "value": MASK} == redact({"event": "pin", "value": 918273}, "918273")


def test_exception_objects_are_checked_through_their_repr() -> None:
    """An exception passed as a value would be rendered by repr, so that is redacted."""
    out = redact({"event": "x", "error": RuntimeError("token abcdefgh leaked")}, "abcdefgh")
    assert f"RuntimeError('token {MASK} leaked')" == out["error"]


def test_values_without_secrets_keep_their_type() -> None:
    """Objects whose repr carries nothing to hide reach the renderer untouched."""
    marker = object()
    assert marker is redact({"event": "x", "obj": marker}, "zzzzzz")["obj"]


def test_the_callers_nested_objects_are_not_mutated() -> None:
    """Redaction copies nested containers; the logged dict stays intact."""
    payload = {"token": "t0k3n", "items": ["Bearer abc"]}
    before = copy.deepcopy(payload)
    redact({"event": "x", "payload": payload})
    assert before == payload


def test_secrets_added_later_are_redacted_from_then_on() -> None:
    """add_secrets covers a token generated after logging was configured."""
    processor = RedactSecrets()
    processor.add_secrets(["late-secret-1"])
    assert {"event": MASK} == dict(processor(None, "info", {"event": "late-secret-1"}))


def test_a_secret_of_only_asterisks_is_ignored() -> None:
    """'***' cannot mask '*', so such a secret is skipped instead of looping forever."""
    assert {"event": "a * b"} == redact({"event": "a * b"}, "*", "")


def test_self_referencing_structures_do_not_break_logging() -> None:
    """A list containing itself is redacted through its repr beyond the depth limit."""
    loop: list[Any] = ["Bearer abc"]
    loop.append(loop)
    out = redact({"event": "x", "loop": loop})
    assert [] == [s for s in strings_in(out["loop"]) if "abc" in s]


SECRETS = st.text(min_size=1, max_size=40).filter(lambda s: s.strip("*") != "")


@st.composite
def embedded_secret(draw: st.DrawFn) -> tuple[str, Any]:
    """A secret inside random text, wrapped in random containers."""
    secret = draw(SECRETS)
    value: Any = draw(st.text(max_size=20)) + secret + draw(st.text(max_size=20))
    for kind in draw(st.lists(st.sampled_from(["dict", "list", "tuple", "key"]), max_size=5)):
        if kind == "dict":
            value = {draw(st.text(max_size=8)): value, "n": draw(st.integers())}
        elif kind == "list":
            value = [draw(st.integers()), value, draw(st.text(max_size=8))]
        elif kind == "tuple":
            value = (value,)
        else:
            value = {f"{draw(st.text(max_size=4))}{secret}": value}
    return secret, value


@settings(max_examples=300, deadline=None)
@given(embedded_secret())
@example(("a***", "aa***"))  # masking once leaves "a" + "***": a new copy of the secret
@example(("ab", ["aabb", {"ab": "b"}]))
def test_an_embedded_secret_never_survives(case: tuple[str, Any]) -> None:
    """Wherever a configured secret is embedded, no string of the output contains it."""
    secret, value = case
    out = render({"event": "e", "payload": value}, secret)
    assert [] == [s for s in strings_in(out["payload"]) if secret in s]


@settings(max_examples=200, deadline=None)
@given(SECRETS, st.text(max_size=20))
def test_a_secret_in_an_exception_message_never_survives(secret: str, prefix: str) -> None:
    """The traceback rendered from exc_info is redacted too."""
    try:
        raise ValueError(prefix + secret)
    except ValueError:
        out = redact({"event": "boom", "exc_info": True}, secret)
    assert secret not in out["exception"]


@settings(max_examples=200, deadline=None)
@given(
    st.from_regex(r"\A[0-9]{3}-[0-9]{3}-[0-9]{1,10}-[0-9]{3}\Z"),
    st.text(alphabet=st.characters(blacklist_categories=["Nd"]), max_size=20),
)
def test_any_account_id_is_masked_in_any_text(account: str, around: str) -> None:
    """The full account id never appears; its last three digits do."""
    out = redact({"event": f"{around}{account}{around}"})["event"]
    assert (False, True) == (account in out, f"***-***-***-{account[-3:]}" in out)
