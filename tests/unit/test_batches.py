"""Batch consumption (shared/batches.py), on orders' subscribers over SQLite: a
partition's records in one transaction, and one at a time whatever a batch cannot take."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import ConsumerStoppedError, IllegalStateError
from fastapi import FastAPI
from faststream.kafka import KafkaMessage
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.orders import handlers
from services.orders.db import metadata, order_transitions, orders
from services.orders.settings import OrdersSettings
from services.payments.db import payments
from services.payments.stripe_provider import StripeProvider
from services.provisioning.balances import StackingRule
from services.provisioning.topup_states import TopUpStatus
from services.stripe_simulator.ledger import payment_intents
from shared import outbox, topics
from shared.batches import BatchConsumer, _rounds, batched
from shared.events import Envelope, Money, PaymentCaptured, order_id_for
from shared.inbox import processed_messages
from shared.kafka import message_headers
from shared.limits import MAX_MESSAGE_BYTES
from shared.metrics import CONSUMED
from shared.topics import dead_letter_topic
from tests.factories import order_request
from tests.unit.harness import InMemoryService, in_memory_service, running
from tests.unit.payments_fixtures import API_KEY
from tests.unit.test_dead_letters import raw_body
from tests.unit.test_payments_handlers import charge, payments_service
from tests.unit.test_provisioning_handlers import ICCID, rig_with, top_up_line

SECOND_LINE = "8944500102198304818"  # a valid ICCID the carrier simulator knows
PRICE = Money(amount_minor=1586, currency="EUR")
FEE = Money(amount_minor=0, currency="EUR")


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[InMemoryService]:
    settings = OrdersSettings(payment_timeout_s=60)
    async with in_memory_service("orders", handlers.router, metadata, tmp_path, settings) as svc:
        yield svc


class Consumer:
    """What a batch consumer asks of aiokafka's while handling a fetch: where to seek."""

    def __init__(self) -> None:
        self.sought: list[tuple[TopicPartition, int]] = []

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.sought.append((tp, offset))


def consumer_of(service: InMemoryService, topic: str) -> BatchConsumer:
    [(subscriber, how)] = [
        (sub, how)
        for sub, how in batched(service.broker.subscribers)
        if sub.topics[0].name == topic
    ]
    return BatchConsumer(subscriber, how, service.sessions, service.broker.context, max_records=500)


def dead_letters(service: InMemoryService, topic: str) -> list[KafkaMessage]:
    """What reaches `topic`'s dead-letter topic, whatever its bytes."""
    dead: list[KafkaMessage] = []

    @service.broker.subscriber(dead_letter_topic(topic), group_id="t-dlt", decoder=raw_body)
    async def collect(msg: KafkaMessage) -> None:
        dead.append(msg)

    return dead


def records(topic: str, *bodies: Envelope | dict[str, Any] | bytes) -> list[ConsumerRecord]:
    made = []
    for offset, body in enumerate(bodies, start=10):
        if isinstance(body, Envelope):
            value, key = body.model_dump_json().encode(), body.iccid.encode()
            headers = [(k, v.encode()) for k, v in message_headers(body).items()]
        elif isinstance(body, dict):
            value, key, headers = json.dumps(body).encode(), str(body["iccid"]).encode(), []
        else:
            value, key, headers = body, b"89440000000000000000", []
        made.append(
            ConsumerRecord(topic, 0, offset, 0, 0, key, value, None, len(key), len(value), headers)
        )
    return made


def captured(request: dict[str, Any]) -> PaymentCaptured:
    order_id = order_id_for(request["request_id"])
    return PaymentCaptured(
        order_id=order_id, iccid=request["iccid"], amount=PRICE, fee=FEE, provider_reference="p"
    )


async def count(service: InMemoryService, table: Any, *where: Any) -> int:
    async with service.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(table).where(*where)) or 0)


def consumed(topic: str, path: str) -> float:
    return float(CONSUMED.labels(topic, path)._value.get())


