import uuid
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from shared import events, topics
from shared.events import (
    ALL_MESSAGES,
    Envelope,
    Message,
    Money,
    PlaceOrder,
    UsageReported,
    order_id_for,
)
from shared.kafka import message_headers
from tests.factories import order_request, random_iccid

START = datetime(2026, 11, 1, 10, tzinfo=UTC)
ENVELOPE = ("type", "event_id", "occurred_at", "schema_version", "iccid")


def usage_report(**overrides: object) -> UsageReported:
    start = datetime(2026, 11, 1, 10, tzinfo=UTC)
    fields = {
        "event_id": uuid.uuid4(),
        "iccid": random_iccid(),
        "used_mb": 35,
        "period_start": start,
        "period_end": start,
    }
    return UsageReported.model_validate({**fields, **overrides})


def test_a_usage_report_without_the_carriers_report_id_is_refused() -> None:
    # A made-up id would count a redelivered report twice.
    with pytest.raises(ValidationError, match="event_id"):
        UsageReported.model_validate(
            {"iccid": random_iccid(), "used_mb": 1, "period_start": START, "period_end": START}
        )


def test_the_same_request_id_always_names_the_same_order() -> None:
    assert order_id_for("req-1") == order_id_for("req-1")
    assert order_id_for("req-1") != order_id_for("req-2")


def test_every_message_carries_the_common_envelope() -> None:
    for message in ALL_MESSAGES:
        assert issubclass(message, Envelope), message.__name__
        for name in ENVELOPE:
            assert name in message.model_fields, f"{message.__name__} lacks {name}"


def test_every_message_but_the_carriers_usage_report_is_about_an_order() -> None:
    about_orders = [m for m in ALL_MESSAGES if issubclass(m, Message)]
    assert set(ALL_MESSAGES) - set(about_orders) == {UsageReported}
    for message in about_orders:
        assert message.model_fields["order_id"].is_required(), message.__name__
    assert "order_id" not in UsageReported.model_fields


def test_a_usage_report_ignores_an_order_id_it_is_sent_and_never_grows_one() -> None:
    report = usage_report(order_id=str(uuid.uuid4()))
    assert "order_id" not in report.model_dump()


def test_the_headers_name_the_order_only_of_a_message_about_one() -> None:
    place = PlaceOrder.model_validate(order_request())
    report = usage_report()
    assert message_headers(place) == {
        "type": "PlaceOrder",
        "event_id": str(place.event_id),
        "order_id": str(place.order_id),
    }
    assert message_headers(report) == {"type": "UsageReported", "event_id": str(report.event_id)}


def test_a_usage_report_is_whole_megabytes_over_a_period_in_order() -> None:
    with pytest.raises(ValidationError):
        usage_report(used_mb=-1)
    with pytest.raises(ValidationError):
        usage_report(used_mb=1.5)
    with pytest.raises(ValidationError):
        usage_report(period_end=datetime(2026, 10, 31, tzinfo=UTC))


def test_message_type_names_match_their_classes() -> None:
    for message in ALL_MESSAGES:
        assert message.model_fields["type"].default == message.__name__


def test_money_is_integer_minor_units_never_float() -> None:
    assert Money(amount_minor=1500, currency="EUR").amount_minor == 1500
    with pytest.raises(ValidationError):
        Money(amount_minor=15.5, currency="EUR")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        Money(amount_minor=1500, currency="euro")


def test_messages_are_frozen() -> None:
    command = PlaceOrder.model_validate(order_request())
    with pytest.raises(ValidationError):
        command.request_id = "other"  # type: ignore[misc]


def test_topic_names_follow_the_convention() -> None:
    for name in topics.SAGA_TOPICS:
        owner, kind, version = name.split(".")
        assert owner in {"orders", "payments", "provisioning"}
        assert kind in {"commands", "events"}
        assert version == "v1"
    assert topics.LINE_TOPICS == ("provisioning.line-events.v1", "carrier.usage.v1")


def test_every_message_is_on_exactly_one_topic_and_every_topic_carries_some() -> None:
    carried = [name for topic in topics.MESSAGE_TOPICS for name in topics.MESSAGES_ON[topic]]
    assert sorted(carried) == sorted(m.__name__ for m in ALL_MESSAGES)
    assert set(topics.MESSAGES_ON) == set(topics.MESSAGE_TOPICS)
    for name in carried:
        assert getattr(events, name) in ALL_MESSAGES
