"""Malformed payloads thrown at every consumer, in memory (TestKafkaBroker over SQLite).

Each payload must be accounted for and no exception may escape the consumer:
either it is dead-lettered exactly once (its very bytes on `<topic>.dlt`, with the
source headers) or the service handled it and said so on one of its output topics
(orders answers a malformed PlaceOrder that has a usable request_id with
OrderRejected). Silence is accepted only where a valid message rightly leads to no
message: on a topic of SILENCE_IS_FINE_ON, for a body that is a valid message of that
topic (the contract's model says so), and for a usage report, only once provisioning
has recorded it. Anything else, a silent drop included, fails the test.

FUZZ_EXAMPLES (default 300) sets the number of examples; one instance of each
service serves them all, on an event loop of this module's own.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from faststream.kafka import KafkaMessage, TestKafkaBroker
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter
from sqlalchemy import select

from services.orders import db as orders_db
from services.orders import handlers as orders_handlers
from services.orders.settings import OrdersSettings
from services.payments import db as payments_db
from services.payments import handlers as payments_handlers
from services.payments.backoff import Backoff
from services.payments.context import provide
from services.provisioning import db as provisioning_db
from services.provisioning import handlers as provisioning_handlers
from services.provisioning.provisioning import PROVISIONER, Provisioner
from services.provisioning.renewals import renewal_request_id
from services.stripe_simulator import app as stripe_simulator
from shared import dead_letters, limits, topics
from shared.batches import BatchConsumer, batched
from shared.card_numbers import luhn_valid
from shared.events import (
    CancelPayment,
    ChargePayment,
    Envelope,
    LineToppedUp,
    Money,
    OrderCompleted,
    OrderExpired,
    OrderPaymentFailed,
    OrderPlaced,
    OrderRefunded,
    OrderRejected,
    OrdersEvent,
    PaymentCancelled,
    PaymentCaptured,
    PaymentDeclined,
    PaymentPending,
    PaymentRefunded,
    RefundPayment,
    TopUpFailed,
    TopUpLine,
    UsageReported,
    order_id_for,
)
from shared.topics import dead_letter_topic
from tests.unit.carrier_fixtures import simulated_carrier
from tests.unit.harness import InMemoryService, in_memory_service
from tests.unit.payments_fixtures import adapter_for, simulator_settings

pytestmark = pytest.mark.fuzz

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))

# The consumers, by input topic: which service consumes it.
CONSUMED_BY = {
    topics.ORDERS_COMMANDS: "orders",
    topics.PAYMENTS_EVENTS: "orders",
    topics.PROVISIONING_EVENTS: "orders",
    topics.PAYMENTS_COMMANDS: "payments",
    topics.PROVISIONING_COMMANDS: "provisioning",
    topics.CARRIER_USAGE: "provisioning",
    topics.ORDERS_EVENTS: "provisioning",  # for its renewal orders; orders does not read it
}
# Where each service says that it handled something.
OUTPUTS = {
    "orders": (topics.ORDERS_EVENTS, topics.PAYMENTS_COMMANDS, topics.PROVISIONING_COMMANDS),
    "payments": (topics.PAYMENTS_EVENTS,),
    "provisioning": (
        topics.PROVISIONING_EVENTS,
        topics.PROVISIONING_LINE_EVENTS,  # alerts a usage report raised, a renewal paused
        topics.ORDERS_COMMANDS,  # a renewal order an alert placed
    ),
}
# Where a valid message may rightly lead to no message at all, and the contract's model
# that tells a valid one: a usage report for a line without a package cycle (or one that
# crosses no threshold) is only recorded; an order event not about a renewal is skipped,
# and so is one about a renewal order provisioning does not know.
SILENCE_IS_FINE_ON: dict[str, TypeAdapter[Any]] = {
    topics.CARRIER_USAGE: TypeAdapter(UsageReported),
    topics.ORDERS_EVENTS: TypeAdapter(OrdersEvent),
}
REASONS = {
    "too_large",
    "undecodable",
    "schema_invalid",
    "unknown_schema_version",
    "business_rule",
    "retries_exhausted",
}

# --- the services, started once ---------------------------------------------------------


async def raw_body(msg: KafkaMessage) -> bytes:
    """Leave the bytes alone, so the collectors themselves can never fail."""
    return bytes(msg.body)


@dataclass
class Consumer:
    """One service under fuzz, with what it dead-letters and what it publishes."""

    service: InMemoryService
    dead: list[KafkaMessage] = field(default_factory=list)
    answers: list[KafkaMessage] = field(default_factory=list)

    def collect(self, topic: str, into: list[KafkaMessage]) -> None:
        @self.service.broker.subscriber(topic, group_id=f"fuzz:{topic}", decoder=raw_body)
        async def collect(msg: KafkaMessage) -> None:
            into.append(msg)


@dataclass
class Outcome:
    dead: list[KafkaMessage]
    answers: list[KafkaMessage]
    usage_reports_recorded: set[uuid.UUID]  # rows provisioning's usage_reports gained


class Rig:
    """The three services on an event loop of their own, reused by every example.

    TestKafkaBroker records every message it delivers (for its mocks); it is
    re-entered every RECYCLE_EVERY payloads so memory stays flat over a long run.
    """

    RECYCLE_EVERY = 500

    def __init__(self, runner: asyncio.Runner, consumers: dict[str, Consumer]) -> None:
        self.runner = runner
        self.consumers = consumers
        self.thrown = 0
        self.in_batches = 0
        self._testing = AsyncExitStack()
        self._usage_reports: set[uuid.UUID] = set()
        self.runner.run(self._start_testing())

    async def _start_testing(self) -> None:
        for consumer in self.consumers.values():
            await self._testing.enter_async_context(TestKafkaBroker(consumer.service.broker))

    def close(self) -> None:
        self.runner.run(self._testing.aclose())

    def throw(self, topic: str, body: bytes, key: bytes | None) -> Outcome:
        self.thrown += 1
        if self.thrown % self.RECYCLE_EVERY == 0:
            self.close()
            self.runner.run(self._start_testing())
        consumer = self.consumers[CONSUMED_BY[topic]]
        consumer.dead.clear()  # only this payload's
        consumer.answers.clear()
        # Every other payload as a running service takes it: a batch (of one) of the
        # service's batch consumer, which hands what it cannot take to the subscriber.
        as_a_batch = self.thrown % 2 == 0
        self.in_batches += as_a_batch

        async def publish_and_relay() -> set[uuid.UUID]:
            if as_a_batch:
                await batch_of(consumer.service, topic, body, key, self.thrown)
            else:
                await consumer.service.broker.publish(body, topic=topic, key=key)
            await consumer.service.relay()
            return await self._new_usage_reports() if topic == topics.CARRIER_USAGE else set()

        recorded = self.runner.run(publish_and_relay())
        return Outcome(list(consumer.dead), list(consumer.answers), recorded)

    def top_up(self, command: TopUpLine) -> None:
        """Give a line a package cycle, so usage reports also reach one."""
        provisioning = self.consumers["provisioning"]
        provisioning.answers.clear()
        self.runner.run(provisioning.service.send(topics.PROVISIONING_COMMANDS, command))
        assert [m.headers.get("type") for m in provisioning.answers] == ["LineToppedUp"]

    async def _new_usage_reports(self) -> set[uuid.UUID]:
        """The ids of the usage reports provisioning recorded since the last call."""
        async with self.consumers["provisioning"].service.sessions() as session:
            ids = set(await session.scalars(select(provisioning_db.usage_reports.c.report_id)))
        new, self._usage_reports = ids - self._usage_reports, ids
        return new


class _Seeks:
    """The aiokafka consumer a batch consumer seeks with, when a record is given back."""

    def seek(self, _tp: TopicPartition, _offset: int) -> None:
        raise AssertionError("a fuzz payload was given back: its dead letter was not written")


async def batch_of(
    service: InMemoryService, topic: str, body: bytes, key: bytes | None, offset: int
) -> None:
    """`body` as one record of a fetch, through the service's batch consumer of `topic`."""
    [(subscriber, how)] = [
        (sub, how) for sub, how in batched(service.broker.subscribers) if topic in sub.topic_names
    ]
    batches = BatchConsumer(subscriber, how, service.sessions, service.broker.context,
                            max_records=500)  # fmt: skip
    size = len(key or b"")
    record = ConsumerRecord(topic, 0, offset, 0, 0, key, body, None, size, len(body), [])
    await batches._partition(_Seeks(), TopicPartition(topic, 0), [record])