async def test_three_order_requests_are_placed_in_one_batch_and_their_offset_committed_once(
    service: InMemoryService,
) -> None:
    requests = [order_request() for _ in range(3)]
    batch = records(topics.ORDERS_COMMANDS, *requests)
    before = consumed(topics.ORDERS_COMMANDS, "batch")
    consumer = Consumer()
    async with running(service.broker):
        _tp, commit = await consumer_of(service, topics.ORDERS_COMMANDS)._partition(
            consumer, TopicPartition(topics.ORDERS_COMMANDS, 0), batch
        )
    assert commit == 13  # the offset after the last record: committed once for all
    assert consumed(topics.ORDERS_COMMANDS, "batch") - before == 3
    assert await count(service, orders, orders.c.state == "PAYMENT_PENDING") == 3
    # Each order announced and charged: two outbox rows per order, stored together.
    assert await count(service, outbox.outbox) == 6
    assert consumer.sought == []


async def test_a_repeat_inside_a_batch_is_acted_on_once(service: InMemoryService) -> None:
    request = order_request()
    async with running(service.broker):
        await service.send(topics.ORDERS_COMMANDS, request)
        payment = captured(request)
        batch = records(topics.PAYMENTS_EVENTS, payment, payment, payment)
        _, commit = await consumer_of(service, topics.PAYMENTS_EVENTS)._partition(
            Consumer(), TopicPartition(topics.PAYMENTS_EVENTS, 0), batch
        )
    assert commit == 13
    order_id = order_id_for(request["request_id"])
    moved = order_transitions.c
    assert await count(service, order_transitions, moved.order_id == order_id,
                       moved.to_state == "TOPUP_PENDING") == 1  # fmt: skip
    assert await count(service, processed_messages) == 1
    assert (
        await count(service, outbox.outbox, outbox.outbox.c.topic == topics.PROVISIONING_COMMANDS)
        == 1
    )


async def test_a_message_its_step_refuses_is_dead_lettered_alone_and_the_rest_go_on_in_batches(
    service: InMemoryService,
) -> None:
    dead = service.watch(dead_letter_topic(topics.PAYMENTS_EVENTS))
    first, unknown, last = (
        order_request(),
        order_request(),
        order_request(),
    )  # `unknown`: never placed
    one, batched_ = (
        consumed(topics.PAYMENTS_EVENTS, "one"),
        consumed(topics.PAYMENTS_EVENTS, "batch"),
    )
    async with running(service.broker):
        await service.send(topics.ORDERS_COMMANDS, first)
        await service.send(topics.ORDERS_COMMANDS, last)
        batch = records(topics.PAYMENTS_EVENTS, captured(first), captured(unknown), captured(last))
        _, commit = await consumer_of(service, topics.PAYMENTS_EVENTS)._partition(
            Consumer(), TopicPartition(topics.PAYMENTS_EVENTS, 0), batch
        )
    assert commit == 13
    assert consumed(topics.PAYMENTS_EVENTS, "one") - one == 1
    assert consumed(topics.PAYMENTS_EVENTS, "batch") - batched_ == 2
    assert [d["order_id"] for d in dead] == [str(order_id_for(unknown["request_id"]))]
    assert await count(service, orders, orders.c.state == "TOPUP_PENDING") == 2


async def test_a_batch_failing_for_another_reason_leaves_nothing_and_goes_one_at_a_time(
    service: InMemoryService,
) -> None:
    requests = [order_request() for _ in range(3)]
    batches = consumer_of(service, topics.ORDERS_COMMANDS)
    prepare = batches.how.prepare
    assert prepare is not None

    async def database_away(session: Any, messages: list[Any], context: Any) -> None:
        await prepare(session, messages, context)
        raise ConnectionResetError("the database went away")  # after the book's lookups

    batches.how = replace(batches.how, prepare=database_away)
    one = consumed(topics.ORDERS_COMMANDS, "one")
    async with running(service.broker):
        _, commit = await batches._partition(
            Consumer(), TopicPartition(topics.ORDERS_COMMANDS, 0),
            records(topics.ORDERS_COMMANDS, *requests),
        )  # fmt: skip
    assert commit == 13
    assert consumed(topics.ORDERS_COMMANDS, "one") - one == 3
    assert await count(service, orders, orders.c.state == "PAYMENT_PENDING") == 3


