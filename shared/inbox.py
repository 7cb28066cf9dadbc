"""Idempotent consumers: each service records the `event_id` of every message it has
acted on, in the same transaction as the effect. The primary key decides: a
redelivered message fails the insert and is skipped; there is no check-then-insert.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime

from sqlalchemy import Column, DateTime, MetaData, String, Table, Uuid, insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db import insert_ignoring_conflicts, insert_once
from shared.outbox import Step, stage

log = logging.getLogger(__name__)

_metadata = MetaData()
processed_messages = Table(
    "processed_messages",
    _metadata,
    Column("event_id", Uuid, primary_key=True),
    Column("message_type", String(64), nullable=False),
    Column("processed_at", DateTime(timezone=True), nullable=False),
)


def add_inbox_to(metadata: MetaData) -> Table:
    """Give a service's metadata (and so its migrations) the inbox table."""
    return processed_messages.to_metadata(metadata)


async def first_delivery(session: AsyncSession, event_id: uuid.UUID, message_type: str) -> bool:
    """Record `event_id` as processed; False when it already was (a redelivery)."""
    return await insert_once(
        session,
        insert(processed_messages).values(
            event_id=event_id, message_type=message_type, processed_at=datetime.now(UTC)
        ),
    )


async def first_deliveries(
    session: AsyncSession, messages: list[tuple[uuid.UUID, str]]
) -> set[uuid.UUID]:
    """Record a batch's `(event_id, type)`s in one statement; the ids not seen before.
    A repeat inside the batch is in the answer once: the caller acts on its first."""
    if not messages:
        return set()
    now = datetime.now(UTC)
    statement = (
        insert_ignoring_conflicts(session, processed_messages)
        .values([{"event_id": e, "message_type": t, "processed_at": now} for e, t in messages])
        .returning(processed_messages.c.event_id)
    )
    return set((await session.execute(statement)).scalars().all())


async def handle_once(
    sessions: async_sessionmaker[AsyncSession],
    event_id: uuid.UUID,
    message_type: str,
    step: Step,
) -> None:
    """Run `step` once per message: the inbox record, the effect and the messages it
    emits (into the outbox) commit together, or not at all."""
    async with sessions.begin() as session:
        if not await first_delivery(session, event_id, message_type):
            log.info("%s %s already processed; redelivery skipped", message_type, event_id)
            return
        await stage(session, await step(session))
