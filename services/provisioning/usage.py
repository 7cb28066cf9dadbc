"""Usage reports from the carrier: each counted once against the line's package cycle.

TO BE WRITTEN (helper A): record_usage."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.provisioning.provisioning import Provisioner
from shared.events import UsageReported


async def record_usage(
    sessions: async_sessionmaker[AsyncSession], provisioner: Provisioner, report: UsageReported
) -> None:
    raise NotImplementedError