@pytest.mark.parametrize(
    "bad",
    [b"{not json", b"[1, 2]", b"x" * (MAX_MESSAGE_BYTES + 1)],
    ids=["undecodable", "not-an-object", "too-large"],
)
async def test_a_record_the_batch_cannot_parse_is_refused_alone_and_the_others_are_placed(
    service: InMemoryService, bad: bytes
) -> None:
    dead = dead_letters(service, topics.ORDERS_COMMANDS)
    requests = [order_request(), order_request()]
    batch = records(topics.ORDERS_COMMANDS, requests[0], bad, requests[1])
    one = consumed(topics.ORDERS_COMMANDS, "one")
    async with running(service.broker):
        _, commit = await consumer_of(service, topics.ORDERS_COMMANDS)._partition(
            Consumer(), TopicPartition(topics.ORDERS_COMMANDS, 0), batch
        )
    assert commit == 13
    assert [m.headers["dlq.source.offset"] for m in dead] == ["11"]
    assert consumed(topics.ORDERS_COMMANDS, "one") - one == 1  # the others, in batches
    assert await count(service, orders, orders.c.state == "PAYMENT_PENDING") == 2


async def test_a_message_given_back_is_sought_and_nothing_after_it_is_committed(
    service: InMemoryService, monkeypatch: pytest.MonkeyPatch
) -> None:
    requests = [order_request() for _ in range(3)]
    batch = records(topics.ORDERS_COMMANDS, requests[0], b"{not json", requests[2])
    batches = consumer_of(service, topics.ORDERS_COMMANDS)
    consume = batches.subscriber.consume

    async def dead_letter_topic_away(record: ConsumerRecord) -> Any:
        if record.offset == 11:  # its dead letter cannot be written: FastStream seeks back
            record.consumer.seek(TopicPartition(record.topic, record.partition), record.offset)
            return None
        return await consume(record)

    consumer = Consumer()
    async with running(service.broker):
        monkeypatch.setattr(batches.subscriber, "consume", dead_letter_topic_away)
        tp, commit = await batches._partition(
            consumer, TopicPartition(topics.ORDERS_COMMANDS, 0), batch
        )
    assert commit == 11  # the first is done; the second comes again, and the third after it
    assert consumer.sought == [(tp, 11)]
    assert await count(service, orders) == 1


def test_a_batch_is_cut_before_a_second_message_about_the_same_key() -> None:
    parsed = [(None, key) for key in ["a", "b", "a", "c", "b", "b"]]
    rounds = _rounds(parsed, key=lambda message: message)
    assert [[m for _, m in r] for r in rounds] == [["a", "b"], ["a", "c", "b"], ["b"]]
    assert _rounds(parsed, key=None) == [parsed]


async def test_a_batch_of_charges_charges_each_once_and_a_repeat_gets_the_first_answer_again(
    tmp_path: Path, provider: StripeProvider, provider_engine: AsyncEngine
) -> None:
    first, second = charge(), charge()
    async with payments_service(tmp_path, provider) as service:
        answers = service.watch(topics.PAYMENTS_EVENTS)
        async with running(service.broker):
            batch = records(topics.PAYMENTS_COMMANDS, first, second, first)
            _, commit = await consumer_of(service, topics.PAYMENTS_COMMANDS)._partition(
                Consumer(), TopicPartition(topics.PAYMENTS_COMMANDS, 0), batch
            )
            await service.relay()
        assert commit == 13
        assert await count(service, payments, payments.c.status == "CAPTURED") == 2
    async with provider_engine.connect() as connection:
        intents = await connection.scalar(select(func.count()).select_from(payment_intents))
    assert intents == 2  # the repeat, in a round of its own, got the first answer again
    assert sorted(a["order_id"] for a in answers) == sorted(
        [str(first.order_id), str(second.order_id), str(first.order_id)]
    )
    assert {a["type"] for a in answers} == {"PaymentCaptured"}


@contextmanager
def statements_counted(service: InMemoryService) -> Iterator[list[str]]:
    """Every SQL statement the service's engine runs inside, in order, and COMMIT where a
    transaction commits."""
    engine = service.sessions.kw["bind"].sync_engine
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement.split()[0].upper())

    def committed(_conn: Any) -> None:
        seen.append("COMMIT")

    event.listen(engine, "before_cursor_execute", count)
    event.listen(engine, "commit", committed)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)
        event.remove(engine, "commit", committed)


def first_transaction(statements: list[str]) -> list[str]:
    """The statements up to the first COMMIT, BEGIN left out."""
    return [s for s in statements[: statements.index("COMMIT")] if s != "BEGIN"]


