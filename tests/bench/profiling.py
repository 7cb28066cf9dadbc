"""Where each service spends its CPU under load: py-spy samples every service process for
one closed-loop phase (it reads their memory from outside: root, no restart, no pause),
keeping the samples taken while the interpreter held the GIL (Python at work, not waiting
on the network or a lock). Those are summed by the function on top of the stack (own
time), by the package that function belongs to, and by the project's own functions they
ran under (inclusive time: which handler or loop the time goes to).

Per service it writes `<service>.collapsed.txt` (collapsed stacks: open it in
https://www.speedscope.app or feed it to flamegraph.pl) and `<service>.top.txt`.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SAMPLES_PER_S = 100
TOP = 15
OWN_CODE = frozenset({"services", "shared"})
EVENT_LOOP = "Runner.run (asyncio/"
NO_FRAME = "(no Python frame: native code)"
NO_TASK = "(no task: the event loop itself, or native code)"
_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")


@dataclass(frozen=True)
class Profile:
    service: str
    samples: int  # samples holding the GIL: waiting (epoll, locks) is not sampled
    seconds: float
    own: Counter[str]  # function -> samples with it on top of the stack
    own_by_package: Counter[str]
    # The project's own functions (services/, shared/) by inclusive time: which code path
    # the time is spent under (a handler, the outbox relay...).
    ours_inclusive: Counter[str]
    # The frame each sample's task started from, under the event loop (a consumer's loop,
    # the outbox relay, a greenlet resumed by SQLAlchemy...).
    by_entry: Counter[str]
    collapsed: Path

    def top(self, counter: Counter[str], n: int = TOP) -> list[dict[str, Any]]:
        return [
            {"name": name, "own_pct": round(100 * count / self.samples, 1)}
            for name, count in counter.most_common(n)
        ]

    def figures(self) -> dict[str, Any]:
        return {
            "busy_share": round(self.samples / (self.seconds * SAMPLES_PER_S), 3),
            "samples": self.samples,
            "top_functions": self.top(self.own),
            "top_packages": self.top(self.own_by_package, 8),
            "top_own_code_inclusive": self.top(self.ours_inclusive),
            "top_entry_points": self.top(self.by_entry, 8),
            "collapsed_stacks": self.collapsed.name,
        }


def py_spy() -> str:
    """py-spy of the virtualenv the benchmark runs in, else the one on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if found is None:
        raise RuntimeError("py-spy not found (it is in the dev dependencies)")
    return found


async def record(pids: dict[str, int], seconds: float, out_dir: Path) -> dict[str, Profile]:
    """Sample every process in `pids` at once for `seconds`."""
    runs = {}
    for service, pid in pids.items():
        collapsed = out_dir / f"{service}.collapsed.txt"
        command = [
            py_spy(),
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            str(SAMPLES_PER_S),
            "--format",
            "raw",
            "--nolineno",
            "--nonblocking",
            "--gil",
            "--output",
            str(collapsed),
        ]
        runs[service] = (
            collapsed,
            await asyncio.create_subprocess_exec(
                *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
            ),
        )
    profiles = {}
    for service, (collapsed, process) in runs.items():
        _, stderr = await process.communicate()
        if process.returncode != 0 or not collapsed.exists():
            raise RuntimeError(f"py-spy on {service} failed: {stderr.decode(errors='replace')}")
        profiles[service] = summarise(service, collapsed, seconds)
        (out_dir / f"{service}.top.txt").write_text(as_text(profiles[service]))
    return profiles


def summarise(service: str, collapsed: Path, seconds: float) -> Profile:
    own: Counter[str] = Counter()
    by_package: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    entries: Counter[str] = Counter()
    for line in collapsed.read_text().splitlines():
        matched = _LINE.match(line)
        if matched is None:
            continue
        leaf = matched["stack"].rsplit(";", 1)[-1].strip() or NO_FRAME
        count = int(matched["count"])
        own[leaf] += count
        by_package[package_of(leaf)] += count
        task_frames = _below_the_event_loop(matched["stack"].split(";"))
        entries[(task_frames[0].strip() if task_frames else "") or NO_TASK] += count
        for frame in set(task_frames):
            if package_of(frame) in OWN_CODE:
                ours[frame] += count
    return Profile(service, sum(own.values()), seconds, own, by_package, ours, entries, collapsed)


def _below_the_event_loop(frames: list[str]) -> list[str]:
    """The frames a task runs, without the start-up frames every sample shares."""
    for depth in range(len(frames) - 1, -1, -1):
        if frames[depth].startswith(EVENT_LOOP):
            return frames[depth + 1 :]
    return frames


def package_of(frame: str) -> str:
    """`execute (sqlalchemy/engine/base.py)` -> `sqlalchemy`; the standard library by module."""
    found = re.search(r"\((?P<path>[^)]*)\)$", frame)
    if found is None:
        return frame
    path = found["path"]
    if path.startswith("<"):
        return path
    first = path.split("/", 1)[0]
    return first.removesuffix(".py")


def as_text(profile: Profile) -> str:
    figures = profile.figures()
    lines = [
        f"{profile.service}: {profile.samples} samples holding the GIL in "
        f"{profile.seconds:.0f}s at {SAMPLES_PER_S}/s ({figures['busy_share']:.0%} of one core)",
        "",
        "own time by function:",
        *(f"  {row['own_pct']:5.1f}%  {row['name']}" for row in figures["top_functions"]),
        "",
        "own time by package:",
        *(f"  {row['own_pct']:5.1f}%  {row['name']}" for row in figures["top_packages"]),
        "",
        "time spent under the project's own functions (inclusive):",
        *(f"  {row['own_pct']:5.1f}%  {row['name']}" for row in figures["top_own_code_inclusive"]),
        "",
        "time by where the running task started (inclusive):",
        *(f"  {row['own_pct']:5.1f}%  {row['name']}" for row in figures["top_entry_points"]),
    ]
    return "\n".join(lines) + "\n"
