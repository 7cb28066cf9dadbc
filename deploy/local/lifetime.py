"""Children that end with the process that started them, however it ends.

`make run` starts Kafka, PostgreSQL and four services, each in a session of its own (so a
Ctrl-C reaches only the supervisor, which stops them in order). Killed hard (SIGKILL, an
OOM kill, a closed terminal's SIGHUP ignored), the supervisor cannot stop anything: the
kernel does it instead. Linux's parent-death signal (prctl PR_SET_PDEATHSIG) is sent to the
child when the thread that started it ends, so start children from a thread that lives as
long as they should (`make run` starts them all from its main thread).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1
# Loaded now: a forked child of a threaded process must not load libraries.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def die_with_parent(sig: signal.Signals = signal.SIGTERM) -> Callable[[], None] | None:
    """A `preexec_fn` for subprocess.Popen: the child gets `sig` when its parent dies.

    It runs in the child after Popen's own user switch (`user=`), which would otherwise
    clear the setting. Elsewhere than Linux: None (the next `make run` stops leftovers).
    """
    if _LIBC is None:
        return None
    libc = _LIBC
    parent = os.getpid()

    def arrange() -> None:
        if libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            os._exit(126)
        if os.getppid() != parent:  # the parent died before the line above: do not start
            os._exit(1)

    return arrange
