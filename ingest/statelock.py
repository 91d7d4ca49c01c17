"""One process per gateway state directory.

Two processes running the same gateway on the same state would both hand out
sequence numbers from the same reservation and publish different events under
the same ids, which downstream de-duplication would then silently discard. An
exclusive `flock` on a lock file prevents it; the kernel releases it when the
holder dies, even by SIGKILL, so a crashed gateway restarts without cleanup.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from heatstream.ingest.errors import StateLockedError


class StateLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StateLockedError(
                f"{self.path} is held by another process (pid {holder}): one gateway id,"
                " one running process per state directory"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
