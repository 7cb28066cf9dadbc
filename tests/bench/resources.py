"""CPU seconds and peak memory of the processes under test, read from the OS (psutil and
/proc), so a phase's CPU cost per saga is the difference of two readings."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import psutil  # type: ignore[import-untyped]

CpuReading = dict[str, float]  # process name -> CPU seconds (user + system) so far


@dataclass
class Tracked:
    process: psutil.Process
    # With its children (PostgreSQL: the postmaster and a backend per connection).
    tree: bool = False


@dataclass
class ResourceMeter:
    tracked: dict[str, Tracked] = field(default_factory=dict)
    peak_rss_mb: dict[str, float] = field(default_factory=dict)

    def track(self, name: str, pid: int, *, tree: bool = False) -> None:
        self.tracked[name] = Tracked(psutil.Process(pid), tree)

    def forget(self, name: str) -> None:
        """Before a process stops: its peak memory is kept, its CPU no longer read."""
        self.read_peaks()
        self.tracked.pop(name, None)

    def cpu_seconds(self) -> CpuReading:
        self.read_peaks()
        return {name: _cpu_of(t) for name, t in self.tracked.items()}

    def read_peaks(self) -> None:
        """VmHWM is the peak resident set since the process started: reading it before the
        process goes is enough. For a tree, the largest of its processes."""
        for name, tracked in self.tracked.items():
            peak = max((_vm_hwm_mb(p) for p in _members(tracked)), default=0.0)
            self.peak_rss_mb[name] = max(self.peak_rss_mb.get(name, 0.0), peak)


def cpu_spent(before: CpuReading, after: CpuReading) -> CpuReading:
    return {name: after[name] - before[name] for name in after if name in before}


def _members(tracked: Tracked) -> list[psutil.Process]:
    members = [tracked.process]
    if tracked.tree:
        with contextlib.suppress(psutil.Error):
            members += tracked.process.children(recursive=True)
    return members


def _cpu_of(tracked: Tracked) -> float:
    total = 0.0
    for process in _members(tracked):
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def _vm_hwm_mb(process: psutil.Process) -> float:
    try:
        status = Path(f"/proc/{process.pid}/status").read_text()
    except OSError:
        return 0.0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    return 0.0
