"""The DeadLetters middleware (shared/dead_letters.py) in memory: FastStream's
TestKafkaBroker hands consumers a real aiokafka ConsumerRecord (topic, partition
and offset included), so the middleware runs here exactly as on a broker."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka.errors import KafkaConnectionError
from aiokafka.structs import ConsumerRecord
from faststream.kafka import KafkaBroker, KafkaMessage, KafkaRouter, TestKafkaBroker
from prometheus_client import REGISTRY
from pydantic import ValidationError
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from typer.testing import CliRunner

from services.cli.main import app as topup
from services.operator.dead_letter_store import DeadLetter, dlt_of
from services.orders import handlers as orders_handlers
from services.orders.db import metadata as orders_metadata
from services.orders.settings import OrdersSettings
from shared import dead_letters, limits, progress, topics
from shared.dead_letters import BusinessRuleViolation, MalformedMessage, classify
from shared.events import Money, PaymentCaptured, PaymentsEvent, order_id_for
from shared.kafka import SAGA_ACK_POLICY, build_broker, saga_subscriber, tolerant_headers
from shared.progress import PROGRESS
from shared.settings import ServiceSettings
from shared.topics import dead_letter_topic
from tests.factories import order_request
from tests.unit.harness import in_memory_service, running

TOPIC = "unit.events.v1"
DLT = dead_letter_topic(TOPIC)
KEY = b"8944500102198304826"


def captured(**changes: Any) -> dict[str, Any]:
    euros = Money(amount_minor=1500, currency="EUR")
    event = PaymentCaptured(
        order_id=uuid.uuid4(), iccid=KEY.decode(), amount=euros, fee=euros,
        provider_reference="sim_ch_1",
    )  # fmt: skip
    return {**event.model_dump(mode="json"), **changes}


def validation_error(body: dict[str, Any]) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        PaymentCaptured.model_validate(body)
    return caught.value


def json_error() -> json.JSONDecodeError:
    with pytest.raises(json.JSONDecodeError) as caught:
        json.loads("{not json")
    return caught.value


def out_of_int32_range() -> DBAPIError:
    """As SQLAlchemy wraps asyncpg refusing 3_000_000_000 for an integer column."""
    refused = asyncpg.exceptions.DataError(
        "invalid input for query argument $1 (value out of int32 range)"
    )
    adapted = Exception(str(refused))
    adapted.__cause__ = refused
    return DBAPIError("INSERT INTO usage_reports ...", {}, adapted)


def unicode_error() -> UnicodeDecodeError:
    with pytest.raises(UnicodeDecodeError) as caught:
        b"\xff\xfe\xfa".decode("utf-8")
    return caught.value


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        pytest.param(json_error(), "undecodable", id="json-decode"),
        pytest.param(unicode_error(), "undecodable", id="unicode-decode"),
        pytest.param(validation_error({"type": "PaymentCaptured"}), "schema_invalid", id="schema"),
        pytest.param(
            validation_error(captured(schema_version=99)), "unknown_schema_version", id="version"
        ),
        pytest.param(MalformedMessage("no usable request_id"), "schema_invalid", id="malformed"),
        pytest.param(BusinessRuleViolation("unknown order"), "business_rule", id="business-rule"),
        pytest.param(OperationalError("SELECT 1", {}, Exception("db gone")), None, id="database"),
        pytest.param(out_of_int32_range(), "schema_invalid", id="value-the-database-refuses"),
        pytest.param(
            DataError("INSERT", {}, Exception("22003")), "schema_invalid", id="sqlstate-22"
        ),
        pytest.param(KafkaConnectionError("broker gone"), None, id="broker"),
        pytest.param(TimeoutError(), None, id="timeout"),
    ],
)
def test_classify_names_the_reason_or_none_when_a_retry_may_help(
    error: BaseException, reason: str | None
) -> None:
    assert classify(error) == reason


def test_an_unknown_version_wins_over_other_schema_errors() -> None:
    error = validation_error({"type": "PaymentCaptured", "schema_version": 2})
    assert classify(error) == "unknown_schema_version"


async def raw_body(msg: KafkaMessage) -> bytes:
    """A decoder that leaves the bytes alone, so a collector can take anything."""
    return bytes(msg.body)


@dataclass
class Rig:
    broker: KafkaBroker
    dead: list[KafkaMessage]
    handled: list[dict[str, Any]]
    calls: list[object] = field(default_factory=list)
    fail_with: Callable[[int], BaseException | None] = lambda _attempt: None

    async def send(self, body: bytes) -> None:
        await self.broker.publish(body, topic=TOPIC, key=KEY, headers={"event_id": "e-1"})


@pytest.fixture
async def rig(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Rig]:
    monkeypatch.setattr(dead_letters, "RETRY_DELAYS_S", (0.001, 0.001, 0.001))
    monkeypatch.setattr(dead_letters, "WRITE_DELAYS_S", (0.001, 0.001))
    broker = build_broker(ServiceSettings(service_name="unit"))
    router = KafkaRouter()
    rig = Rig(broker, dead=[], handled=[])

    @saga_subscriber(router, "unit", TOPIC)
    async def consume(event: PaymentsEvent) -> None:
        rig.calls.append(event)
        if (error := rig.fail_with(len(rig.calls))) is not None:
            raise error
        rig.handled.append(event.model_dump(mode="json"))

    @router.subscriber(DLT, group_id="unit-dlt", decoder=raw_body, ack_policy=SAGA_ACK_POLICY)
    async def collect(msg: KafkaMessage) -> None:
        rig.dead.append(msg)

    broker.include_router(router)
    async with TestKafkaBroker(broker):
        yield rig


def record_of(msg: KafkaMessage) -> Any:
    """The aiokafka ConsumerRecord behind a (non-batch) message."""
    assert not isinstance(msg.raw_message, tuple)
    return msg.raw_message


def only_dead_letter(rig: Rig) -> tuple[bytes, dict[str, str]]:
    assert len(rig.dead) == 1, [m.headers for m in rig.dead]
    [msg] = rig.dead
    return bytes(msg.body), dict(msg.headers)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param(b"not json \xff\x00", "undecodable", id="not-json"),
        pytest.param(b"[" * 30_000 + b"]" * 30_000, "undecodable", id="nested-too-deep"),
        pytest.param(b'{"type": "PaymentCaptured"}', "schema_invalid", id="missing-fields"),
        pytest.param(b'["a", "list"]', "schema_invalid", id="not-an-object"),
        pytest.param(
            json.dumps(captured(type="OrderPlaced")).encode(), "schema_invalid", id="wrong-type"
        ),
        pytest.param(
            json.dumps(captured(schema_version=99)).encode(), "unknown_schema_version", id="v99"
        ),
    ],
)
async def test_what_cannot_be_parsed_is_dead_lettered_at_once_with_its_bytes_and_origin(
    rig: Rig, body: bytes, reason: str
) -> None:
    await rig.send(body)
    value, headers = only_dead_letter(rig)
    assert value == body
    assert record_of(rig.dead[0]).key == KEY
    assert headers["dlq.reason"] == reason
    assert headers["dlq.source.topic"] == TOPIC
    assert (headers["dlq.source.partition"], headers["dlq.source.offset"]) == ("0", "0")
    assert headers["dlq.consumer"] == "unit"
    assert headers["dlq.error"]
    assert datetime.fromisoformat(headers["dlq.failed_at"]).tzinfo is not None
    assert headers["event_id"] == "e-1", "the original headers travel along"
    assert rig.calls == [], "the handler never saw it"
    assert rig.handled == []


async def test_a_broken_business_rule_is_dead_lettered_without_a_retry(rig: Rig) -> None:
    rig.fail_with = lambda _attempt: BusinessRuleViolation("PaymentCaptured for unknown order")
    body = json.dumps(captured()).encode()
    await rig.send(body)
    value, headers = only_dead_letter(rig)
    assert value == body
    assert headers["dlq.reason"] == "business_rule"
    assert headers["dlq.error"] == "BusinessRuleViolation: PaymentCaptured for unknown order"
    assert len(rig.calls) == 1


async def test_a_transient_failure_is_retried_and_what_then_succeeds_is_not_dead_lettered(
    rig: Rig,
) -> None:
    def twice(attempt: int) -> BaseException | None:
        return (
            OperationalError("INSERT", {}, Exception("database restarting"))
            if attempt <= 2
            else None
        )

    rig.fail_with = twice
    body = captured()
    await rig.send(json.dumps(body).encode())
    assert len(rig.calls) == 3
    assert rig.handled == [body]
    assert rig.dead == []


async def test_a_failure_that_persists_is_dead_lettered_once_as_retries_exhausted(
    rig: Rig,
) -> None:
    rig.fail_with = lambda _attempt: KafkaConnectionError("broker unreachable")
    body = json.dumps(captured()).encode()
    await rig.send(body)
    value, headers = only_dead_letter(rig)
    assert value == body
    assert headers["dlq.reason"] == "retries_exhausted"
    assert headers["dlq.error"].startswith("KafkaConnectionError")
    assert len(rig.calls) == len(dead_letters.RETRY_DELAYS_S) + 1
    assert rig.handled == []


async def test_a_database_out_of_reach_never_dead_letters_a_message_which_comes_again(
    rig: Rig,
) -> None:
    restarting = asyncpg.exceptions.CannotConnectNowError("the database system is starting up")
    outage = OperationalError("INSERT", {}, restarting)
    rig.fail_with = lambda _attempt: outage
    body = json.dumps(captured()).encode()
    with pytest.raises(OperationalError):  # to the ack policy: delivered again
        await rig.broker.publish(body, topic=TOPIC, key=KEY)
    assert rig.dead == []
    assert len(rig.calls) == len(dead_letters.RETRY_DELAYS_S) + 1

    rig.fail_with = lambda _attempt: None  # the database is back
    await rig.send(body)
    assert rig.handled == [json.loads(body)]
    assert rig.dead == []


async def test_when_the_dead_letter_topic_cannot_be_written_it_is_tried_again_then_the_error_reaches_the_ack_policy(  # noqa: E501
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish = rig.broker.publish
    tries: list[str] = []

    async def dead_letter_topic_down(*args: Any, **kwargs: Any) -> Any:
        if str(kwargs.get("topic", "")).endswith(".dlt"):
            tries.append(kwargs["topic"])
            raise KafkaConnectionError("dlt unavailable")
        return await publish(*args, **kwargs)

    monkeypatch.setattr(rig.broker, "publish", dead_letter_topic_down)
    monkeypatch.setattr(PROGRESS, "stuck_after_s", 0.0)
    written = dead_letters_counted("business_rule")
    rig.fail_with = lambda _attempt: BusinessRuleViolation("unknown order")
    with pytest.raises(KafkaConnectionError):
        await publish(json.dumps(captured()).encode(), topic=TOPIC, key=KEY)
    assert rig.dead == []
    assert len(tries) == len(dead_letters.WRITE_DELAYS_S) + 1, "backed off, not one try"
    assert dead_letters_counted("business_rule") == written, "not counted: never written"
    [stuck] = [s for s in PROGRESS.stuck() if s["topic"] == TOPIC]
    assert (stuck["group"], stuck["partition"], stuck["offset"]) == (f"unit:{TOPIC}", 0, 0)
    assert any(TOPIC in problem for problem in PROGRESS.problems())

    monkeypatch.setattr(rig.broker, "publish", publish)  # the dead-letter topic is back
    await rig.send(json.dumps(captured()).encode())
    assert not [s for s in PROGRESS.stuck() if s["topic"] == TOPIC], "moving again"


def dead_letters_counted(reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "topup_dead_letters_total", {"topic": TOPIC, "reason": reason}
    )
    return value or 0.0


async def test_a_message_larger_than_the_contract_allows_is_dead_lettered_as_a_bounded_prefix(
    rig: Rig,
) -> None:
    body = json.dumps({**captured(), "padding": "x" * 1_000_000}).encode()  # ~1 MiB
    await rig.send(body)
    value, headers = only_dead_letter(rig)
    assert value == body[: limits.DEAD_LETTER_PREFIX_BYTES]
    assert headers["dlq.reason"] == "too_large"
    assert headers["dlq.truncated"] == "value"
    assert headers["dlq.source.size"] == str(len(body))
    assert headers["dlq.source.sha256"] == hashlib.sha256(body).hexdigest()
    assert (headers["dlq.source.topic"], headers["dlq.source.offset"]) == (TOPIC, "0")
    assert rig.calls == [], "never parsed"

    after = captured()
    await rig.send(json.dumps(after).encode())
    assert rig.handled == [after], "the partition moved on"


async def test_a_dead_letter_copies_the_original_headers_only_up_to_a_budget(rig: Rig) -> None:
    hostile = [(f"h{i}", "v" * 5000) for i in range(100)] + [("dlq.reason", "forged")]
    await rig.broker.publish(b"not json", topic=TOPIC, key=KEY, headers=dict(hostile))
    _value, headers = only_dead_letter(rig)
    copied = {k: v for k, v in headers.items() if not k.startswith("dlq.")}
    assert sum(len(k) + len(v) for k, v in copied.items()) <= limits.DEAD_LETTER_HEADERS_BYTES
    assert all(len(v) <= limits.DEAD_LETTER_HEADER_VALUE_BYTES for v in copied.values())
    assert headers["dlq.truncated"] == "headers"
    assert headers["dlq.reason"] == "undecodable", "our own headers are never the original's"


async def test_a_dead_lettered_event_replayed_once_its_order_exists_is_processed(
    tmp_path: Path,
) -> None:
    settings = OrdersSettings(payment_timeout_s=60)
    async with in_memory_service(
        "orders", orders_handlers.router, orders_metadata, tmp_path, settings
    ) as service:
        top_ups = service.watch(topics.PROVISIONING_COMMANDS)
        dead: list[KafkaMessage] = []

        @service.broker.subscriber(
            dead_letter_topic(topics.PAYMENTS_EVENTS), group_id="unit-dlt", decoder=raw_body
        )
        async def collect(msg: KafkaMessage) -> None:
            dead.append(msg)

        request = order_request()
        euros = Money(amount_minor=1500, currency="EUR")
        early = PaymentCaptured(
            order_id=order_id_for(request["request_id"]), iccid=request["iccid"], amount=euros,
            fee=euros, provider_reference="sim_ch_early",
        )  # fmt: skip
        async with running(service.broker):
            await service.send(topics.PAYMENTS_EVENTS, early)  # before its order: dead-lettered
            assert [dict(m.headers)["dlq.reason"] for m in dead] == ["business_rule"]
            await service.send(topics.ORDERS_COMMANDS, request)
            await service.broker.publish(
                bytes(dead[0].body),
                topic=topics.PAYMENTS_EVENTS,
                key=record_of(dead[0]).key,
                headers={"dlq.replayed_from": f"{dead_letter_topic(topics.PAYMENTS_EVENTS)}:0:0"},
            )
            await service.relay()
    assert len(top_ups) == 1


def test_a_replay_carries_the_original_headers_and_where_it_came_from() -> None:
    letter = DeadLetter(
        topic="payments.events.v1.dlt", partition=2, offset=17, timestamp_ms=0, key=KEY,
        value=b"{}",
        raw_headers=(("event_id", b"e-1"), ("dlq.reason", b"business_rule"),
                     ("dlq.source.topic", b"payments.events.v1")),
    )  # fmt: skip
    assert letter.source == "payments.events.v1"
    assert letter.replay_headers() == [
        ("event_id", b"e-1"),
        ("dlq.replayed_from", b"payments.events.v1.dlt:2:17"),
    ]
    assert dlt_of("payments.events.v1") == dlt_of("payments.events.v1.dlt")


@pytest.mark.parametrize(
    "args",
    [
        pytest.param([], id="neither-offset-nor-all"),
        pytest.param(["--all", "--topic", "t", "--offset", "3"], id="both"),
        pytest.param(["--offset", "3"], id="offset-without-topic"),
        pytest.param(["--topic", "t", "--offset", "3", "--reason", "x"], id="reason-without-all"),
        pytest.param(["--id", "t.dlt:0:3", "--all"], id="id-and-all"),
        pytest.param(["--id", "t.dlt:0:3", "--reason", "x"], id="reason-with-id"),
    ],
)
def test_dlq_replay_refuses_an_ambiguous_request_before_reaching_the_operator(
    args: list[str],
) -> None:
    result = CliRunner().invoke(topup, ["dlq", "replay", *args])
    assert result.exit_code == 2, result.output


def test_a_partition_held_is_stuck_until_it_moves_or_is_not_seen_again_for_long(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [1000.0]
    monkeypatch.setattr("shared.progress.time.monotonic", lambda: clock[0])
    seen = progress.Progress(stuck_after_s=30)
    seen.started("g", "t", 0, offset=7)
    clock[0] += 31
    assert [s["offset"] for s in seen.stuck()] == [7], "a handler on it for 31 s"
    seen.given_back("g", "t", 0)
    seen.started("g", "t", 0, offset=7)  # delivered again: still stuck since the first time
    clock[0] += 1
    assert seen.stuck()[0]["for_s"] == 32.0
    seen.given_back("g", "t", 0)
    clock[0] += progress.GONE_AFTER_S
    assert seen.stuck() == [], "not seen again: another instance has the partition"
    seen.started("g", "t", 1, offset=3)
    seen.finished("g", "t", 1)
    assert seen.in_hand.keys() == {("g", "t", 0)}


async def test_a_header_that_is_not_utf8_reaches_the_handler_decoded_with_replacements() -> None:
    record = ConsumerRecord(
        topic=TOPIC, partition=0, offset=5, timestamp=0, timestamp_type=0, key=KEY,
        value=b"{}", checksum=None, serialized_key_size=0, serialized_value_size=2,
        headers=[("type", b"PaymentCaptured"), ("x-bad", b"\xff\x00\xfe")],
    )  # fmt: skip
    seen: list[Any] = []

    async def original(parsed: Any) -> str:
        seen.append([(name, value.decode()) for name, value in parsed.headers])
        return "parsed"

    assert await tolerant_headers(record, original) == "parsed"
    assert seen == [[("type", "PaymentCaptured"), ("x-bad", "\ufffd\x00\ufffd")]]


async def test_a_card_number_is_masked_in_a_dead_letter_and_said_so(rig: Rig) -> None:
    await rig.send(b"not json 5555 5555 5555 4444 and 4111.1111.1111.1111")
    value, headers = only_dead_letter(rig)
    assert value == b"not json ************4444 and ************1111"
    assert headers["dlq.redacted"] == "card_number"
    assert "5555 5555" not in headers["dlq.error"]
