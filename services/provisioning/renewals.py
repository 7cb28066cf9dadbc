"""Auto-renewal: a line opted in renews itself through the normal saga when it
crosses its chosen threshold.

TO BE WRITTEN (helper B)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from shared.events import LineAlertRaised
from shared.kafka import Outgoing


async def on_alerts_raised(
    session: AsyncSession, provisioner: Any, raised: list[LineAlertRaised], now: datetime
) -> list[Outgoing]:
    return []


async def on_order_event(sessions: Any, provisioner: Any, event: Any) -> None:
    return None


async def place_due(sessions: Any, provisioner: Any) -> int:
    return 0
