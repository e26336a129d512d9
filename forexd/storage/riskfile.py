"""Format and durable writes of ``risk_state.json`` (no locking; see ``riskstate.py``).

File format::

    {"schema_version": 1, "sha256": "<hex>", "payload": {...RiskState...}}

``sha256`` is the SHA-256 of the payload's canonical JSON (sorted keys, no spaces, ASCII),
so a hand edit or a damaged block is detected even when the JSON still parses. The file is
pretty-printed for people; only the canonical form is hashed. ``schema_version`` sits
outside the payload so that a file from another version is recognised before anything
else about it is trusted (the payload repeats it, covered by the checksum).

A write goes to a temporary file in the same directory, is flushed and fsynced, then
``os.replace``-d over the old file (atomic on every supported OS), and the directory is
fsynced so the rename itself survives a power cut (Windows has no directory fsync).
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from forexd.domain import NS_PER_S
from forexd.errors import RiskStateError
from forexd.fsutil import fsync_dir
from forexd.risk.state import SCHEMA_VERSION, RiskState

TOP_KEYS = frozenset({"schema_version", "sha256", "payload"})
FIX_REPAIR = (
    "run `forexd risk repair` to keep a backup of it and rebuild it (trading stays "
    "stopped until you do)"
)


def state_error(path: Path, problem: str, fix: str = FIX_REPAIR) -> RiskStateError:
    """The one message shape: which file, what is wrong, what to do."""
    return RiskStateError(f"risk state file {path} {problem}; {fix}")


def canonical_json(payload: Any) -> bytes:
    """The exact bytes the checksum covers (sorted keys, no whitespace, ASCII only).

    Raises:
        ValueError: the payload holds NaN or Infinity (not JSON; forexd never writes them).
    """
    text = json.dumps(
        payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )
    return text.encode("ascii")


def checksum(payload: Any) -> str:
    """Hex SHA-256 of the payload's canonical JSON."""
    return hashlib.sha256(canonical_json(payload)).hexdigest()


def encode(state: RiskState) -> bytes:
    """Serialise a state to the file format.

    Raises:
        ValueError: the state holds NaN or Infinity.
    """
    payload = state.model_dump(mode="json")
    doc = {"schema_version": SCHEMA_VERSION, "sha256": checksum(payload), "payload": payload}
    return (json.dumps(doc, indent=2, sort_keys=True, allow_nan=False) + "\n").encode("ascii")


def decode(raw: bytes, *, path: Path, account_id: str) -> RiskState:
    """Parse and verify a state file's bytes.

    Checks, in order (each has its own message): empty, not UTF-8, truncated or invalid
    JSON, not a state document, schema version, checksum, payload fields, account.

    Raises:
        RiskStateError: the first check that failed.
    """
    if not raw.strip():
        raise state_error(path, "is empty")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise state_error(path, "is not UTF-8 text (corrupt)") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.pos >= len(text.rstrip()):
            raise state_error(path, f"is truncated (its JSON stops at byte {len(raw)})") from None
        where = f"line {exc.lineno} column {exc.colno}"
        raise state_error(path, f"is not valid JSON ({exc.msg} at {where})") from None
    if not isinstance(doc, dict) or set(doc) != TOP_KEYS:
        raise state_error(
            path,
            "is not a forexd risk state file (expected exactly the keys "
            "schema_version, sha256, payload)",
        )
    version = doc["schema_version"]
    if version != SCHEMA_VERSION or isinstance(version, bool):
        newer = isinstance(version, int) and version > SCHEMA_VERSION
        hint = "a newer forexd wrote it: upgrade forexd, or " if newer else ""
        raise state_error(
            path,
            f"has schema version {version!r} but this forexd reads version {SCHEMA_VERSION}",
            hint + FIX_REPAIR,
        )
    payload = doc["payload"]
    stored = doc["sha256"]
    try:
        actual = checksum(payload)
    except ValueError:
        actual = "(not computable: the payload holds NaN or Infinity)"
    if stored != actual:
        raise state_error(
            path,
            f"failed its SHA-256 checksum (stored {str(stored)[:16]}…, computed "
            f"{actual[:16]}…): it was changed outside forexd or damaged",
        )
    try:
        state = RiskState.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "(payload)"
        raise state_error(path, f"has an invalid payload ({loc}: {first['msg']})") from None
    if state.account_id != account_id:
        raise state_error(
            path,
            f"belongs to account {state.account_id!r}, not {account_id!r}",
            f"use the data directory of account {account_id!r}, or "
            "run `forexd risk repair` to back this file up and start fresh",
        )
    return state


def write_backup(path: Path, raw: bytes, now_ns: int) -> Path:
    """Keep ``raw`` next to ``path`` as ``<name>.corrupt-<UTC timestamp>``; return its path.

    Raises:
        OSError: the backup could not be written.
    """
    stamp = datetime.fromtimestamp(now_ns / NS_PER_S, tz=timezone.utc)
    base = f"{path.name}.corrupt-{stamp.strftime('%Y%m%dT%H%M%S%fZ')}"
    backup = path.with_name(base)
    n = 1
    while backup.exists():
        backup = path.with_name(f"{base}.{n}")
        n += 1
    with backup.open("xb") as fh:
        fh.write(raw)
        fh.flush()
        os.fsync(fh.fileno())
    fsync_dir(backup.parent)
    return backup
