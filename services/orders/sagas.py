"""The sagas as operators see them: how many are in each state, and which are stuck.

A saga is stuck when it has not ended and has not moved for a while. "Moved" is a
real transition into its current state: a timeline note that changes nothing (a
pending payment acknowledged, a nudge asking another service again) is not progress.
EXPIRED counts as ended here: nothing is awaited, a late capture would move it on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.orders.db import order_transitions, orders
from services.orders.saga import OUTCOMES, OrderState
from shared.db import as_utc

MOST_STUCK_SHOWN: Final = 200


@dataclass(frozen=True)
class StuckSaga:
    order_id: str
    request_id: str
    iccid: str
    state: str
    since: datetime
    waiting_s: float


async def count_by_state(session: AsyncSession) -> dict[str, int]:
    """Every saga state, with how many orders are in it (zero included)."""
    rows = await session.execute(select(orders.c.state, func.count()).group_by(orders.c.state))
    counts = {state.value: 0 for state in OrderState}
    counts.update({str(state): int(n) for state, n in rows.all()})
    return counts


async def stuck_sagas(
    session: AsyncSession, now: datetime, after: timedelta, limit: int = MOST_STUCK_SHOWN
) -> list[StuckSaga]:
    """Sagas not ended whose last transition is older than `after`, longest waiting first."""
    moved = order_transitions.c
    since = func.max(moved.at).label("since")
    rows = await session.execute(
        select(orders.c.order_id, orders.c.request_id, orders.c.iccid, orders.c.state, since)
        .join(order_transitions, moved.order_id == orders.c.order_id)
        .where(
            orders.c.state.not_in([state.value for state in OUTCOMES]),
            moved.to_state == orders.c.state,
            or_(moved.from_state.is_(None), moved.from_state != moved.to_state),
        )
        .group_by(orders.c.order_id, orders.c.request_id, orders.c.iccid, orders.c.state)
        .having(func.max(moved.at) < now - after)
        .order_by(since)
        .limit(limit)
    )
    return [
        StuckSaga(
            order_id=str(row.order_id),
            request_id=row.request_id,
            iccid=row.iccid,
            state=row.state,
            since=as_utc(row.since),
            waiting_s=round((now - as_utc(row.since)).total_seconds(), 1),
        )
        for row in rows.all()
    ]


async def saga_overview(session: AsyncSession, now: datetime, after: timedelta) -> dict[str, Any]:
    by_state = await count_by_state(session)
    stuck = await stuck_sagas(session, now, after)
    return {
        "total": sum(by_state.values()),
        "by_state": by_state,
        "stuck_after_s": after.total_seconds(),
        "stuck": [s.__dict__ for s in stuck],
    }
