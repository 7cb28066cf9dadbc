"""What the chaos did, when, and how long each fault took to recover from: for the report."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class ChaosFigures:
    kills: int = 0
    service_restarts: int = 0
    broker_restarts: int = 0
    leader_kills: int = 0
    controller_kills: int = 0
    postgres_restarts: int = 0
    pauses: int = 0
    zombie_commits_refused: int = 0  # offset commits of a paused instance, once woken
    recoveries: dict[str, float] = field(default_factory=dict)  # what -> seconds to recover
    # Per PostgreSQL restart, each service instance's /health while the database was down.
    health_without_postgres: list[dict[str, str]] = field(default_factory=list)
    duplicates_injected: int = 0
    log: list[str] = field(default_factory=list)  # what happened when, for the report
    started: float = field(default_factory=time.monotonic)

    def note(self, event: str) -> None:
        self.log.append(f"{time.monotonic() - self.started:6.1f}s {event}")
