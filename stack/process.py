"""Start, observe and stop one server process of the embedded stack.

A server is either our child (started in this Python process, reaped with
`Popen.wait`) or a process recorded by an earlier `heatstream stack up` (known only
by pid). For the latter, a pid alone is not trusted: the kernel may have reused it,
so a process counts as ours only if its command line is the one we recorded. A
zombie counts as gone: it holds no port and no memory, and only its parent (often
init, which may reap lazily) can remove it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from heatstream.stack.errors import StackError

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: ask Linux to SIGTERM it when the
    # spawning thread dies, so a killed test run leaves no orphaned servers.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class ServerProcess:
    """A running (or once running) server: enough to find, check and stop it."""

    name: str
    pid: int
    argv: tuple[str, ...]
    log: Path
    popen: subprocess.Popen[bytes] | None = field(default=None, compare=False, repr=False)

    def alive(self) -> bool:
        """True while the process runs (not exited, not a zombie, not a reused pid)."""
        if self.popen is not None:
            return self.popen.poll() is None
        return _pid_runs(self.pid, self.argv)

    def exit_code(self) -> int | None:
        """The exit status when it is our child and has exited, else None."""
        return None if self.popen is None else self.popen.poll()

    def log_tail(self, lines: int = 25) -> str:
        """The last lines of its log, for error messages."""
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return f"(no log at {self.log})"
        tail = text.rstrip().splitlines()[-lines:]
        return "\n".join(tail) if tail else f"({self.log} is empty)"

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM, SIGKILL after `grace_s`, and wait until it is gone."""
        if self.alive():
            self._signal(signal.SIGTERM)
            if not _wait_until(lambda: not self.alive(), grace_s):
                self._signal(signal.SIGKILL)
                if not _wait_until(lambda: not self.alive(), 5.0):
                    raise StackError(f"{self.name} (pid {self.pid}) survived SIGKILL")
        self._reap()

    def _signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signum)

    def _reap(self) -> None:
        if self.popen is not None:
            self.popen.wait()
            return
        # Not our child unless this process is a subreaper that inherited it.
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(self.pid, os.WNOHANG)


def spawn(
    name: str,
    argv: Sequence[str],
    log: Path,
    *,
    detach: bool,
    env: Mapping[str, str] | None = None,
) -> ServerProcess:
    """Start `argv` with stdout and stderr appended to `log`, and `env` added to
    this process's environment.

    `detach=True` (the CLI): the server gets its own session and outlives this
    process. `detach=False` (tests, library use): it is killed when the spawning
    thread dies, so call this from a thread that lives as long as the stack.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=log.parent,
            env=None if env is None else {**os.environ, **env},
            start_new_session=True,
            preexec_fn=None if detach else _die_with_parent,
        )
    return ServerProcess(name=name, pid=popen.pid, argv=tuple(argv), log=log, popen=popen)


def _pid_runs(pid: int, argv: Sequence[str]) -> bool:
    proc = Path("/proc") / str(pid)
    if not Path("/proc/self").exists():  # not Linux: best effort
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    try:
        stat = (proc / "stat").read_text()
        cmdline = (proc / "cmdline").read_bytes()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    if state in ("Z", "X"):
        return False
    return cmdline.rstrip(b"\0").split(b"\0") == [os.fsencode(a) for a in argv]


def _wait_until(predicate: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
