"""Secret redaction: a structlog processor that runs on every event before rendering.

Three rules, applied to the whole event, nested dicts, lists and tuples included:

1. A value under a key that names a secret (``token``, ``api_key``, ``password``,
   ``Authorization`` …) becomes ``"***"``. Keys are split into words (``access_token``,
   ``accessToken`` and ``X-Api-Key`` all match) so that counters such as anyio's
   ``borrowed_tokens`` are left alone.
2. In every string: ``Bearer``/``Basic`` credentials and ``token=…``-style query
   parameters are replaced by ``***``; OANDA account ids (``101-004-1234567-001``) keep
   only their last three digits (``***-***-***-001``); and the configured secrets
   (the broker token, the control token …) become ``***`` wherever they appear.
3. Exceptions: ``exc_info`` is rendered to text here (structlog's own
   ``format_exc_info``), so the traceback is redacted like any other string; exception
   objects and other non-JSON values are checked through their ``repr``, which is what
   the JSON renderer would print.

Literal secrets are replaced last and repeatedly until none is left, so no earlier
rewrite (or an overlap of two secrets) can leave or create one; a secret made only of
``*`` cannot be masked by ``***`` and is ignored.

Placed anywhere in the chain before the renderer (and before any processor that copies
events elsewhere, such as the ``ctl logs`` ring buffer). Alternatives weighed: masking at
the call sites (every new log line is a new chance to leak), and a ``logging.Filter``
(runs after structlog has rendered the line, when structure is gone).
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog

MASK = "***"
MAX_DEPTH = 12  # deeper (or self-referencing) structures are redacted via their repr

SECRET_WORDS = frozenset(
    {
        "token",
        "secret",
        "password",
        "passwd",
        "pwd",
        "passphrase",
        "authorization",
        "apikey",
        "credential",
        "credentials",
        "cookie",
    }
)
SECRET_WORD_PAIRS = frozenset({("api", "key"), ("private", "key"), ("access", "key")})

_WORD_SPLIT = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")
_CREDENTIAL = re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9\-._~+/]+=*")
_QUERY_SECRET = re.compile(
    r"(?i)\b((?:access_|refresh_|id_|auth_|client_)?token|api_?key|access_?key"
    r"|(?:client_)?secret|password|passwd)=([^&\s\"']+)"
)
_ACCOUNT_ID = re.compile(r"(?<!\d)\d{3}-\d{3}-\d+-(\d{3})(?!\d)")


def is_secret_key(key: str) -> bool:
    """Whether a key names a secret (by its words, case-insensitively)."""
    words = [w.lower() for w in _WORD_SPLIT.split(key) if w]
    if any(w in SECRET_WORDS for w in words):
        return True
    return any(pair in SECRET_WORD_PAIRS for pair in itertools.pairwise(words))


class RedactSecrets:
    """structlog processor that removes secrets from every event (see module note)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        """Prepare the patterns.

        Args:
            secrets: literal secret values (the broker API token, the control token …)
                to remove from any string; empty values are ignored.
        """
        self._lock = threading.Lock()
        self._secrets: frozenset[str] = frozenset()
        self._literal: re.Pattern[str] | None = None
        self.add_secrets(secrets)

    def add_secrets(self, secrets: Iterable[str]) -> None:
        """Also redact these values from now on (e.g. a token generated at start-up)."""
        with self._lock:
            merged = self._secrets | {s for s in secrets if s and s.strip("*")}
            if merged == self._secrets:
                return
            self._secrets = merged
            # Longest first, so a secret that contains another is removed whole.
            ordered = sorted(merged, key=lambda s: (-len(s), s))
            self._literal = re.compile("|".join(re.escape(s) for s in ordered))

    def __call__(
        self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        """Redact ``event_dict`` in place (it is structlog's copy); nested values are copied."""
        if event_dict.get("exc_info"):
            event_dict = structlog.processors.format_exc_info(logger, method_name, event_dict)
        for key in list(event_dict):
            event_dict[key] = self._value(key, event_dict[key], 0)
        return event_dict

    def redact_text(self, text: str) -> str:
        """Apply the string rules to one string."""
        text = _CREDENTIAL.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
        text = _QUERY_SECRET.sub(lambda m: f"{m.group(1)}={MASK}", text)
        text = _ACCOUNT_ID.sub(lambda m: f"***-***-***-{m.group(1)}", text)
        literal = self._literal
        if literal is not None:
            # Each pass removes at least one non-"*" character, so this terminates.
            while literal.search(text):
                text = literal.sub(MASK, text)
        return text

    def _value(self, key: object, value: Any, depth: int) -> Any:
        # None, False/True and "" tell "no token configured" apart, and hide nothing.
        hides_nothing = (
            value is None or isinstance(value, bool) or (isinstance(value, str) and not value)
        )
        if isinstance(key, str) and not hides_nothing and is_secret_key(key):
            return MASK
        return self._redact(value, depth)

    def _redact(self, value: Any, depth: int) -> Any:
        if isinstance(value, str):
            return self.redact_text(value)
        if isinstance(value, bool) or value is None:
            return value
        if isinstance(value, int | float):
            # A numeric secret (a PIN) renders as its digits: check those too.
            literal = self._literal
            return MASK if literal is not None and literal.search(repr(value)) else value
        if depth < MAX_DEPTH:
            if isinstance(value, dict):
                return {self._key(k): self._value(k, v, depth + 1) for k, v in value.items()}
            if type(value) in (list, tuple, set, frozenset):
                items = [self._redact(v, depth + 1) for v in value]
                return items if type(value) is list else type(value)(items)
        # Anything else reaches the renderer through repr(): check that text, and keep
        # the object itself when it carries nothing to hide (renderers format it better).
        try:
            text = repr(value)
        except Exception as exc:  # a broken __repr__ must not break logging
            return f"<unrepresentable {type(value).__name__}: {type(exc).__name__}>"
        redacted = self.redact_text(text)
        return value if redacted == text else redacted

    def _key(self, key: Any) -> Any:
        return self.redact_text(key) if isinstance(key, str) else key