async def start(stack: AsyncExitStack, tmp: Path) -> dict[str, Consumer]:
    orders = await stack.enter_async_context(
        in_memory_service(
            "orders", orders_handlers.router, orders_db.metadata, tmp, OrdersSettings()
        )
    )
    payments = await stack.enter_async_context(
        in_memory_service("payments", payments_handlers.router, payments_db.metadata, tmp)
    )
    # The real Stripe adapter, talking to the Stripe simulator in process.
    stripe = stripe_simulator.build_app(simulator_settings(tmp))
    await stripe.state.simulator.ready()
    stack.push_async_callback(stripe.state.simulator.engine.dispose)
    adapter = adapter_for(stripe)
    stack.push_async_callback(adapter.close)
    provide(payments.broker, adapter, Backoff())
    provisioning = await stack.enter_async_context(
        in_memory_service(
            "provisioning", provisioning_handlers.router, provisioning_db.metadata, tmp
        )
    )
    carrier = await stack.enter_async_context(simulated_carrier(tmp))
    provisioning.broker.context.set_global(PROVISIONER, Provisioner(carrier.adapter))

    consumers = {
        "orders": Consumer(orders),
        "payments": Consumer(payments),
        "provisioning": Consumer(provisioning),
    }
    for name, consumer in consumers.items():
        for topic in topics.DEAD_LETTER_TOPICS:  # all of them: a wrong one is seen too
            consumer.collect(topic, consumer.dead)
        for topic in OUTPUTS[name]:
            consumer.collect(topic, consumer.answers)
    return consumers


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    runner = asyncio.Runner(loop_factory=asyncio.new_event_loop)
    stack = AsyncExitStack()
    with pytest.MonkeyPatch.context() as patch:
        # Still retried (the path is exercised), without waiting between attempts.
        patch.setattr(dead_letters, "RETRY_DELAYS_S", (0.0, 0.0, 0.0, 0.0))
        try:
            rig = Rig(runner, runner.run(start(stack, tmp_path_factory.mktemp("fuzz"))))
            try:
                rig.top_up(top_up_line(TOPPED_UP_LINE))
                yield rig
            finally:
                rig.close()
        finally:
            runner.run(stack.aclose())
            runner.close()


