"""docs/asyncapi.yaml is generated from the code (shared/asyncapi.py) and says what the
code does: every topic, every message with its schema, the key, the headers, who sends
and who receives."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from faststream.kafka import KafkaMessage, KafkaRouter, TestKafkaBroker

from services.operator.audit import AUDIT_TOPIC, AuditEntry
from services.operator.dead_letter_store import DeadLetter
from shared import asyncapi, events, topics
from shared.dead_letters import BusinessRuleViolation
from shared.events import Message, Money, PaymentCaptured, UsageReported
from shared.kafka import build_broker, message_headers, saga_subscriber
from shared.settings import ServiceSettings


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return asyncapi.build_document()


def test_the_document_in_docs_is_what_the_code_generates() -> None:
    written = asyncapi.DOCUMENT.read_text()
    generated = asyncapi.render(asyncapi.build_document())
    assert written == generated, asyncapi.stale_summary(written, generated)


def test_generating_twice_gives_the_same_text() -> None:
    assert asyncapi.render(asyncapi.build_document()) == asyncapi.render(asyncapi.build_document())


def test_a_stale_document_is_summarised_with_its_diff_and_the_command_that_fixes_it() -> None:
    current = asyncapi.render(asyncapi.build_document())
    stale = current.replace("payments.events.v1", "payments.events.v0", 1)
    summary = asyncapi.stale_summary(stale, current)
    assert "docs/asyncapi.yaml is stale: 2 lines differ from the code." in summary
    assert "-" in summary
    assert "payments.events.v0" in summary
    assert "make contract" in summary
    assert asyncapi.stale_summary(current, current) == ""


def test_check_exits_non_zero_only_when_the_file_is_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "asyncapi.yaml"
    monkeypatch.setattr(asyncapi, "DOCUMENT", target)
    target.write_text("asyncapi: 3.0.0\n")
    assert asyncapi.main(["--check"]) == 1
    assert "make contract" in capsys.readouterr().out
    assert target.read_text() == "asyncapi: 3.0.0\n", "--check never writes"
    target.write_text(asyncapi.render(asyncapi.build_document()))
    assert asyncapi.main(["--check"]) == 0


def test_every_topic_is_a_channel_at_its_address(document: dict[str, Any]) -> None:
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert addresses == {*topics.ALL_TOPICS, AUDIT_TOPIC}


def test_every_channel_carries_the_messages_the_code_puts_on_its_topic(
    document: dict[str, Any],
) -> None:
    for topic, names in topics.MESSAGES_ON.items():
        channel = document["channels"][asyncapi.channel_id(topic)]
        assert list(channel["messages"]) == list(names)
        for name in names:
            message = document["components"]["messages"][name]
            assert message["payload"] == {"$ref": f"#/components/schemas/{name}"}
            schema = document["components"]["schemas"][name]
            assert set(schema["properties"]) == set(getattr(events, name).model_fields)


def test_every_message_of_the_saga_is_keyed_by_iccid_and_documents_its_headers(
    document: dict[str, Any],
) -> None:
    for name, message in document["components"]["messages"].items():
        if name != AuditEntry.__name__:
            assert "ICCID" in message["bindings"]["kafka"]["key"]["description"], name
            assert message["headers"]["$ref"].startswith("#/components/schemas/"), name


def test_the_audit_topic_documents_the_record_the_operator_and_provisioning_write(
    document: dict[str, Any],
) -> None:
    channel = document["channels"][asyncapi.channel_id(AUDIT_TOPIC)]
    assert list(channel["messages"]) == ["AuditEntry"]
    schema = document["components"]["schemas"]["AuditEntry"]
    assert set(schema["required"]) == {field.name for field in fields(AuditEntry)}
    senders = [op["tags"] for op in operations_on(document, AUDIT_TOPIC, "send")]
    assert sorted(senders, key=str) == [[{"name": "operator"}], [{"name": "provisioning"}]]
    readers = [op["tags"] for op in operations_on(document, AUDIT_TOPIC, "receive")]
    assert readers == [[{"name": "operator"}]]


def test_message_summaries_come_from_the_docstrings(document: dict[str, Any]) -> None:
    placed = document["components"]["messages"]["OrderPlaced"]
    assert placed["summary"] == "Accepted: the price is fixed and the payment is being taken."
    place = document["components"]["messages"]["PlaceOrder"]
    assert place["summary"] == "A request to top up one line with one package."
    assert "derived from `request_id`" in place["description"]
    charge = document["components"]["schemas"]["ChargePayment"]
    assert charge["properties"]["idempotency_key"]["description"] == "f'{order_id}:charge'"


def operations_on(document: dict[str, Any], topic: str, action: str) -> list[dict[str, Any]]:
    channel = {"$ref": f"#/channels/{asyncapi.channel_id(topic)}"}
    return [
        operation
        for operation in document["operations"].values()
        if operation["channel"] == channel and operation["action"] == action
    ]


def test_every_subscriber_in_the_services_has_a_receive_operation_with_its_group(
    document: dict[str, Any],
) -> None:
    for topic, subscribers in asyncapi.subscriptions().items():
        groups = {
            operation["bindings"]["kafka"]["groupId"]["enum"][0]
            for operation in operations_on(document, topic, "receive")
            if "bindings" in operation
        }
        assert groups == {group for _service, group, _policy in subscribers}
    assert "orders:payments.events.v1" in {
        group for subs in asyncapi.subscriptions().values() for _s, group, _p in subs
    }


def apps(document: dict[str, Any], topic: str, action: str) -> set[str]:
    return {op["tags"][0]["name"] for op in operations_on(document, topic, action)}


def test_every_topic_has_its_senders_and_every_dead_letter_topic_its_consumers(
    document: dict[str, Any],
) -> None:
    for topic in topics.MESSAGE_TOPICS:
        senders = apps(document, topic, "send")
        assert senders == {*asyncapi.senders_of(topic), "operator"}, "the senders and replays"
    dead_senders = operations_on(document, topics.dead_letter_topic(topics.PAYMENTS_EVENTS), "send")
    assert [operation["tags"] for operation in dead_senders] == [[{"name": "orders"}]]


def test_orders_are_placed_by_the_internal_systems_and_by_provisionings_auto_renewal(
    document: dict[str, Any],
) -> None:
    assert apps(document, topics.ORDERS_COMMANDS, "send") == {
        "internal-systems", "provisioning", "operator"
    }  # fmt: skip
    (renewals,) = [
        op
        for op in operations_on(document, topics.ORDERS_COMMANDS, "send")
        if op["tags"] == [{"name": "provisioning"}]
    ]
    assert "autorenew:" in renewals["summary"]
    assert "provisioning" in apps(document, topics.ORDERS_EVENTS, "receive")


def test_the_carrier_reports_usage_to_provisioning(document: dict[str, Any]) -> None:
    assert apps(document, topics.CARRIER_USAGE, "send") == {"carrier", "operator"}
    assert apps(document, topics.CARRIER_USAGE, "receive") == {"provisioning"}
    assert "provisioning" in apps(document, topics.dead_letter_topic(topics.CARRIER_USAGE), "send")


def test_line_events_are_sent_by_provisioning_for_the_internal_systems(
    document: dict[str, Any],
) -> None:
    topic = topics.PROVISIONING_LINE_EVENTS
    assert apps(document, topic, "send") == {"provisioning", "operator"}
    assert apps(document, topic, "receive") == {"internal-systems"}
    channel = document["channels"][asyncapi.channel_id(topic)]
    assert list(channel["messages"]) == ["LineAlertRaised", "DataForfeited", "AutoRenewalPaused"]
    assert "package cycle" in channel["description"]


def test_a_topic_nobody_can_say_who_sends_is_refused() -> None:
    with pytest.raises(asyncapi.ContractError, match="who sends"):
        asyncapi.senders_of("billing.invoices.v1")


def test_the_header_a_replay_adds_is_documented(document: dict[str, Any]) -> None:
    letter = DeadLetter(
        topic="payments.events.v1.dlt", partition=0, offset=3, timestamp_ms=0, key=b"89",
        value=b"{}", raw_headers=(("type", b"PaymentCaptured"), ("dlq.reason", b"business_rule")),
    )  # fmt: skip
    replayed = {name for name, _value in letter.replay_headers()}
    documented = document["components"]["schemas"]["MessageHeaders"]["properties"]
    assert replayed <= set(documented)


def test_the_documented_headers_are_the_ones_every_publish_writes(
    document: dict[str, Any],
) -> None:
    euros = Money(amount_minor=1500, currency="EUR")
    captured = PaymentCaptured(
        order_id=uuid.uuid4(), iccid="8944500102198304826", amount=euros, fee=euros,
        provider_reference="sim_ch_1",
    )  # fmt: skip
    written = list(message_headers(captured))
    documented = document["components"]["schemas"]["MessageHeaders"]
    assert documented["required"] == [n for n in written if n not in asyncapi.OPTIONAL_HEADERS]
    assert set(written) <= set(documented["properties"])


def test_a_usage_report_documents_its_headers_without_an_order_id(
    document: dict[str, Any],
) -> None:
    at = datetime(2026, 11, 1, tzinfo=UTC)
    report = UsageReported(
        event_id=uuid.uuid4(),
        iccid="8944500102198304826",
        used_mb=35,
        period_start=at,
        period_end=at,
    )
    written = list(message_headers(report))
    message = document["components"]["messages"]["UsageReported"]
    assert message["headers"] == {"$ref": "#/components/schemas/EnvelopeHeaders"}
    assert "correlationId" not in message, "a usage report correlates with no order"
    documented = document["components"]["schemas"]["EnvelopeHeaders"]
    assert documented["required"] == written == ["type", "event_id"]
    assert "order_id" not in documented["properties"]
    snapshot = asyncapi.snapshots()[topics.CARRIER_USAGE]["headers"]
    assert snapshot["required"] == ["type", "event_id"]


def test_every_message_about_an_order_names_it_in_its_headers_and_correlation_id(
    document: dict[str, Any],
) -> None:
    for topic in topics.MESSAGE_TOPICS:
        for model in asyncapi.models_on(topic):
            message = document["components"]["messages"][model.__name__]
            if model in asyncapi.FROM_OUTSIDE:  # described, none required of the publisher
                assert message["headers"]["$ref"].endswith("/RequestHeaders"), model.__name__
                assert message["correlationId"]["$ref"].endswith("/orderId"), model.__name__
            elif issubclass(model, Message):
                assert message["headers"]["$ref"].endswith("/MessageHeaders"), model.__name__
                assert message["correlationId"]["$ref"].endswith("/orderId"), model.__name__
            else:
                assert message["headers"]["$ref"].endswith("/EnvelopeHeaders"), model.__name__


def test_a_publisher_need_send_no_header_and_may_leave_order_id_out(
    document: dict[str, Any],
) -> None:
    schemas = document["components"]["schemas"]
    assert schemas["RequestHeaders"]["required"] == []
    assert set(schemas["RequestHeaders"]["properties"]) >= {"type", "event_id", "order_id"}
    assert "order_id" not in schemas["PlaceOrder"]["required"]
    assert "request_id" in schemas["PlaceOrder"]["required"]


def test_a_topic_requires_only_the_headers_all_its_messages_write() -> None:
    mixed = asyncapi.headers_schema([PaymentCaptured, UsageReported])
    assert mixed["required"] == ["type", "event_id"]
    assert "order_id" in mixed["properties"]
    assert asyncapi.headers_schema([PaymentCaptured])["required"] == [
        "type", "event_id", "order_id"
    ]  # fmt: skip


async def raw_body(msg: KafkaMessage) -> bytes:
    return bytes(msg.body)


@pytest.fixture
async def dead_letter_headers() -> AsyncIterator[dict[str, str]]:
    """The headers the DeadLetters middleware writes, on FastStream's in-memory broker."""
    topic = f"contract-{uuid.uuid4().hex[:8]}.events.v1"
    broker = build_broker(ServiceSettings(service_name="contract"))
    router = KafkaRouter()
    dead: list[KafkaMessage] = []

    @saga_subscriber(router, "contract", topic)
    async def refuse(body: dict[str, Any]) -> None:
        raise BusinessRuleViolation(f"no order for {body}")

    @router.subscriber(topics.dead_letter_topic(topic), group_id="contract", decoder=raw_body)
    async def collect(msg: KafkaMessage) -> None:
        dead.append(msg)

    broker.include_router(router)
    async with TestKafkaBroker(broker):
        await broker.publish({"type": "Anything"}, topic=topic, key=b"89", headers={"type": "X"})
        assert len(dead) == 1
        yield dict(dead[0].headers)


def test_the_dead_letter_headers_documented_are_the_ones_the_middleware_writes(
    document: dict[str, Any], dead_letter_headers: dict[str, str]
) -> None:
    documented = document["components"]["schemas"]["DeadLetterHeaders"]
    written = {name for name in dead_letter_headers if name.startswith("dlq.")}
    assert set(documented["required"]) <= written
    assert set(dead_letter_headers) <= set(documented["properties"])
    always = {"dlq.source.size", "dlq.source.sha256"}  # optional: older dead letters lack them
    assert always <= written - set(documented["required"])


def test_the_document_names_the_ordering_and_idempotency_guarantees(
    document: dict[str, Any],
) -> None:
    description = document["info"]["description"]
    assert "keyed by the line's ICCID" in description
    assert "`event_id`" in description
    words = " ".join(description.split())
    assert "all but the carrier's `UsageReported`) also carries `order_id`" in words
    assert str(events.ORDER_NAMESPACE) in description
    assert document["info"]["version"].startswith("1.0.0+")


def test_the_yaml_has_no_anchors_so_each_part_reads_on_its_own() -> None:
    text = asyncapi.render(asyncapi.build_document())
    assert "&id" not in text
    assert yaml.safe_load(text)["asyncapi"] == "3.0.0"
