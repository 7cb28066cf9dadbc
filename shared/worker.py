"""Background loops a service runs beside its consumers (sweepers, settlers, retries)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from faststream.kafka import KafkaBroker
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.logs import now_and_then
from shared.settings import ServiceSettings

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Runtime:
    """What a background loop works with: the service's settings, broker and database."""

    settings: ServiceSettings
    broker: KafkaBroker
    sessions: async_sessionmaker[AsyncSession]


BackgroundTask = Callable[[Runtime], Coroutine[Any, Any, None]]


async def every(interval_s: float, step: Callable[[], Awaitable[object]], name: str) -> None:
    """Run `step` every `interval_s` seconds until cancelled; a failing step is logged
    (once per 30 s while it keeps failing: a database restart is not a flood) and tried
    again next time, it never ends the loop."""
    while True:
        try:
            await step()
        except asyncio.CancelledError:
            raise
        except Exception:
            if now_and_then(f"every:{name}"):
                log.exception("%s failed; trying again in %.1fs", name, interval_s)
        await asyncio.sleep(interval_s)


async def side_by_side(
    items: Sequence[T], step: Callable[[T], Awaitable[list[R]]], *, at_most: int
) -> list[R]:
    """`step` for every item, at most `at_most` at once, and their results in the items'
    order: the outside world's latency (a provider's, a carrier's, their timeouts) is
    waited out in parallel, so one slow answer does not hold the rest of a batch."""
    gate = asyncio.Semaphore(at_most)

    async def gated(item: T) -> list[R]:
        async with gate:
            return await step(item)

    results: list[R] = []
    for found in await asyncio.gather(*(gated(item) for item in items)):
        results += found
    return results
