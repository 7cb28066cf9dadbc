"""The transactional outbox: messages are stored in the same transaction as the state
change that emits them, and a relay publishes them to Kafka afterwards.

Why not faststream-outbox: it keeps its queue in PostgreSQL only and relays by
polling, while our services also run on SQLite (`make run`) and should publish
as soon as a transaction commits. This is the small part of it we need:

- `stage(session, outgoing)` inserts the rows; when that session commits, the
  relay of this process is woken at once (an SQLAlchemy `after_commit` hook), so
  publishing is prompt, not a poll away. A slow poll remains as the safety net
  for rows left by a crash (the relay picks up where it left off: every row
  without `published_at`).
- One relay drains at a time per database (a PostgreSQL advisory lock), in
  insertion order, so two instances never reorder one line's messages.
- The producer is idempotent with acks=all (shared/kafka.py). A crash between
  publishing and marking a row publishes it again: consumers deduplicate by
  `event_id` (shared/inbox.py), so at-least-once here is exactly-once in effect.
- A row the broker refuses for good (too large, or any error Kafka calls not
  retriable) is tried PARK_AFTER times, then parked with its reason: counted, logged,
  shown in /health and the metrics (shared/progress.py), and the relay goes on with
  the rows behind it. docs/guarantees.md says why that is safe for the saga. A
  failure that may pass (the broker away) marks nothing and is tried again, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka.errors import KafkaError
from faststream.kafka import KafkaBroker
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared import tracing
from shared.kafka import Outgoing, message_headers
from shared.logs import now_and_then
from shared.metrics import OUTBOX_BACKLOG, OUTBOX_PARKED, OUTBOX_PUBLISHED
from shared.progress import PROGRESS
from shared.worker import Runtime

log = logging.getLogger(__name__)

_metadata = MetaData()
outbox = Table(
    "outbox",
    _metadata,
    # SQLite only autoincrements an INTEGER primary key.
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("topic", String(200), nullable=False),
    Column("key", String(200), nullable=False),
    Column("payload", Text, nullable=False),
    Column("headers", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("published_at", DateTime(timezone=True), nullable=True),
    # Tries the broker refused for good, and when and why the row was then set aside.
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("parked_at", DateTime(timezone=True), nullable=True),
    Column("park_reason", String(300), nullable=True),
    Index("ix_outbox_published_at_id", "published_at", "id"),
)

BATCH = 500
POLL_S = 1.0
PARK_AFTER = 3  # refusals for good before a row is parked
KEEP_PUBLISHED = timedelta(hours=1)
_LOCK_ID = 0x0B0C  # the advisory lock a relay holds while it drains
JSON = "application/json"

_wake = asyncio.Event()


def add_outbox_to(metadata: MetaData) -> Table:
    """Give a service's metadata (and so its migrations) the outbox table."""
    return outbox.to_metadata(metadata)


async def stage(session: AsyncSession, outgoing: Iterable[Outgoing]) -> int:
    """Store messages to publish once `session`'s transaction commits."""
    return await stage_rows(session, rows_for(outgoing))


def rows_for(outgoing: Iterable[Outgoing]) -> list[dict[str, Any]]:
    """The outbox rows of `outgoing`, each under the trace context current now: a batch
    (shared/batches.py) makes them message by message and stores them all at once."""
    now = datetime.now(UTC)
    return [
        {
            "topic": topic,
            "key": message.iccid,
            "payload": message.model_dump_json(),
            "headers": json.dumps(tracing.staged_headers(message_headers(message), topic, message)),
            "created_at": now,
        }
        for topic, message in outgoing
    ]


async def stage_rows(session: AsyncSession, rows: list[dict[str, Any]]) -> int:
    """Store rows made by `rows_for`, in one statement, to publish after the commit."""
    return await _insert(session, rows)


async def stage_record(session: AsyncSession, topic: str, key: str, payload: str) -> int:
    """Store a record that is not a contract message (an audit entry) to publish likewise."""
    row = {"topic": topic, "key": key, "payload": payload, "headers": "{}"}
    return await _insert(session, [{**row, "created_at": datetime.now(UTC)}])


async def _insert(session: AsyncSession, rows: list[dict[str, Any]]) -> int:
    if rows:
        await session.execute(insert(outbox), rows)
        event.listen(session.sync_session, "after_commit", _wake_relay, once=True)
    return len(rows)


async def staged(session: AsyncSession, outgoing: list[Outgoing]) -> list[Outgoing]:
    """`outgoing`, once stored in the outbox of `session`'s transaction."""
    await stage(session, outgoing)
    return outgoing


Step = Callable[[AsyncSession], Awaitable[list[Outgoing]]]


async def run_and_stage(sessions: async_sessionmaker[AsyncSession], step: Step) -> None:
    """Run `step` in a transaction that also stores the messages it returns."""
    async with sessions.begin() as session:
        await stage(session, await step(session))


def _wake_relay(_session: Any) -> None:
    _wake.set()