# --- valid messages, to break -----------------------------------------------------------

EUR = Money(amount_minor=1545, currency="EUR")
FEE = Money(amount_minor=45, currency="EUR")


def fresh_iccid() -> str:
    """A valid ICCID from uuid4 (the `random` module is off limits inside strategies)."""
    body = "89" + str(uuid.uuid4().int)[:16]
    return next(body + d for d in "0123456789" if luhn_valid(body + d))


def place_order() -> dict[str, Any]:
    return {
        "type": "PlaceOrder", "request_id": f"fuzz-{uuid.uuid4()}", "iccid": fresh_iccid(),
        "package_id": "eu-5gb-30d", "currency": "EUR", "payment_method": "card",
        "payment_token": "tok_visa_4242", "msisdn": "+447700900123",
        "email": "traveller@example.com",
    }  # fmt: skip


def _ids() -> dict[str, Any]:
    return {"order_id": uuid.uuid4(), "iccid": fresh_iccid()}


def _keyed(kind: str) -> Callable[[], dict[str, Any]]:
    def build() -> dict[str, Any]:
        ids = _ids()
        return {**ids, "idempotency_key": f"{ids['order_id']}:{kind}"}

    return build


def _dump(message: Envelope) -> dict[str, Any]:
    return message.model_dump(mode="json")


def _order_ids() -> dict[str, Any]:
    request_id = f"fuzz-{uuid.uuid4()}"
    return {"order_id": order_id_for(request_id), "iccid": fresh_iccid(), "request_id": request_id}


def as_renewal(body: dict[str, Any]) -> dict[str, Any]:
    """The same message about a renewal order of its line, as provisioning places them."""
    request_id = renewal_request_id(body["iccid"], uuid.uuid4(), "data_used_90", 1)
    return {**body, "request_id": request_id, "order_id": str(order_id_for(request_id))}


def top_up_line(iccid: str) -> TopUpLine:
    order_id = uuid.uuid4()
    return TopUpLine(
        order_id=order_id, iccid=iccid, package_id="eu-5gb-30d", data_mb=5120, bonus_mb=0,
        validity_days=30, idempotency_key=f"{order_id}:topup",
    )  # fmt: skip


# Topped up by the rig, and the line of half the messages: their usage reports reach a
# package cycle (taken from its balance, then beyond it, raising alerts on the way).
TOPPED_UP_LINE = fresh_iccid()


