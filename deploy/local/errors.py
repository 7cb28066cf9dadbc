"""The one kind of error the local stack reports to a user: what is wrong and what to do,
in one line, with the evidence (a log's last lines) kept apart for whoever wants it."""

from __future__ import annotations

from collections import deque
from pathlib import Path


class StackError(RuntimeError):
    """`summary`: one line a user can act on (`make run` prints only that); `details`:
    what a test or a curious user may read below it (a log's tail, a tool's output)."""

    def __init__(self, summary: str, details: str = "") -> None:
        super().__init__(f"{summary}\n{details}" if details else summary)
        self.summary = summary
        self.details = details


def first_line(text: str, *, containing: tuple[str, ...] = ()) -> str:
    """The first line of `text` holding one of `containing` (else its last non-empty line),
    stripped and cut to 300 characters: the gist of a tool's or a log's complaint."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        if any(word in line for word in containing):
            return line[:300]
    return lines[-1][:300] if lines else "(no output)"


def log_tail(path: Path | None, lines: int = 40) -> str:
    """The last `lines` lines of a log, or '' when there is none yet."""
    if path is None or not path.exists():
        return ""
    with path.open(errors="replace") as log:
        return "".join(deque(log, maxlen=lines)).rstrip("\n")
