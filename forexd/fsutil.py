"""Crash-safe file replacement, shared by every file forexd writes whole.

Temp file in the same directory, write, flush, fsync, ``os.replace``, fsync of the
directory: a crash at any point leaves either the old file or the new one, never a torn
mix. Used by the risk state file, model artifacts and systemd unit files.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path


def fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (POSIX only; Windows cannot open a dir)."""
    if os.name == "nt":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        # Some filesystems (certain network and FUSE mounts) refuse fsync on a directory;
        # the rename has happened and there is nothing better to do than go on.
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, mode: int | None = None) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new file.

    Args:
        path: the file to replace (its directory is created if missing).
        data: the new content.
        mode: permission bits for the new file (default: the temp file's 0600).

    Raises:
        OSError: the write failed; ``path`` is untouched and no temporary file is left.
    """
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            Path(tmp).chmod(mode)
        Path(tmp).replace(path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            Path(tmp).unlink()
        raise
    fsync_dir(directory)