def usage_reported() -> dict[str, Any]:
    return _dump(
        UsageReported(
            event_id=uuid.uuid4(),
            iccid=fresh_iccid(),
            used_mb=4000,  # of the topped-up line's 5 GB: its thresholds in a report or two
            period_start=datetime(2026, 5, 1, 10, tzinfo=UTC),
            period_end=datetime(2026, 5, 1, 10, 15, tzinfo=UTC),
        )
    )


VALID: dict[str, Callable[[], dict[str, Any]]] = {
    "PlaceOrder": place_order,
    "PaymentPending": lambda: _dump(PaymentPending(**_ids(), provider_reference="sim_pp_1")),
    "PaymentCaptured": lambda: _dump(
        PaymentCaptured(**_ids(), amount=EUR, fee=FEE, provider_reference="sim_ch_1")
    ),
    "PaymentDeclined": lambda: _dump(
        PaymentDeclined(**_ids(), reason="insufficient_funds", message="declined")
    ),
    "PaymentCancelled": lambda: _dump(PaymentCancelled(**_ids(), reason="expired")),
    "PaymentRefunded": lambda: _dump(
        PaymentRefunded(**_ids(), amount=EUR, provider_reference="sim_re_1")
    ),
    "LineToppedUp": lambda: _dump(
        LineToppedUp(
            **_ids(),
            data_mb=5120,
            valid_until=datetime(2027, 1, 1, tzinfo=UTC),
            data_remaining_mb=6000,
        )
    ),
    "TopUpFailed": lambda: _dump(
        TopUpFailed(**_ids(), reason="line_suspended", message="suspended", attempts=1)
    ),
    "ChargePayment": lambda: _dump(
        ChargePayment(
            **_keyed("charge")(),
            amount=EUR,
            fee=FEE,
            payment_method="card",
            payment_token="tok_visa_4242",
        )
    ),
    "CancelPayment": lambda: _dump(CancelPayment(**_keyed("charge")(), reason="expired")),
    "RefundPayment": lambda: _dump(
        RefundPayment(**_keyed("refund")(), amount=EUR, reason="topup_failed")
    ),
    "TopUpLine": lambda: _dump(
        TopUpLine(
            **_keyed("topup")(),
            package_id="eu-5gb-30d",
            data_mb=5120,
            bonus_mb=0,
            validity_days=30,
        )
    ),
    "UsageReported": usage_reported,
    "OrderPlaced": lambda: _dump(
        OrderPlaced(
            **_order_ids(),
            package_id="eu-5gb-30d",
            catalog_version="2026-01",
            price=EUR,
            discount=Money(amount_minor=0, currency="EUR"),
            fee=FEE,
            total=EUR + FEE,
            payment_method="card",
        )
    ),
    "OrderRejected": lambda: _dump(
        OrderRejected(**_order_ids(), reason="unknown_package", message="no such package")
    ),
    "OrderCompleted": lambda: _dump(
        OrderCompleted(**_order_ids(), data_mb=5120, valid_until=datetime(2027, 1, 1, tzinfo=UTC))
    ),
    "OrderPaymentFailed": lambda: _dump(
        OrderPaymentFailed(**_order_ids(), reason="insufficient_funds", message="declined")
    ),
    "OrderExpired": lambda: _dump(OrderExpired(**_order_ids())),
    "OrderRefunded": lambda: _dump(
        OrderRefunded(**_order_ids(), amount=EUR + FEE, reason="topup_failed")
    ),
}
MESSAGE_NAMES = sorted({name for names in topics.MESSAGES_ON.values() for name in names})


# --- strategies -------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and Infinity included: Python's json reads them
    | st.text(max_size=40)
    | st.text(st.characters(categories=["Cs"]), min_size=1, max_size=3)  # lone surrogates
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=12,
)
huge_strings = st.builds(
    lambda char, size: char * size,
    st.sampled_from(["x", "é", "€", "\U0001f4e1", "\\", '"', "\x00"]),
    st.integers(min_value=10_000, max_value=1_000_000),
)