@pytest.mark.parametrize("size", [2, 12])
async def test_a_batch_runs_as_many_statements_whatever_its_size(
    service: InMemoryService, size: int
) -> None:
    requests = [order_request() for _ in range(size)]
    async with running(service.broker):
        with statements_counted(service) as placing:
            await consumer_of(service, topics.ORDERS_COMMANDS)._partition(
                Consumer(), TopicPartition(topics.ORDERS_COMMANDS, 0), records(
                    topics.ORDERS_COMMANDS, *requests)
            )  # fmt: skip
        payments = [captured(r) for r in requests]
        with statements_counted(service) as paying:
            await consumer_of(service, topics.PAYMENTS_EVENTS)._partition(
                Consumer(), TopicPartition(topics.PAYMENTS_EVENTS, 0), records(
                    topics.PAYMENTS_EVENTS, *payments)
            )  # fmt: skip
    assert await count(service, orders, orders.c.state == "TOPUP_PENDING") == size
    # Orders and rejections looked up; orders, timeline and outbox rows written: once each.
    assert [s for s in placing if s not in {"BEGIN", "COMMIT"}] == [
        "SELECT", "SELECT", "INSERT", "INSERT", "INSERT"
    ]  # fmt: skip
    # Inbox; orders loaded and locked; orders, timeline and outbox rows written.
    assert [s for s in paying if s not in {"BEGIN", "COMMIT"}] == [
        "INSERT", "SELECT", "UPDATE", "INSERT", "INSERT"
    ]  # fmt: skip


@pytest.mark.parametrize("size", [2, 12])
async def test_a_batch_of_charges_records_them_in_one_statement_whatever_its_size(
    tmp_path: Path, stripe_simulator: FastAPI, size: int
) -> None:
    # Patient enough that no charge of the batch times out on a busy machine: every one
    # is answered, so the repeats all get an answer again.
    transport = httpx.ASGITransport(app=stripe_simulator)
    provider = StripeProvider(
        API_KEY, api_base="http://stripe-simulator", timeout_s=10.0, transport=transport
    )
    commands = [charge() for _ in range(size)]
    async with payments_service(tmp_path, provider) as service, running(service.broker):
        consumer = consumer_of(service, topics.PAYMENTS_COMMANDS)
        where = TopicPartition(topics.PAYMENTS_COMMANDS, 0)
        with statements_counted(service) as charging:
            await consumer._partition(Consumer(), where, records(where.topic, *commands))
        with statements_counted(service) as repeating:
            await consumer._partition(Consumer(), where, records(where.topic, *commands))
        assert await count(service, payments, payments.c.status == "CAPTURED") == size
    await provider.close()
    # The intents' transaction: the charges inserted, then their calls after it commits.
    assert first_transaction(charging) == ["INSERT"]
    # Repeats: none inserted, the answers they get again read in one statement, and
    # staged in the outbox in one.
    assert first_transaction(repeating) == ["INSERT", "SELECT", "INSERT"]


@pytest.mark.parametrize("refused_first", [False, True])
async def test_a_charge_refused_without_the_provider_keeps_its_reason_in_a_batch_with_others(
    tmp_path: Path, provider: StripeProvider, refused_first: bool
) -> None:
    paid, refused = charge(), charge(paying_with="4242424242424242")  # a card number
    batch = [refused, paid] if refused_first else [paid, refused]
    async with payments_service(tmp_path, provider) as service:
        answers = service.watch(topics.PAYMENTS_EVENTS)
        where = TopicPartition(topics.PAYMENTS_COMMANDS, 0)
        consumed_alone = consumed(topics.PAYMENTS_COMMANDS, "one")
        async with running(service.broker):
            await consumer_of(service, topics.PAYMENTS_COMMANDS)._partition(
                Consumer(), where, records(where.topic, *batch)
            )
            await service.relay()
        async with service.sessions() as session:
            stored = (
                await session.execute(
                    select(payments.c.status, payments.c.decline_reason).where(
                        payments.c.idempotency_key == refused.idempotency_key
                    )
                )
            ).one()
    assert tuple(stored) == ("DECLINED", "card_number_not_accepted")
    by_order = {a["order_id"]: a for a in answers}
    assert by_order[str(refused.order_id)]["reason"] == "card_number_not_accepted"
    assert by_order[str(paid.order_id)]["type"] == "PaymentCaptured"
    assert consumed(topics.PAYMENTS_COMMANDS, "one") == consumed_alone  # all in the batch


