"""The control channel's token file (loopback TCP, where there are no Unix sockets).

Loopback TCP cannot tell who is connecting, so the daemon writes a random token to a
file only its own user can read, and a client proves it may talk to the daemon by
sending the token back. Tokens are compared in constant time.

Permissions: on POSIX the file is created 0600 (``mkstemp`` never makes it wider, so no
umask race) and replaced atomically, so a reader sees the old token or the new one,
never half of one. On Windows POSIX modes mean nothing; with pywin32 installed the file
gets a protected DACL granting full access to the current user and read access to
``BUILTIN\\Administrators`` (an elevated administrator runs ``forexd ctl`` against a
service running under its own account), and nothing inherited. Without pywin32 the file
keeps the ACL inherited from its directory: ``forexd service install`` on Windows
restricts the data directory to SYSTEM, Administrators and the service account
(docs/service.md), which is what protects the token then.
"""

from __future__ import annotations

import hmac
import importlib
import os
import secrets
import stat
import sys
import tempfile
from pathlib import Path

from forexd.errors import ForexdError

TOKEN_BYTES = 32  # 256 bits of randomness; token_urlsafe makes that 43 characters
ADMINISTRATORS_SID = "S-1-5-32-544"


class TokenFileError(ForexdError):
    """The token file is missing, unreadable, empty or readable by other users."""


def generate_token() -> str:
    """A fresh random URL-safe token."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def write_token(path: Path, token: str | None = None) -> str:
    """Write a token where only this user can read it, replacing any earlier one.

    Args:
        path: the token file; its directory is created (0700) if missing.
        token: the token to write; a new one from :func:`generate_token` if omitted.

    Returns:
        The token written.

    Raises:
        TokenFileError: the file could not be written or protected.
    """
    token = generate_token() if token is None else token
    if not token or token != token.strip() or "\n" in token:
        raise TokenFileError("a control token must be non-empty with no surrounding spaces")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
                    _restrict_windows_acl(tmp)
                fh.write(token + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            tmp.replace(path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise TokenFileError(f"cannot write the control token file {path}: {exc}") from None
    return token


def read_token(path: Path) -> str:
    """Read the token a daemon wrote (client side).

    Raises:
        TokenFileError: the file is missing, unreadable or empty; or, on POSIX, group or
            others may read or write it, so the token may be known to someone else.
    """
    try:
        if sys.platform != "win32":
            mode = path.stat().st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise TokenFileError(
                    f"control token file {path} is accessible by other users (mode "
                    f"{stat.S_IMODE(mode):04o}); restart the daemon to write a new one "
                    "with mode 0600"
                )
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise TokenFileError(
            f"control token file {path} does not exist; is the daemon running with the "
            "TCP control transport for this data directory?"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenFileError(f"cannot read the control token file {path}: {exc}") from None
    if not token:
        raise TokenFileError(f"control token file {path} is empty; restart the daemon")
    return token


def tokens_match(expected: str, presented: object) -> bool:
    """Compare a presented token with the expected one in constant time.

    Anything that is not a non-empty ``str`` (a missing field, a number, ``None``) is
    rejected; comparing bytes keeps non-ASCII input from raising.
    """
    if not isinstance(presented, str) or not expected:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), presented.encode("utf-8"))


def _restrict_windows_acl(path: Path) -> bool:  # pragma: no cover - Windows only
    """Give ``path`` a protected DACL: this user full access, Administrators read.

    Returns:
        ``False`` when pywin32 is not installed (the inherited ACL stays).
    """
    try:
        win32api = importlib.import_module("win32api")
        win32security = importlib.import_module("win32security")
    except ImportError:
        return False
    process_token = win32security.OpenProcessToken(
        win32api.GetCurrentProcess(), win32security.TOKEN_QUERY
    )
    user_sid, _attributes = win32security.GetTokenInformation(
        process_token, win32security.TokenUser
    )
    user = win32security.ConvertSidToStringSid(user_sid)
    # D:P = protected DACL (no inherited entries); FA = full access; FR = read.
    sddl = f"D:P(A;;FA;;;{user})(A;;FR;;;{ADMINISTRATORS_SID})"
    descriptor = win32security.ConvertStringSecurityDescriptorToSecurityDescriptor(
        sddl, win32security.SDDL_REVISION_1
    )
    win32security.SetNamedSecurityInfo(
        str(path),
        win32security.SE_FILE_OBJECT,
        win32security.DACL_SECURITY_INFORMATION | win32security.PROTECTED_DACL_SECURITY_INFORMATION,
        None,
        None,
        descriptor.GetSecurityDescriptorDacl(),
        None,
    )
    return True
