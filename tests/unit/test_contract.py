import pytest
from pydantic import ValidationError

from shared import topics
from shared.events import ALL_MESSAGES, Money, PlaceOrder, order_id_for
from tests.factories import order_request


def test_the_same_request_id_always_names_the_same_order() -> None:
    assert order_id_for("req-1") == order_id_for("req-1")
    assert order_id_for("req-1") != order_id_for("req-2")


def test_every_message_carries_the_common_envelope() -> None:
    for message in ALL_MESSAGES:
        fields = message.model_fields
        for name in ("event_id", "occurred_at", "schema_version", "order_id", "iccid", "type"):
            assert name in fields, f"{message.__name__} lacks {name}"


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