async def relay(runtime: Runtime) -> None:
    """Publish staged messages as they commit, until cancelled."""
    next_purge = next_gauge = datetime.now(UTC)
    while True:
        # Cleared before draining, so a commit that lands while we drain wakes us again.
        _wake.clear()
        try:
            published = await drain(runtime.sessions, runtime.broker)
            PROGRESS.relay_succeeded()
            if datetime.now(UTC) >= next_purge:
                await purge(runtime.sessions)
                next_purge = datetime.now(UTC) + KEEP_PUBLISHED / 4
        except asyncio.CancelledError:
            raise
        except Exception as error:
            PROGRESS.relay_failed(error)
            if now_and_then("outbox-relay"):
                log.exception("outbox relay failed; retrying every %.1fs", POLL_S)
            published = 0
            await asyncio.sleep(POLL_S)
        if datetime.now(UTC) >= next_gauge:  # at most once a poll, whatever the drain did
            next_gauge = datetime.now(UTC) + timedelta(seconds=POLL_S)
            with contextlib.suppress(Exception):  # the database may be what is failing
                OUTBOX_BACKLOG.set(await backlog(runtime.sessions))
                PROGRESS.parked_rows = await parked(runtime.sessions)
        if published < BATCH:  # drained: sleep until a commit wakes us, or the poll
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_wake.wait(), POLL_S)


class RowsRefused(Exception):
    """Rows the broker refused for good, not parked yet: tried again after a pause."""


def refused_for_good(error: BaseException) -> bool:
    """Kafka's own word: an error that is not retriable will not pass by sending again
    (a message too large, an invalid topic...)."""
    return isinstance(error, KafkaError) and not error.retriable


async def drain(sessions: async_sessionmaker[AsyncSession], broker: KafkaBroker) -> int:
    """Publish the oldest unpublished rows, in order; the number published."""
    async with sessions.begin() as session:
        if not await _may_drain(session):
            return 0  # another instance is draining
        rows = (
            await session.execute(
                select(outbox)
                .where(outbox.c.published_at.is_(None), outbox.c.parked_at.is_(None))
                .order_by(outbox.c.id)
                .limit(BATCH)
            )
        ).all()
        # Every row is handed to the producer before any acknowledgement is awaited: the
        # producer batches them (per partition, in this order; idempotence keeps that
        # order through retries), and the acks are awaited once, together. A row is
        # marked published only when all of them are acknowledged; a failure that may
        # pass marks none and the next drain sends them again (consumers deduplicate).
        sent: list[tuple[Any, object]] = []
        refused: list[tuple[Any, BaseException]] = []
        for row in rows:
            headers = {**json.loads(row.headers), "content-type": JSON}
            with tracing.continued(headers):  # the trace that staged it, not a new one
                try:
                    ack = await broker.publish(
                        row.payload.encode(),  # stored as JSON already: not decoded again
                        topic=row.topic,
                        key=row.key.encode(),
                        headers=headers,
                        no_confirm=True,
                    )
                except Exception as error:
                    if not refused_for_good(error):
                        raise
                    refused.append((row, error))
                    continue
            sent.append((row, ack))
        # FastStream's test broker hands back no future: it has nothing to wait for.
        results = await asyncio.gather(
            *(_acknowledged(ack) for _row, ack in sent), return_exceptions=True
        )
        passing = [r for r in results if isinstance(r, BaseException) and not refused_for_good(r)]
        if passing:
            raise passing[0]
        refused += [
            (row, result)
            for (row, _ack), result in zip(sent, results, strict=True)
            if isinstance(result, BaseException)
        ]
        refused_ids = {row.id for row, _error in refused}
        done = [row.id for row in rows if row.id not in refused_ids]
        if done:
            OUTBOX_PUBLISHED.inc(len(done))
            await session.execute(
                update(outbox).where(outbox.c.id.in_(done)).values(published_at=datetime.now(UTC))
            )
        waiting = await _count_refusals(session, refused)
    if waiting:
        raise RowsRefused(f"{waiting} row(s) refused by the broker; tried again shortly")
    return len(done)


async def _acknowledged(ack: object) -> None:
    if isinstance(ack, asyncio.Future):
        await ack


async def _count_refusals(session: AsyncSession, refused: list[tuple[Any, BaseException]]) -> int:
    """One more refusal for each row; those refused PARK_AFTER times are parked. The
    number still waiting for another try."""
    waiting = 0
    for row, error in refused:
        reason = f"{type(error).__name__}: {error}"[:300]
        attempts = row.attempts + 1
        park = attempts >= PARK_AFTER
        await session.execute(
            update(outbox)
            .where(outbox.c.id == row.id)
            .values(
                attempts=attempts,
                parked_at=datetime.now(UTC) if park else None,
                park_reason=reason,
            )
        )
        if park:
            OUTBOX_PARKED.inc()
            log.error(
                "outbox row %s (%s, %s bytes) parked after %s refusals: %s",
                row.id, row.topic, len(row.payload), attempts, reason,
            )  # fmt: skip
        else:
            waiting += 1
    return waiting


async def _may_drain(session: AsyncSession) -> bool:
    if session.get_bind().dialect.name != "postgresql":
        return True  # SQLite: one process per database file
    return bool(await session.scalar(select(func.pg_try_advisory_xact_lock(_LOCK_ID))))


async def purge(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions.begin() as session:
        await session.execute(
            delete(outbox).where(outbox.c.published_at < datetime.now(UTC) - KEEP_PUBLISHED)
        )


async def backlog(sessions: async_sessionmaker[AsyncSession]) -> int:
    """Rows not published yet, parked ones included (for health, metrics, the fault suite)."""
    async with sessions() as session:
        count = await session.scalar(
            select(func.count()).select_from(outbox).where(outbox.c.published_at.is_(None))
        )
    return int(count or 0)


async def parked(sessions: async_sessionmaker[AsyncSession]) -> int:
    """Rows the broker refused for good and the relay set aside."""
    async with sessions() as session:
        count = await session.scalar(
            select(func.count()).select_from(outbox).where(outbox.c.parked_at.is_not(None))
        )
    return int(count or 0)