@st.composite
def broken_message(draw: st.DrawFn, topic: str) -> bytes:
    """A valid message of this topic (now and then of another), then broken a little."""
    own = [name for name in topics.MESSAGES_ON[topic] if name in VALID]
    name = draw(st.sampled_from(own) if draw(st.integers(0, 4)) else st.sampled_from(sorted(VALID)))
    body: dict[str, Any] = VALID[name]()
    if draw(st.booleans()):
        body["iccid"] = TOPPED_UP_LINE
    if "request_id" in body and draw(st.booleans()):
        body = as_renewal(body)  # provisioning settles the events of renewal orders
    for _ in range(draw(st.integers(0, 3))):
        mutation = draw(
            st.sampled_from(["delete", "retype", "version", "type", "huge", "nested", "extra"])
        )
        fields = sorted(body)
        if not fields:
            break
        chosen = draw(st.sampled_from(fields))
        match mutation:
            case "delete":
                del body[chosen]
            case "retype":
                body[chosen] = draw(json_values)
            case "version":
                body["schema_version"] = draw(
                    st.sampled_from([0, 2, 99, -1, "1", "2", 1.0, 1.5, True, None, [1]])
                    | st.integers()
                )
            case "type":
                body["type"] = draw(st.sampled_from(MESSAGE_NAMES) | json_values)
            case "huge":
                body[chosen] = draw(huge_strings)
            case "nested":
                nested = [k for k, v in body.items() if isinstance(v, dict) and v]
                if nested:
                    inner = body[draw(st.sampled_from(sorted(nested)))]
                    key = draw(st.sampled_from(sorted(inner)))
                    if draw(st.booleans()):
                        del inner[key]
                    else:
                        inner[key] = draw(json_values | st.integers(min_value=2**63))
            case "extra":
                body[draw(st.text(max_size=20))] = draw(json_values)
    return draw(encoded(body))


@st.composite
def encoded(draw: st.DrawFn, value: Any) -> bytes:
    ascii_json = json.dumps(value).encode()
    match draw(st.sampled_from(["json", "json", "json", "utf8", "utf16", "cut", "junk", "bom"])):
        case "json":
            return ascii_json
        case "utf8":
            return json.dumps(value, ensure_ascii=False).encode(errors="surrogatepass")
        case "utf16":
            return json.dumps(value).encode("utf-16")
        case "cut":
            return ascii_json[: draw(st.integers(0, max(0, len(ascii_json) - 1)))]
        case "junk":
            return ascii_json + draw(st.binary(min_size=1, max_size=8))
        case _:
            return b"\xef\xbb\xbf" + ascii_json


def payloads(topic: str) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=512),
        st.text(max_size=200).map(lambda s: s.encode(errors="surrogatepass")),
        json_values.flatmap(encoded),
        broken_message(topic),
        broken_message(topic),
        broken_message(topic),
        huge_strings.map(lambda s: json.dumps(s).encode()),
        st.integers(1, 40_000).map(lambda depth: b"[" * depth + b"]" * depth),
        st.integers(4_000, 20_000).map(lambda digits: b"1" * digits),  # past int's digit limit
        padded_past_the_limit(topic),
    )


@st.composite
def padded_past_the_limit(draw: st.DrawFn, topic: str) -> bytes:
    """A valid message of the topic, padded past the contract's size: refused unread."""
    name = draw(st.sampled_from(sorted(set(topics.MESSAGES_ON[topic]) & set(VALID))))
    size = draw(st.integers(limits.MAX_MESSAGE_BYTES + 1, 1_000_000))
    return json.dumps({**VALID[name](), "padding": "p" * size}).encode()


@st.composite
def cases(draw: st.DrawFn) -> tuple[str, bytes, bytes | None]:
    topic = draw(st.sampled_from(sorted(CONSUMED_BY)))
    key = draw(st.none() | st.binary(max_size=24) | st.builds(lambda: fresh_iccid().encode()))
    return topic, draw(payloads(topic)), key


# --- the property -------------------------------------------------------------------------


@dataclass
class Totals:
    payloads: int = 0
    dead_lettered: int = 0
    answered: int = 0
    rightly_silent: int = 0
    crashes: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    by_topic: Counter[str] = field(default_factory=Counter)
    worth_a_look: list[str] = field(default_factory=list)  # retried in vain: a bug?


