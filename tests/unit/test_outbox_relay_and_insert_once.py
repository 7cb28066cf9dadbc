"""The two pieces of plumbing made cheaper for the benchmark (issue 6): `insert_once`
answers in one statement, and the relay hands a whole batch to the producer before
waiting for the acknowledgements. Neither may change what they promise."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka.errors import MessageSizeTooLargeError
from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared import db, outbox, topics
from shared.events import LineToppedUp
from tests.factories import random_iccid
from tests.unit.harness import sqlite_sessions

_metadata = MetaData()
requests = Table(
    "requests",
    _metadata,
    Column("request_id", String(64), primary_key=True),
    Column("order_number", Integer, nullable=False, unique=True),
    Column("note", String(64), nullable=False),
)
outbox.add_outbox_to(_metadata)


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    async with sqlite_sessions(tmp_path / "plumbing.db", _metadata) as sessions:
        yield sessions


async def _insert(sessions: async_sessionmaker[AsyncSession], key: str, number: int) -> bool:
    async with sessions.begin() as session:
        statement = insert(requests).values(request_id=key, order_number=number, note="first")
        return await db.insert_once(session, statement)


async def test_insert_once_inserts_a_new_row_and_says_so(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    assert await _insert(sessions, "r-1", 1)
    async with sessions() as session:
        assert (await session.execute(select(requests.c.note))).scalars().all() == ["first"]


async def test_insert_once_of_an_existing_key_changes_nothing_and_says_so(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    assert await _insert(sessions, "r-1", 1)
    assert not await _insert(sessions, "r-1", 2)  # the primary key decides
    assert not await _insert(sessions, "r-2", 1)  # so does any other unique key
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(requests)) == 1


async def test_insert_once_leaves_the_rest_of_the_transaction_alone(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions.begin() as session:
        first = insert(requests).values(request_id="r-1", order_number=1, note="a")
        again = insert(requests).values(request_id="r-1", order_number=1, note="b")
        other = insert(requests).values(request_id="r-2", order_number=2, note="c")
        assert [
            await db.insert_once(session, first),
            await db.insert_once(session, again),
            await db.insert_once(session, other),
        ] == [True, False, True]
    async with sessions() as session:
        notes = (await session.execute(select(requests.c.note).order_by(requests.c.note))).all()
    assert [n for (n,) in notes] == ["a", "c"]


class RecordingBroker:
    """Stands in for the broker: keeps what is published, acknowledges it when told."""

    def __init__(self, fail: bool = False) -> None:
        self.published: list[tuple[str, bytes, dict[str, str]]] = []
        self.acks: list[asyncio.Future[None]] = []
        self.fail = fail

    async def publish(
        self, body: bytes, *, topic: str, key: bytes, headers: dict[str, str], no_confirm: bool
    ) -> asyncio.Future[None]:
        assert no_confirm, "the relay waits for the acknowledgements itself, all at once"
        assert not any(ack.done() for ack in self.acks), "nothing awaited before all are sent"
        self.published.append((topic, body, headers))
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.acks.append(ack)
        asyncio.get_running_loop().call_soon(self._answer, ack)
        return ack

    def _answer(self, ack: asyncio.Future[None]) -> None:
        if self.fail and ack is self.acks[-1]:
            ack.set_exception(RuntimeError("broker gone"))
        else:
            ack.set_result(None)


async def _stage(sessions: async_sessionmaker[AsyncSession], count: int) -> list[LineToppedUp]:
    events = [
        LineToppedUp(
            order_id=uuid.uuid4(),
            iccid=random_iccid(),
            data_mb=1024,
            valid_until=datetime(2030, 1, 1, tzinfo=UTC),
            data_remaining_mb=1024,
        )
        for _ in range(count)
    ]
    async with sessions.begin() as session:
        await outbox.stage(session, [(topics.PROVISIONING_EVENTS, e) for e in events])
    return events


async def test_the_relay_sends_a_batch_in_order_then_marks_it_published(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    events = await _stage(sessions, 5)
    broker = RecordingBroker()
    assert await outbox.drain(sessions, broker) == 5  # type: ignore[arg-type]
    assert [LineToppedUp.model_validate_json(body) for _, body, _ in broker.published] == events
    assert all(h["content-type"] == "application/json" for _, _, h in broker.published)
    assert await outbox.backlog(sessions) == 0


async def test_a_batch_with_an_unacknowledged_message_stays_unpublished_to_be_sent_again(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await _stage(sessions, 3)
    with pytest.raises(RuntimeError, match="broker gone"):
        await outbox.drain(sessions, RecordingBroker(fail=True))  # type: ignore[arg-type]
    assert await outbox.backlog(sessions) == 3
    again = RecordingBroker()
    assert await outbox.drain(sessions, again) == 3  # type: ignore[arg-type]
    assert await outbox.backlog(sessions) == 0


class RefusingBroker(RecordingBroker):
    """Refuses, as Kafka does, any message larger than `limit` bytes: for good."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    async def publish(
        self, body: bytes, *, topic: str, key: bytes, headers: dict[str, str], no_confirm: bool
    ) -> asyncio.Future[None]:
        if len(body) > self.limit:
            raise MessageSizeTooLargeError(f"{len(body)} bytes")
        return await super().publish(
            body, topic=topic, key=key, headers=headers, no_confirm=no_confirm
        )


async def test_a_row_the_broker_refuses_for_good_is_parked_and_the_rows_behind_it_go_out(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    before, after = await _stage(sessions, 1), await _stage(sessions, 2)
    async with sessions.begin() as session:  # an answer inflated beyond what Kafka takes
        await session.execute(
            update(outbox.outbox)
            .where(outbox.outbox.c.id == 1)
            .values(payload=before[0].model_dump_json() + " " * 2_000_000)
        )
    broker = RefusingBroker(limit=1_000_000)
    for attempt in range(1, outbox.PARK_AFTER):
        with pytest.raises(outbox.RowsRefused):
            await outbox.drain(sessions, broker)  # type: ignore[arg-type]
        assert await outbox.parked(sessions) == 0, f"not parked after {attempt} refusal(s)"
    assert await outbox.drain(sessions, broker) == 0  # type: ignore[arg-type]
    assert await outbox.parked(sessions) == 1
    async with sessions() as session:
        reason = await session.scalar(select(outbox.outbox.c.park_reason))
    assert reason is not None
    assert reason.startswith("MessageSizeTooLargeError")

    published = [LineToppedUp.model_validate_json(body) for _, body, _ in broker.published]
    assert published == after, "the rows behind it were published, in order, once"
    assert await outbox.drain(sessions, broker) == 0  # type: ignore[arg-type]
    assert await outbox.backlog(sessions) == 1, "the parked row is still not published"
