"""Control token file: random token, private file, atomic replace, constant-time compare."""

from __future__ import annotations

import os
import re
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from forexd.daemon.tokenfile import (
    TokenFileError,
    generate_token,
    read_token,
    tokens_match,
    write_token,
)

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")


@pytest.fixture
def open_umask() -> Iterator[None]:
    """Run with umask 000, so any permission left to the umask would be world-readable."""
    old = os.umask(0)
    yield
    os.umask(old)


def test_generated_tokens_are_long_random_and_url_safe() -> None:
    """token_urlsafe(32): 43 URL-safe characters, never repeated."""
    tokens = {generate_token() for _ in range(100)}
    assert 100 == len(tokens)
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{43}", t) for t in tokens)


def test_written_token_reads_back(tmp_path: Path) -> None:
    """The client reads the token the daemon wrote."""
    path = tmp_path / "run" / "ctl.token"
    token = write_token(path)
    assert token == read_token(path)


@posix_only
@pytest.mark.usefixtures("open_umask")
def test_token_file_is_private_even_with_an_open_umask(tmp_path: Path) -> None:
    """The file is 0600 and a new parent directory 0700, whatever the umask."""
    path = tmp_path / "run" / "ctl.token"
    write_token(path, "fixed-token")
    modes = (stat.S_IMODE(path.stat().st_mode), stat.S_IMODE(path.parent.stat().st_mode))
    assert (0o600, 0o700) == modes


def test_rewriting_replaces_the_token_and_leaves_no_temp_files(tmp_path: Path) -> None:
    """A restart's new token replaces the old one atomically."""
    path = tmp_path / "ctl.token"
    write_token(path, "first-token")
    write_token(path, "second-token")
    assert ("second-token", ["ctl.token"]) == (
        read_token(path),
        sorted(p.name for p in tmp_path.iterdir()),
    )


@pytest.mark.parametrize("bad", ["", " padded", "two\nlines"])
def test_malformed_tokens_are_not_written(tmp_path: Path, bad: str) -> None:
    """A token that would not read back identically is refused."""
    with pytest.raises(TokenFileError):
        write_token(tmp_path / "ctl.token", bad)


@posix_only
def test_a_token_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    """A 0644 token may be known to another user: the client refuses it."""
    path = tmp_path / "ctl.token"
    write_token(path, "exposed-token")
    path.chmod(0o644)
    with pytest.raises(TokenFileError, match="accessible by other users"):
        read_token(path)


def test_a_missing_token_file_says_what_to_check(tmp_path: Path) -> None:
    """No token file: the error names the file and the likely cause."""
    with pytest.raises(TokenFileError, match=r"does not exist; is the daemon running"):
        read_token(tmp_path / "ctl.token")


def test_an_empty_token_file_is_refused(tmp_path: Path) -> None:
    """An empty file cannot authenticate anything."""
    path = tmp_path / "ctl.token"
    path.write_text("\n")
    path.chmod(0o600)
    with pytest.raises(TokenFileError, match="empty"):
        read_token(path)


@pytest.mark.parametrize(
    ("presented", "expected"),
    [
        ("s3cret-token", True),
        ("s3cret-tokeN", False),
        ("s3cret-token ", False),
        ("", False),
        (None, False),
        (12345, False),
        ("s3cret-tökén", False),
    ],
)
def test_tokens_match_only_the_exact_string(presented: object, expected: bool) -> None:
    """Only the identical string matches; other types and non-ASCII never raise."""
    assert expected == tokens_match("s3cret-token", presented)


def test_an_empty_expected_token_matches_nothing() -> None:
    """A daemon that has no token yet accepts no client, even one sending ''."""
    assert not tokens_match("", "")
