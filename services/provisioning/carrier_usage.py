"""The simulated carrier's usage reports (carrier.usage.v1) for its active lines.

TO BE WRITTEN (helper C)."""

from __future__ import annotations

from shared.worker import Runtime


async def report_usage(runtime: Runtime) -> None:
    return None