@pytest.mark.parametrize("size", [2, 12])
async def test_a_batch_of_top_ups_records_them_in_a_statement_per_table_whatever_its_size(
    tmp_path: Path, size: int
) -> None:
    commands = [top_up_line(iccid=ICCID if n % 2 else SECOND_LINE) for n in range(size)]
    async with rig_with(tmp_path, StackingRule.EXTEND) as rig:
        consumer = consumer_of(rig.service, topics.PROVISIONING_COMMANDS)
        where = TopicPartition(topics.PROVISIONING_COMMANDS, 0)
        with statements_counted(rig.service) as topping_up:
            await consumer._partition(Consumer(), where, records(where.topic, *commands))
        assert [(await rig.topup(c)).status for c in commands] == [TopUpStatus.APPLIED] * size
    # The top-ups inserted, their lines inserted if new, and the top-ups read back.
    assert first_transaction(topping_up) == ["INSERT", "INSERT", "SELECT"]


async def test_a_record_not_sent_as_json_is_refused_alone_as_the_subscriber_always_did(
    service: InMemoryService,
) -> None:
    dead = dead_letters(service, topics.ORDERS_COMMANDS)
    requests = [order_request() for _ in range(3)]
    batch = records(topics.ORDERS_COMMANDS, *requests)
    batch[1].headers = [("content-type", b"text/plain")]  # FastStream hands its handler a str
    async with running(service.broker):
        _, commit = await consumer_of(service, topics.ORDERS_COMMANDS)._partition(
            Consumer(), TopicPartition(topics.ORDERS_COMMANDS, 0), batch
        )
    assert commit == 13
    assert [m.headers["dlq.reason"] for m in dead] == ["schema_invalid"]
    assert await count(service, orders) == 2


class GoneConsumer(Consumer):
    """A consumer whose partitions went to another member meanwhile (a rebalance)."""

    def seek(self, tp: TopicPartition, offset: int) -> None:
        raise IllegalStateError(f"No current assignment for partition {tp}")


async def test_a_record_given_back_on_a_partition_no_longer_ours_commits_nothing_and_goes_on(
    service: InMemoryService, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches = consumer_of(service, topics.ORDERS_COMMANDS)
    batch = records(topics.ORDERS_COMMANDS, order_request(), b"{not json", order_request())

    async def dead_letter_topic_away(record: ConsumerRecord) -> Any:
        record.consumer.seek(TopicPartition(record.topic, record.partition), record.offset)

    async with running(service.broker):
        monkeypatch.setattr(batches.subscriber, "consume", dead_letter_topic_away)
        _, commit = await batches._partition(
            GoneConsumer(), TopicPartition(topics.ORDERS_COMMANDS, 0), batch
        )
    assert commit is None  # its new owner reads it from the last commit


class Fetches:
    """aiokafka's consumer as the batch loop uses it: one fetch, then stopped."""

    def __init__(self, fetch: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        self.fetches = [fetch]
        self.committed: list[dict[TopicPartition, Any]] = []
        self.sought: list[tuple[TopicPartition, int]] = []

    async def getmany(self, **_options: Any) -> dict[TopicPartition, list[ConsumerRecord]]:
        if not self.fetches:
            raise ConsumerStoppedError
        return self.fetches.pop()

    async def commit(self, offsets: dict[TopicPartition, Any]) -> None:
        self.committed.append(offsets)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.sought.append((tp, offset))


async def test_a_partition_that_fails_unexpectedly_is_read_again_and_the_loop_goes_on(
    service: InMemoryService,
) -> None:
    good, bad = TopicPartition(topics.ORDERS_COMMANDS, 0), TopicPartition(topics.ORDERS_COMMANDS, 1)
    fetch = {
        good: records(topics.ORDERS_COMMANDS, order_request()),
        bad: records(topics.ORDERS_COMMANDS, order_request()),
    }
    batches = consumer_of(service, topics.ORDERS_COMMANDS)
    handle = batches._partition

    async def failing_on_one(consumer: Any, tp: TopicPartition, got: Any) -> Any:
        if tp == bad:
            raise RuntimeError("a bug, say")
        return await handle(consumer, tp, got)

    batches._partition = failing_on_one  # type: ignore[method-assign,assignment]  # this one only
    consumer = Fetches(fetch)
    async with running(service.broker):
        await batches._run(consumer)  # returns once stopped
    assert [{tp: o.offset for tp, o in c.items()} for c in consumer.committed] == [{good: 11}]
    assert consumer.sought == [(bad, 10)]