def account(totals: Totals, topic: str, body: bytes, outcome: Outcome) -> None:
    shown = f"{topic} <- {body[:200]!r}{'...' if len(body) > 200 else ''}"
    for msg in outcome.dead:
        record = msg.raw_message
        assert not isinstance(record, tuple)
        assert record.topic == dead_letter_topic(topic), f"wrong topic: {shown}"
    assert len(outcome.dead) <= 1, f"dead-lettered {len(outcome.dead)} times: {shown}"
    if outcome.dead:
        [msg] = outcome.dead
        headers = dict(msg.headers)
        looked_at = body  # a too_large one: only its prefix, and a card across its end
        if len(body) > limits.MAX_MESSAGE_BYTES:
            looked_at = body[: limits.DEAD_LETTER_PREFIX_BYTES + 64]
        kept = dead_letters.without_card_numbers(looked_at)  # no card number goes further
        assert ("dlq.redacted" in headers) == (kept != looked_at), shown
        if len(body) > limits.MAX_MESSAGE_BYTES:  # a bounded prefix, and how to find the rest
            assert headers["dlq.reason"] == "too_large", shown
            assert bytes(msg.body) == kept[: limits.DEAD_LETTER_PREFIX_BYTES], shown
            assert headers["dlq.source.sha256"] == hashlib.sha256(body).hexdigest()
        else:
            assert bytes(msg.body) == kept, f"other bytes dead-lettered: {shown}"
        assert headers["dlq.source.topic"] == topic
        assert headers["dlq.reason"] in REASONS, headers["dlq.reason"]
        assert not outcome.answers, f"answered and dead-lettered: {shown}"
        assert not outcome.usage_reports_recorded, f"recorded and dead-lettered: {shown}"
        totals.dead_lettered += 1
        totals.reasons[headers["dlq.reason"]] += 1
        totals.by_topic[f"{topic} dead-lettered"] += 1
        if headers["dlq.reason"] == "retries_exhausted" and len(totals.worth_a_look) < 5:
            totals.worth_a_look.append(f"{shown[:300]}: {headers['dlq.error'][:300]}")
    elif outcome.answers:
        totals.answered += 1
        totals.by_topic[f"{topic} answered"] += 1
    elif silence_is_fine(topic, body, outcome):
        totals.rightly_silent += 1
        totals.by_topic[f"{topic} valid, rightly unanswered"] += 1
    else:
        raise AssertionError(
            f"neither dead-lettered nor answered, nor a valid message left unanswered: {shown}"
        )


def silence_is_fine(topic: str, body: bytes, outcome: Outcome) -> bool:
    """Silence is right only for a valid message of a topic where it can be, and for a
    usage report only once provisioning has recorded it."""
    if topic not in SILENCE_IS_FINE_ON:
        return False
    message = valid_message(topic, body)
    if isinstance(message, UsageReported):
        return recorded(message, outcome)
    return message is not None


def valid_message(topic: str, body: bytes) -> Envelope | None:
    """The body read as its consumer reads it (JSON, then the topic's model); None if it
    is not a valid message of the topic."""
    try:
        message: Envelope = SILENCE_IS_FINE_ON[topic].validate_python(json.loads(body))
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or invalid (ValidationError)
        return None
    return message


def recorded(report: UsageReported, outcome: Outcome) -> bool:
    """Provisioning recorded the report, and nothing else: its row in usage_reports has the
    report's event_id (the carrier's report id, required) as report_id."""
    return outcome.usage_reports_recorded == {report.event_id}


# A budget that grows with the examples (make test-fuzz: 10,000 in about five minutes).
@pytest.mark.timeout(max(300, EXAMPLES // 10))
def test_every_consumer_accounts_for_every_malformed_payload(
    rig: Rig, capsys: pytest.CaptureFixture[str]
) -> None:
    totals = Totals()
    started = time.monotonic()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(case=cases())
    def throw(case: tuple[str, bytes, bytes | None]) -> None:
        topic, body, key = case
        totals.payloads += 1
        try:
            outcome = rig.throw(topic, body, key)
        except Exception:
            totals.crashes += 1
            raise
        account(totals, topic, body, outcome)

    # Every dead letter is logged with its error, whose traceback holds the payload:
    # kept by pytest's log capture, 10,000 of them would take gigabytes.
    logging.disable(logging.CRITICAL)
    try:
        throw()
    finally:
        logging.disable(logging.NOTSET)
    elapsed = time.monotonic() - started
    with capsys.disabled():
        print(
            f"\nfuzz: {totals.payloads} payloads in {elapsed:.1f}s "
            f"(FUZZ_EXAMPLES={EXAMPLES}): dead-lettered={totals.dead_lettered} "
            f"answered={totals.answered} rightly_silent={totals.rightly_silent} "
            f"crashes={totals.crashes} (through the batch consumers: {rig.in_batches})"
        )
        for what, count in sorted(totals.reasons.items()):
            print(f"fuzz:   {what}: {count}")
        for what, count in sorted(totals.by_topic.items()):
            print(f"fuzz:   {what}: {count}")
        for what in totals.worth_a_look:
            print(f"fuzz: retries exhausted: {what}")
    assert totals.crashes == 0
    assert totals.payloads == totals.dead_lettered + totals.answered + totals.rightly_silent
