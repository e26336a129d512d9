"""Tests of the risk state file: format, verification, locking, atomic writes and repair."""

# STYLE.md asks for asserts that read `expected == actual`; SIM300 calls that a Yoda condition.

from __future__ import annotations

import json
import multiprocessing
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import portalocker
import pytest

from forexd.errors import RiskStateError
from forexd.risk import (
    DenialReason,
    Holding,
    RiskGate,
    RiskLimits,
    RiskState,
    StateCause,
    TradingState,
)
from forexd.storage.riskfile import checksum
from forexd.storage.riskstate import RiskStateStore

ACCOUNT = "001-001-1234567-001"
NOW = 1_718_200_800 * 1_000_000_000  # 2024-06-12T14:00:00Z
WORKERS = 4
UPDATES_PER_WORKER = 500


@pytest.fixture
def store(tmp_path: Path) -> RiskStateStore:
    """A store with a freshly initialised file."""
    store = RiskStateStore(tmp_path / "risk_state.json", ACCOUNT, lock_timeout_s=0.2)
    store.init(now_ns=NOW)
    return store


@pytest.fixture
def held_lock(store: RiskStateStore) -> Iterator[Callable[[bool], None]]:
    """Take the store's lock from another file handle, as another process would."""
    locks: list[portalocker.Lock] = []

    def take(exclusive: bool) -> None:
        kind = portalocker.LockFlags.EXCLUSIVE if exclusive else portalocker.LockFlags.SHARED
        lock = portalocker.Lock(
            store.lock_path, mode="a", flags=kind | portalocker.LockFlags.NON_BLOCKING
        )
        lock.acquire()
        locks.append(lock)

    yield take
    for lock in locks:
        lock.release()


def increment(state: RiskState) -> RiskState:
    """Add one to a counter (what the lock test's workers do)."""
    state.fills_applied_seq += 1
    return state


def increment_many(path: str, times: int) -> None:
    """Worker of the multi-process lock test (module level, so spawn can import it)."""
    store = RiskStateStore(path, ACCOUNT, lock_timeout_s=60.0)
    for _ in range(times):
        store.update(increment)


# -- round trips ----------------------------------------------------------------------------


def test_init_writes_a_versioned_checksummed_file(store: RiskStateStore) -> None:
    """The file holds the schema version, the payload and the payload's SHA-256."""
    doc = json.loads(store.path.read_text())
    assert (1, checksum(doc["payload"])) == (doc["schema_version"], doc["sha256"])
    assert RiskState.fresh(ACCOUNT, NOW) == store.read()


@pytest.mark.skipif(os.name == "nt", reason="POSIX permission bits")
def test_state_file_is_private_to_its_owner(store: RiskStateStore) -> None:
    """The risk state is written mode 0600 (it names the account)."""
    assert 0o600 == store.path.stat().st_mode & 0o777


def test_update_persists_what_the_function_returns(store: RiskStateStore) -> None:
    """``update`` writes the new state and ``read`` returns it."""
    written = store.update(increment)
    assert (1, written) == (store.read().fills_applied_seq, store.read())


def test_update_writes_nothing_when_the_function_raises(store: RiskStateStore) -> None:
    """A failing update leaves the file byte for byte as it was."""
    before = store.path.read_bytes()

    def fail(state: RiskState) -> RiskState:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        store.update(fail)
    assert before == store.path.read_bytes()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.model_copy(update={"account_id": "other"}), "refusing to write account"),
        (lambda s: s.model_copy(update={"last_equity": float("nan")}), "invalid risk state"),
        (lambda s: s.model_copy(update={"approvals": -1}), "invalid risk state"),
    ],
)
def test_update_refuses_to_write_a_bad_state(
    store: RiskStateStore, change: Callable[[RiskState], RiskState], message: str
) -> None:
    """Another account's state, NaN or an out-of-range field never reaches the disk."""
    before = store.path.read_bytes()
    with pytest.raises(RiskStateError, match=message):
        store.update(change)
    assert before == store.path.read_bytes()


def test_writes_leave_no_temporary_files(store: RiskStateStore) -> None:
    """Only the state file and its lock file remain after writes."""
    for _ in range(3):
        store.update(increment)
    expected = sorted([store.path.name, store.lock_path.name])
    assert expected == sorted(p.name for p in store.path.parent.iterdir())


