"""What the stack did, read straight from the services' databases, from the simulators'
ledgers (the provider's and the carrier's own databases) and from the dead-letter topics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from deploy.local.processes import SERVICES
from shared.kafka_access import KafkaClient
from shared.topics import DEAD_LETTER_TOPICS
from tests.faults.load import CONSUMED_TOPICS, LoadPlan
from tests.faults.stack import Stack
from tests.infra import unconsumed

TERMINAL_STATES = frozenset({"COMPLETED", "PAYMENT_FAILED", "REFUNDED", "EXPIRED"})
OPEN_PAYMENTS = text(
    "SELECT count(*) FROM payments WHERE status IN ('NEW', 'PENDING', 'UNKNOWN', 'REFUND_PENDING')"
)
OUTSIDE_PENDING = (
    text(
        "SELECT count(*) FROM payment_intents"
        " WHERE status = 'requires_action' AND confirm_at IS NOT NULL"
    ),
    text("SELECT count(*) FROM webhook_deliveries WHERE delivered_at IS NULL"),
)
OPEN_TOPUPS = text("SELECT count(*) FROM topups WHERE status IN ('NEW', 'RETRYING', 'UNKNOWN')")

Row = dict[str, Any]

# Per database, per table: the query that reads what the checks need.
QUERIES: dict[str, dict[str, str]] = {
    "orders": {
        "orders": "SELECT order_id::text, request_id, iccid, state, currency, total_minor,"
        " captured_minor, data_mb, fair_use_mb, bonus_mb FROM orders",
        "order_transitions": "SELECT order_id::text, from_state, to_state FROM order_transitions"
        " ORDER BY id",
        "rejected_requests": "SELECT request_id, reason FROM rejected_requests",
        "outbox": "SELECT count(*) AS unpublished FROM outbox WHERE published_at IS NULL",
    },
    "payments": {
        "outbox": "SELECT count(*) AS unpublished FROM outbox WHERE published_at IS NULL",
    },
    # The Stripe simulator's ledger, in the words the checks use: a succeeded intent was
    # captured (its refunds are rows of their own), a failed one declined.
    "stripe_simulator": {
        "payment_intents": "SELECT idempotency_key, amount AS amount_minor,"
        " upper(currency) AS currency,"
        " CASE status WHEN 'succeeded' THEN 'captured'"
        " WHEN 'requires_payment_method' THEN 'declined' WHEN 'canceled' THEN 'cancelled'"
        " ELSE 'pending' END AS status, create_calls AS charge_calls FROM payment_intents",
        "refunds": "SELECT r.idempotency_key, p.idempotency_key AS charge_key,"
        " r.amount AS amount_minor, upper(r.currency) AS currency,"
        " CASE r.status WHEN 'succeeded' THEN 'refunded' ELSE r.status END AS status"
        " FROM refunds r JOIN payment_intents p ON p.id = r.payment_intent",
    },
    # The carrier simulator keeps the orders it applied (a refusal leaves no row, as the
    # partner API's own); our key is each order's description.
    "carrier_simulator": {
        "carrier_topup_orders": "SELECT description AS key, iccid, 'applied' AS outcome"
        " FROM carrier_topup_orders",
    },
    "provisioning": {
        "topups": "SELECT idempotency_key, order_id::text, iccid, status FROM topups",
        "lines": "SELECT iccid, data_remaining_mb, fair_use_remaining_mb FROM lines",
        "outbox": "SELECT count(*) AS unpublished FROM outbox WHERE published_at IS NULL",
    },
}


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    value: bytes
    headers: dict[str, str]

    def came_from(self) -> tuple[str, int, int] | None:
        """(topic, partition, offset) of the original, from the dlq.source.* headers."""
        try:
            return (
                self.headers["dlq.source.topic"],
                int(self.headers["dlq.source.partition"]),
                int(self.headers["dlq.source.offset"]),
            )
        except (KeyError, ValueError):
            return None


Offsets = dict[tuple[str, int], int]


@dataclass
class Snapshot:
    # database -> table -> rows; None when the table does not exist in that database
    tables: dict[str, dict[str, list[Row] | None]]
    dead_letters: list[DeadLetter] = field(default_factory=list)
    missing_dead_letter_topics: list[str] = field(default_factory=list)
    # where the consumed topics ended before the load: dead letters of older messages
    # (from earlier tests on the same broker) are none of this run's business
    source_offsets_before: Offsets = field(default_factory=dict)

    def rows(self, database: str, table: str) -> list[Row] | None:
        return self.tables[database][table]

    def table(self, database: str, table: str) -> list[Row]:
        """The rows of a table a check cannot do without."""
        rows = self.tables[database][table]
        if rows is None:
            raise MissingTable(f"table `{table}` does not exist in the {database} database")
        return rows


class MissingTable(Exception):
    pass


@dataclass(frozen=True)
class Baseline:
    """Where the topics ended before the load started."""

    consumed: Offsets
    dead_letters: Offsets


async def baseline_before_the_load(stack: Stack) -> Baseline:
    consumed = await end_offsets(stack.kafka.client(), CONSUMED_TOPICS)
    dead_letters = await end_offsets(stack.kafka.client(), DEAD_LETTER_TOPICS)
    return Baseline(consumed, dead_letters)


async def end_offsets(kafka: KafkaClient, topics: Iterable[str]) -> Offsets:
    partitions = await existing_partitions(kafka, topics)
    if not partitions:
        return {}
    consumer = AIOKafkaConsumer(**kafka.options(), group_id=None)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    return {(tp.topic, tp.partition): offset for tp, offset in ends.items()}


async def existing_partitions(kafka: KafkaClient, topics: Iterable[str]) -> list[TopicPartition]:
    """The partitions of those of `topics` that exist. Asks for all topics' metadata: asking
    for named ones would create the missing ones (the local broker auto-creates topics)."""
    admin = AIOKafkaAdminClient(**kafka.options())
    await admin.start()
    try:
        described = {t["topic"]: t["partitions"] for t in await admin.describe_topics()}
    finally:
        await admin.close()
    return [
        TopicPartition(topic, partition["partition"])
        for topic in topics
        for partition in sorted(described.get(topic, ()), key=lambda p: int(p["partition"]))
    ]


@dataclass
class Progress:
    answered: int  # published requests with an order or a rejection
    unfinished: int  # orders not in a terminal state
    unpublished: int  # outbox rows waiting for the relay
    open_payments: int = 0  # charges and refunds not settled yet
    open_topups: int = 0  # top-ups not settled yet
    outside_pending: int = 0  # payments the provider will confirm, events not delivered
    unconsumed: int = 0  # messages on the saga's topics its consumers have not committed

    def __str__(self) -> str:
        return (
            f"answered {self.answered}, unfinished {self.unfinished}, "
            f"unpublished {self.unpublished}, open payments {self.open_payments}, "
            f"open top-ups {self.open_topups}, outside pending {self.outside_pending}, "
            f"unconsumed {self.unconsumed}"
        )


async def wait_until_settled(stack: Stack, plan: LoadPlan, within_s: float) -> Progress:
    """Poll until every request is answered, every order terminal and every outbox empty,
    or `within_s` has passed; the last progress either way (the checks say what is wrong)."""
    deadline = time.monotonic() + within_s
    engines = {name: _engine(url) for name, url in stack.databases.items()}
    try:
        while True:
            progress = await _progress(engines, plan)
            # What the services' groups have not acted on yet (their groups: `<service>:<topic>`).
            progress.unconsumed = await unconsumed(stack.kafka, _ours)
            settled = (
                progress.answered == len(plan.requests)
                and progress.unfinished == 0
                and progress.unpublished == 0
                and progress.open_payments == 0
                and progress.open_topups == 0
                and progress.outside_pending == 0
                and progress.unconsumed == 0
            )
            if settled or time.monotonic() > deadline:
                return progress
            await asyncio.sleep(1.0)
    finally:
        for engine in engines.values():
            await engine.dispose()


def _ours(group: str) -> bool:
    return group.split(":", 1)[0] in SERVICES


async def _progress(engines: dict[str, AsyncEngine], plan: LoadPlan) -> Progress:
    async with engines["orders"].connect() as db:
        placed = (await db.execute(text("SELECT request_id, state FROM orders"))).all()
        rejected = (await db.execute(text("SELECT request_id FROM rejected_requests"))).all()
    answered = {row.request_id for row in placed} | {row.request_id for row in rejected}
    unpublished = 0
    for engine in engines.values():
        async with engine.connect() as db:
            if await _table_exists(db, "outbox"):
                unpublished += (
                    await db.execute(text("SELECT count(*) FROM outbox WHERE published_at IS NULL"))
                ).scalar_one()
    # A charge or a top-up still being settled (its answer lost, asked about again, a
    # refund under way) may still move money or a line: an EXPIRED order's late capture
    # is refunded only once its payment's settler has found it.
    async with engines["payments"].connect() as db:
        open_payments = (await db.execute(OPEN_PAYMENTS)).scalar_one()
    async with engines["provisioning"].connect() as db:
        open_topups = (await db.execute(OPEN_TOPUPS)).scalar_one()
    # What the provider will still do on its own: confirm a pending payment, send an event.
    async with engines["stripe_simulator"].connect() as db:
        outside_pending = sum([(await db.execute(query)).scalar_one() for query in OUTSIDE_PENDING])
    return Progress(
        answered=sum(r.request_id in answered for r in plan.requests),
        unfinished=sum(row.state not in TERMINAL_STATES for row in placed),
        unpublished=unpublished,
        open_payments=open_payments,
        open_topups=open_topups,
        outside_pending=outside_pending,
    )


async def take_snapshot(stack: Stack, baseline: Baseline) -> Snapshot:
    tables: dict[str, dict[str, list[Row] | None]] = {}
    for database, queries in QUERIES.items():
        engine = _engine(stack.databases[database])
        try:
            async with engine.connect() as db:
                tables[database] = {
                    table: await _read(db, table, query) for table, query in queries.items()
                }
        finally:
            await engine.dispose()
    letters, missing = await read_dead_letters(stack.kafka.client(), baseline.dead_letters)
    return Snapshot(tables, letters, missing, baseline.consumed)


async def read_dead_letters(
    kafka: KafkaClient, since: Offsets
) -> tuple[list[DeadLetter], list[str]]:
    """Every record put on a dead-letter topic since `since`; and the topics that do not exist."""
    partitions = await existing_partitions(kafka, DEAD_LETTER_TOPICS)
    present = {tp.topic for tp in partitions}
    missing = [topic for topic in DEAD_LETTER_TOPICS if topic not in present]
    letters: list[DeadLetter] = []
    if not partitions:
        return letters, missing
    consumer = AIOKafkaConsumer(**kafka.options(), group_id=None)
    await consumer.start()
    try:
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        for tp in partitions:
            consumer.seek(tp, since.get((tp.topic, tp.partition), 0))
        async with asyncio.timeout(60):
            while await _behind(consumer, ends):
                batch = await consumer.getmany(timeout_ms=500)
                letters += [
                    DeadLetter(
                        record.topic,
                        record.value or b"",
                        {k: v.decode(errors="replace") for k, v in record.headers or ()},
                    )
                    for records in batch.values()
                    for record in records
                ]
    finally:
        await consumer.stop()
    return letters, missing


async def _behind(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    positions = {tp: await consumer.position(tp) for tp in ends}
    return any(positions[tp] < end for tp, end in ends.items())


def _engine(url: str) -> AsyncEngine:
    return create_async_engine(url, poolclass=NullPool)


async def _read(db: Any, table: str, query: str) -> list[Row] | None:
    if not await _table_exists(db, table):
        return None
    return [dict(row._mapping) for row in (await db.execute(text(query))).all()]


async def _table_exists(db: Any, table: str) -> bool:
    found = await db.execute(text("SELECT to_regclass(:table)"), {"table": table})
    return found.scalar_one() is not None
