"""One `make run` per clone: a lock the running one holds, gone with it however it ends.

An flock(2) on var/run/make-run.lock: the kernel releases it when the holder exits, even
by SIGKILL, so a lock file left behind never blocks anyone. The file holds the holder's pid
and start time, only to tell the next one who has it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from deploy.local.errors import StackError
from deploy.local.kafka import REPO_ROOT

LOCK_FILE = REPO_ROOT / "var" / "run" / "make-run.lock"


@contextlib.contextmanager
def only_run_in_this_clone(path: Path = LOCK_FILE) -> Iterator[None]:
    """Hold the clone's lock while the block runs, or refuse if another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StackError(
                f"make run is already running in this clone ({holder(path)}): use that one, "
                "or stop it first (Ctrl-C in its terminal)"
            ) from None
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"{os.getpid()} {time.strftime('%H:%M:%S')}\n".encode())
        yield
    finally:
        os.close(descriptor)  # releases the lock


def is_held(path: Path = LOCK_FILE) -> bool:
    """True while a `make run` of this clone holds the lock (for `make clean`)."""
    if not path.exists():
        return False
    descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(descriptor)
    return False


def holder(path: Path = LOCK_FILE) -> str:
    """'pid 123, started 10:41:07', as the holder wrote it."""
    try:
        pid, started = path.read_text().split()
    except (OSError, ValueError):
        return "pid unknown"
    return f"pid {pid}, started {started}"