def test_gate_state_survives_a_round_trip_through_the_store(store: RiskStateStore) -> None:
    """A gate restored from the file continues exactly where the saved one stopped."""
    gate = RiskGate(RiskLimits(max_units_per_symbol=10), store.read())
    gate.check("EURUSD", 50, price=1.1, positions={}, equity=1e5, now_ns=NOW)
    gate.check(
        "EURUSD", 5, price=1.1, positions={"EURUSD": Holding(10, 1.1)}, equity=1e5, now_ns=NOW
    )
    gate.halt("USDJPY", "test halt", now_ns=NOW)
    store.update(lambda _old: gate.snapshot())
    restored = RiskGate(gate.limits, store.read())
    assert gate.snapshot() == restored.snapshot()
    assert {DenialReason.MAX_UNITS: 1} == restored.stats().denials
    assert TradingState.HALTED == restored.state_of("USDJPY")


# -- missing file ---------------------------------------------------------------------------


def test_missing_file_is_an_error_not_a_fresh_start(tmp_path: Path) -> None:
    """Reading or updating a missing file raises and creates nothing."""
    store = RiskStateStore(tmp_path / "risk_state.json", ACCOUNT)
    with pytest.raises(RiskStateError, match="does not exist; restore it from a backup"):
        store.read()
    with pytest.raises(RiskStateError, match="does not exist"):
        store.update(increment)
    assert not store.exists()


def test_missing_data_directory_reads_as_a_missing_file(tmp_path: Path) -> None:
    """A data directory that is not there gives the missing-file message."""
    store = RiskStateStore(tmp_path / "nowhere" / "risk_state.json", ACCOUNT)
    with pytest.raises(RiskStateError, match="does not exist"):
        store.read()


def test_init_refuses_to_overwrite_an_existing_file(store: RiskStateStore) -> None:
    """``init`` never replaces a state file, valid or not."""
    with pytest.raises(RiskStateError, match="already exists"):
        store.init(now_ns=NOW)


# -- bad files ------------------------------------------------------------------------------


def _doc(store: RiskStateStore) -> dict[str, object]:
    loaded: dict[str, object] = json.loads(store.path.read_bytes())
    return loaded


def _dump(doc: object) -> bytes:
    return json.dumps(doc, indent=2).encode()


