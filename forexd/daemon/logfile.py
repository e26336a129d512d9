"""A size-rotated log file that stands in for ``sys.stdout``.

Where there is no journal to catch standard output — a Windows service above all — the
JSON log lines go to ``<data dir>/logs/forexd.jsonl``, rotated by size into ``.1`` …
``.N``. It is a stream (``write``/``flush``/``isatty``) rather than a
``logging.handlers.RotatingFileHandler`` because forexd's structlog setup prints rendered
lines to a stream. Rotation happens between writes, and structlog writes each line in
one, so a log line is never split across files.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path

LOG_MAX_BYTES = 10 * 2**20  # guessed: ~50k lines per file
LOG_BACKUPS = 5


class RotatingLogFile:
    """A text stream appending to a file that rotates by size (``name.1`` … ``name.N``).

    Thread-safe: compute threads may log while the loop does.
    """

    def __init__(
        self, path: Path, max_bytes: int = LOG_MAX_BYTES, backups: int = LOG_BACKUPS
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._lock = threading.Lock()
        self._fh: io.BufferedWriter | None = None
        self._size = 0

    def write(self, text: str) -> int:
        """Append ``text``; rotate first if it would push the file over ``max_bytes``."""
        data = text.encode("utf-8", errors="replace")
        with self._lock:
            fh = self._fh if self._fh is not None else self._open()
            if self._size and self._size + len(data) > self.max_bytes:
                fh = self._rotate(fh)
            fh.write(data)
            self._size += len(data)
        return len(text)

    def flush(self) -> None:
        """Flush to the OS."""
        with self._lock:
            if self._fh is not None:
                self._fh.flush()

    def isatty(self) -> bool:
        """Never a terminal (the logging setup picks JSON)."""
        return False

    def close(self) -> None:
        """Close the current file."""
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None

    def _open(self) -> io.BufferedWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = self.path.open("ab")
        self._fh, self._size = fh, fh.tell()
        return fh

    def _rotate(self, fh: io.BufferedWriter) -> io.BufferedWriter:
        fh.close()
        for index in range(self.backups, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            newer = self.path.with_name(f"{self.path.name}.{index - 1}") if index > 1 else self.path
            if newer.exists():
                newer.replace(older)  # replace() overwrites on Windows too
        if self.backups == 0:
            self.path.unlink(missing_ok=True)
        return self._open()
