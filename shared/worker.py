"""Background loops a service runs beside its consumers (sweepers, settlers, retries)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from faststream.kafka import KafkaBroker
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.settings import ServiceSettings

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
    and tried again next time, it never ends the loop."""
    while True:
        try:
            await step()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s failed; trying again in %.1fs", name, interval_s)
        await asyncio.sleep(interval_s)
