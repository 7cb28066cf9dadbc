"""The line sweeper: every LINE_SWEEP_INTERVAL_S it raises the time-based alerts
that are due, forfeits what expired lines had left, and places due renewal retries.

TO BE WRITTEN (helper A; the renewal part calls renewals.place_due)."""

from __future__ import annotations

from shared.worker import Runtime


async def sweep_lines(runtime: Runtime) -> None:
    return None
