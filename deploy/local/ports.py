"""The ports `make run` needs, checked before anything starts: a busy one is named with
who holds it and the variable to set, in one line, instead of a Java stack trace."""

from __future__ import annotations

import socket
from collections.abc import Mapping

import psutil  # type: ignore[import-untyped]

from deploy.local.errors import StackError
from deploy.local.kafka import free_port
from deploy.local.leftovers import describe, started_by_make_run


def port_setting(env: Mapping[str, str], variable: str, default: int) -> int:
    """The port in `variable`, or `default`; a readable error for anything else."""
    raw = env.get(variable, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise StackError(f"{variable} must be a port number (1-65535), not {raw[:20]!r}")
    return int(raw)


def is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on `port` now (as ours do, with SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def check_free(wanted: Mapping[str, int]) -> None:
    """Raise one StackError naming every busy port of `wanted` (variable -> port), who
    holds it, and a command line with free ports to use instead."""
    by_port: dict[int, str] = {}
    for variable, port in wanted.items():
        if port in by_port:
            raise StackError(f"{variable} and {by_port[port]} are both {port}: give each its own")
        by_port[port] = variable
    busy = {variable: port for variable, port in wanted.items() if not is_free(port)}
    if not busy:
        return
    held = "; ".join(f"{port} ({variable}) by {holder_of(port)}" for variable, port in busy.items())
    taken = set(wanted.values())
    instead = []
    for variable, port in busy.items():
        other = next_free(port, taken)
        taken.add(other)
        instead.append(f"{variable}={other}")
    raise StackError(
        f"port{'s' if len(busy) > 1 else ''} in use: {held}. Stop that, or run on free ports: "
        f"make run {' '.join(instead)}"
    )


def holder_of(port: int) -> str:
    """'pid 12 (kafka, make run in /src/other-clone)', or what little we may know."""
    try:
        connections = psutil.net_connections(kind="tcp")
    except (psutil.Error, OSError):
        connections = []
    pids = {c.pid for c in connections if c.status == psutil.CONN_LISTEN and c.laddr.port == port}
    pids.discard(None)
    if not pids:
        return "a process of another user"
    pid = min(pids)
    try:
        process = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return f"pid {pid} (gone since)"
    clone = started_by_make_run(process)
    where = f", make run in {clone}" if clone else ""
    return f"pid {pid} ({describe(process)}{where})"


def next_free(port: int, taken: set[int]) -> int:
    """The first free port above `port` that is not already `taken`."""
    for candidate in range(port + 1, min(port + 1000, 65536)):
        if candidate not in taken and is_free(candidate):
            return candidate
    return free_port()  # none near: any port the system gives