def truncated(store: RiskStateStore) -> bytes:
    """The first half of a valid file (a torn write)."""
    raw = store.path.read_bytes()
    return raw[: len(raw) // 2]


def corrupt_json(store: RiskStateStore) -> bytes:
    """A valid file with one byte of its syntax flipped."""
    return store.path.read_bytes().replace(b'"payload":', b'"payload";', 1)


def checksum_mismatch(store: RiskStateStore) -> bytes:
    """A payload edited by hand without updating the checksum."""
    doc = _doc(store)
    payload = doc["payload"]
    assert isinstance(payload, dict)
    payload["approvals"] = 99
    return _dump(doc)


def schema(version: object) -> Callable[[RiskStateStore], bytes]:
    """A valid file claiming another schema version."""

    def make(store: RiskStateStore) -> bytes:
        doc = _doc(store)
        doc["schema_version"] = version
        return _dump(doc)

    return make


def other_account(store: RiskStateStore) -> bytes:
    """A valid file of another account."""
    other = RiskStateStore(store.path.with_name("other.json"), "999-other")
    other.init(now_ns=NOW)
    return other.path.read_bytes()


def invalid_payload(store: RiskStateStore) -> bytes:
    """A correctly checksummed payload with a field out of range."""
    doc = _doc(store)
    payload = doc["payload"]
    assert isinstance(payload, dict)
    payload["approvals"] = -1
    doc["sha256"] = checksum(payload)
    return _dump(doc)


BAD_FILES: dict[str, tuple[Callable[[RiskStateStore], bytes], str]] = {
    "truncated": (truncated, "is truncated"),
    "corrupt_json": (corrupt_json, r"is not valid JSON \(Expecting ':' delimiter"),
    "checksum_mismatch": (checksum_mismatch, "failed its SHA-256 checksum"),
    "newer_schema": (schema(2), "has schema version 2 but this forexd reads version 1; a newer"),
    "older_schema": (schema(0), "has schema version 0 but this forexd reads version 1"),
    "boolean_schema": (schema(True), "has schema version True"),
    "other_account": (other_account, "belongs to account '999-other', not '001-001"),
    "empty": (lambda _s: b"", "is empty"),
    "blank": (lambda _s: b"  \n", "is empty"),
    "not_utf8": (lambda _s: b"\xff\xfe{}", "is not UTF-8"),
    "not_a_state_file": (lambda _s: b"[1, 2]", "is not a forexd risk state file"),
    "invalid_payload": (invalid_payload, r"has an invalid payload \(approvals"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_file_raises_its_documented_message(store: RiskStateStore, case: str) -> None:
    """Each kind of damage raises RiskStateError naming the file, the problem and the fix."""
    make, message = BAD_FILES[case]
    store.path.write_bytes(make(store))
    with pytest.raises(RiskStateError, match=message) as caught:
        store.read()
    text = str(caught.value)
    assert (True, True) == (str(store.path) in text, "forexd risk repair" in text)
    with pytest.raises(RiskStateError, match=message):
        store.update(increment)


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_repair_keeps_a_backup_and_writes_a_valid_halted_state(
    store: RiskStateStore, case: str
) -> None:
    """Repair keeps the bad bytes aside and leaves a valid file with the account halted."""
    make, message = BAD_FILES[case]
    bad = make(store)
    store.path.write_bytes(bad)
    report = store.repair(now_ns=NOW + 1)
    assert report.backup is not None
    assert ("rebuilt", bad) == (report.action, report.backup.read_bytes())
    assert report.backup.name.startswith("risk_state.json.corrupt-20240612T140000")
    assert report.problem is not None and re.search(message, report.problem)
    state = store.read()
    assert (TradingState.HALTED, StateCause.REPAIR) == (state.account.state, state.account.cause)
    assert (report.state, ACCOUNT) == (state, state.account_id)


def test_repair_seeds_the_fresh_state_from_the_caller(store: RiskStateStore) -> None:
    """A seed function fills the rebuilt state (e.g. the fills high-water mark)."""
    store.path.write_bytes(b"")

    def seed(state: RiskState) -> RiskState:
        state.fills_applied_seq = 42
        return state

    report = store.repair(seed, now_ns=NOW)
    assert (True, 42) == (report.seeded, store.read().fills_applied_seq)


def test_repair_of_a_valid_file_does_nothing_unless_forced(store: RiskStateStore) -> None:
    """A valid file is left alone; ``force`` rebuilds it with a backup."""
    before = store.path.read_bytes()
    report = store.repair(now_ns=NOW)
    assert ("none", None, before) == (report.action, report.backup, store.path.read_bytes())
    forced = store.repair(now_ns=NOW, force=True, halt=False)
    assert forced.backup is not None
    assert ("rebuilt", before) == (forced.action, forced.backup.read_bytes())
    assert TradingState.ACTIVE == store.read().account.state


def test_repair_of_a_missing_file_creates_one(tmp_path: Path) -> None:
    """Repair with nothing to back up creates a fresh, halted state."""
    store = RiskStateStore(tmp_path / "risk_state.json", ACCOUNT)
    report = store.repair(now_ns=NOW)
    assert ("created", None, True) == (report.action, report.backup, report.halted)
    assert TradingState.HALTED == store.read().account.state


def test_repeated_repairs_keep_every_backup(store: RiskStateStore) -> None:
    """Two repairs in the same instant do not overwrite each other's backup."""
    backups = []
    for content in (b"one", b"two"):
        store.path.write_bytes(content)
        report = store.repair(now_ns=NOW)
        assert report.backup is not None
        backups.append(report.backup.read_bytes())
    assert [b"one", b"two"] == backups


# -- locking --------------------------------------------------------------------------------


def test_read_times_out_with_a_clear_error_while_a_writer_holds_the_lock(
    store: RiskStateStore, held_lock: Callable[[bool], None]
) -> None:
    """A lock held past the timeout raises RiskStateError naming the lock file."""
    held_lock(True)
    with pytest.raises(RiskStateError, match=r"is still held by another process after 0\.2 s"):
        store.read()


def test_update_waits_for_readers(store: RiskStateStore, held_lock: Callable[[bool], None]) -> None:
    """A shared (reader's) lock keeps a writer out."""
    held_lock(False)
    with pytest.raises(RiskStateError, match="still held"):
        store.update(increment)


def test_readers_share_the_lock(store: RiskStateStore, held_lock: Callable[[bool], None]) -> None:
    """A reader is not blocked by another reader."""
    held_lock(False)
    assert ACCOUNT == store.read().account_id


@pytest.mark.slow
def test_concurrent_processes_lose_no_update(store: RiskStateStore) -> None:
    """4 spawned processes × 500 locked increments give exactly 2,000 and a valid file."""
    ctx = multiprocessing.get_context("spawn")
    workers = [
        ctx.Process(target=increment_many, args=(str(store.path), UPDATES_PER_WORKER))
        for _ in range(WORKERS)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [0] * WORKERS == [worker.exitcode for worker in workers]
    assert WORKERS * UPDATES_PER_WORKER == store.read().fills_applied_seq
