"""Orders' saga overview for operators: how many orders are in each state, and which
sagas are stuck (not ended, no transition for a while), on a SQLite orders database."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.orders import orders as logic
from services.orders.catalog import load_catalog
from services.orders.db import metadata, order_transitions
from services.orders.saga import OrderState
from services.orders.sagas import StuckSaga, saga_overview, stuck_sagas
from shared.events import order_id_for
from tests.factories import order_request
from tests.unit.harness import sqlite_sessions

MINUTE = timedelta(minutes=1)


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    async with sqlite_sessions(tmp_path / "orders.db", metadata) as sessions:
        yield sessions


async def place(sessions: async_sessionmaker[AsyncSession]) -> uuid.UUID:
    """An order placed as orders places one: it is then PAYMENT_PENDING."""
    request = order_request()
    async with sessions() as session, session.begin():
        await logic.place_order(session, request, load_catalog(), timedelta(minutes=15))
    return order_id_for(request["request_id"])


async def overview(sessions: async_sessionmaker[AsyncSession], at: datetime) -> dict[str, Any]:
    async with sessions() as session:
        return await saga_overview(session, at, MINUTE)


async def stuck(sessions: async_sessionmaker[AsyncSession], at: datetime) -> list[StuckSaga]:
    async with sessions() as session:
        return await stuck_sagas(session, at, MINUTE)


async def test_every_state_is_counted_zero_included(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    for _ in range(3):
        await place(sessions)
    async with sessions() as session, session.begin():
        await logic.expire_overdue(session, datetime.now(UTC) + timedelta(hours=1), limit=1)
    body = await overview(sessions, datetime.now(UTC))
    assert body["by_state"] == {
        **{state.value: 0 for state in OrderState}, "PAYMENT_PENDING": 2, "EXPIRED": 1,
    }  # fmt: skip
    assert body["total"] == 3


async def test_a_saga_still_for_longer_than_asked_is_stuck_and_one_that_just_moved_is_not(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    order_id = await place(sessions)
    now = datetime.now(UTC)
    assert await stuck(sessions, now) == []
    [late] = await stuck(sessions, now + 2 * MINUTE)
    assert (late.order_id, late.state) == (str(order_id), "PAYMENT_PENDING")
    assert late.since <= now
    assert late.waiting_s >= 120
    body = await overview(sessions, now + 2 * MINUTE)
    assert [s["order_id"] for s in body["stuck"]] == [str(order_id)]
    assert body["stuck_after_s"] == 60


async def test_a_note_in_the_timeline_is_not_progress(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    order_id = await place(sessions)
    now = datetime.now(UTC)
    async with sessions() as session, session.begin():
        await session.execute(
            insert(order_transitions).values(
                order_id=order_id, from_state="PAYMENT_PENDING", to_state="PAYMENT_PENDING",
                cause="no progress: asked again", at=now + 2 * MINUTE,
            )
        )  # fmt: skip
    [late] = await stuck(sessions, now + 2 * MINUTE)
    assert late.since <= now


async def test_an_order_that_ended_is_never_stuck(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await place(sessions)
    async with sessions() as session, session.begin():
        await logic.expire_overdue(session, datetime.now(UTC) + timedelta(hours=1))
    body = await overview(sessions, datetime.now(UTC) + timedelta(days=1))
    assert body["by_state"]["EXPIRED"] == 1
    assert body["stuck"] == []
