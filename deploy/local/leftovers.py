"""What an earlier `make run` of this clone left running, found and stopped.

Its children end with it (deploy/local/lifetime.py), but not always: a run of an older
version, a broker started by hand from `python -m deploy.local.kafka run` and killed, a
platform without a parent-death signal. A new `make run` stops such leftovers before it
starts, so it never meets "address already in use" or a second broker on the same data.

A process is this clone's leftover when `make run` of this clone started it (it carries
MARKER=<clone> in its environment), or when it runs on the data `make run` owns here
(an argument that is exactly the broker's server.properties or the cluster's pgdata).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

import psutil  # type: ignore[import-untyped]

from deploy.local.kafka import REPO_ROOT

# Set by `make run` in its own environment: every process it starts inherits it.
MARKER = "TOPUP_MAKE_RUN"


def started_by_make_run(process: psutil.Process) -> str | None:
    """The clone whose `make run` started `process`, if one did (and we may look)."""
    try:
        environment: dict[str, str] = process.environ()
    except (psutil.Error, OSError):
        return None
    return environment.get(MARKER)


def find(root: Path = REPO_ROOT, data: Iterable[Path] = ()) -> list[psutil.Process]:
    """Live processes an earlier `make run` of `root` left, or that run on its `data`."""
    data_paths = [str(path) for path in data]
    found = []
    for process in psutil.process_iter(["cmdline", "environ", "status"]):
        if process.pid == os.getpid() or process.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        environment = process.info["environ"] or {}
        cmdline = process.info["cmdline"] or []
        on_our_data = any(arg in data_paths for arg in cmdline)
        if environment.get(MARKER) == str(root) or on_our_data:
            found.append(process)
    return found


def stop(processes: list[psutil.Process], timeout: float = 15.0) -> list[str]:
    """SIGTERM, then SIGKILL what is still there after `timeout`; 'name (pid N)' of each."""
    stopped = []
    for process in processes:
        try:
            stopped.append(f"{describe(process)} (pid {process.pid})")
            process.terminate()
        except psutil.NoSuchProcess:
            continue
    for process in _still_running(processes, timeout):
        try:
            process.kill()
        except psutil.NoSuchProcess:
            continue
    _still_running(processes, timeout)
    return stopped


def _still_running(processes: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait up to `timeout` for them to end. An orphan that ended stays a zombie until its
    new parent reaps it, which a container's init may never do: ended all the same."""
    deadline = time.monotonic() + timeout
    while True:
        running = [p for p in processes if _is_running(p)]
        if not running or time.monotonic() > deadline:
            return running
        time.sleep(0.1)


def _is_running(process: psutil.Process) -> bool:
    try:
        return bool(process.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def describe(process: psutil.Process) -> str:
    """A short name a user recognises: 'kafka', 'postgres', 'orders', else the command."""
    try:
        cmdline: list[str] = process.cmdline()
        name: str = process.name()
    except (psutil.Error, OSError):
        return "a process we may not inspect"
    if "kafka.Kafka" in cmdline:
        return "kafka"
    if "-m" in cmdline and cmdline.index("-m") + 1 < len(cmdline):
        module = cmdline[cmdline.index("-m") + 1]
        if module.startswith("services."):
            return module.removeprefix("services.")
    if cmdline and Path(cmdline[0]).name == "postgres":
        return "postgres"
    text = " ".join(cmdline) or name
    return text if len(text) <= 60 else text[:57] + "..."
