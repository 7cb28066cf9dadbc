"""The additive-only rule (shared/schema_compatibility.py), one kind of change at a time,
on the JSON schemas pydantic writes for an old and a new version of a message."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from shared.schema_compatibility import Change, breaking, compare_schemas, compare_snapshots


class Money(BaseModel):
    amount_minor: int
    currency: str


class MoneyWithoutCurrency(BaseModel):
    amount_minor: int


# The message as it was: the baseline every test changes one way.
BEFORE: dict[str, Any] = {
    "type": (Literal["Msg"], "Msg"),
    "request_id": (str, Field(min_length=1, max_length=200)),
    "reason": (Literal["declined", "expired"], ...),
    "data_mb": (int | None, Field(ge=0)),
    "bonus_mb": (int, 0),
    "amount": (Money, ...),
    "note": (str | None, None),
}
REMOVED = object()


def message(fields: dict[str, Any], **options: Any) -> type[BaseModel]:
    kept = {name: field for name, field in fields.items() if field is not REMOVED}
    model: type[BaseModel] = create_model("Msg", **options, **kept)
    return model


def changes_to(config: ConfigDict | None = None, **fields: Any) -> list[tuple[str, str, bool]]:
    """The changes from BEFORE to BEFORE with `fields` replaced, added or REMOVED."""
    old = message(BEFORE).model_json_schema()
    new = message({**BEFORE, **fields}, __config__=config).model_json_schema()
    return [(c.kind, c.path, c.breaking) for c in compare_schemas(old, new, "Msg")]


# --- breaking ----------------------------------------------------------------------------


def test_a_removed_field_is_breaking() -> None:
    assert changes_to(note=REMOVED) == [("removed field", "Msg.note", True)]


def test_a_renamed_field_is_breaking_and_named_as_a_rename() -> None:
    old = message(BEFORE).model_json_schema()
    new = message({**BEFORE, "bonus_mb": REMOVED, "extra_mb": (int, 0)}).model_json_schema()
    [rename] = compare_schemas(old, new, "Msg")
    assert (rename.kind, rename.path, rename.breaking) == ("renamed field", "Msg.bonus_mb", True)
    assert rename.detail == "-> extra_mb"


def test_a_changed_type_is_breaking() -> None:
    assert changes_to(request_id=(int, ...)) == [("changed type", "Msg.request_id", True)]


def test_a_field_that_no_longer_accepts_null_is_breaking() -> None:
    assert changes_to(data_mb=(int, Field(ge=0))) == [("changed type", "Msg.data_mb", True)]


def test_a_new_required_field_is_breaking() -> None:
    assert changes_to(provider_reference=(str, ...)) == [
        ("new required field", "Msg.provider_reference", True)
    ]


def test_a_field_that_becomes_required_is_breaking() -> None:
    assert changes_to(bonus_mb=(int, ...)) == [("field became required", "Msg.bonus_mb", True)]


def test_a_removed_field_inside_a_nested_model_is_breaking() -> None:
    assert changes_to(amount=(MoneyWithoutCurrency, ...)) == [
        ("removed field", "Msg.amount.currency", True)
    ]


def test_a_removed_enum_value_is_breaking() -> None:
    assert changes_to(reason=(Literal["declined"], ...)) == [
        ("removed enum value", "Msg.reason", True)
    ]


def test_a_changed_message_type_constant_is_breaking() -> None:
    assert changes_to(type=(Literal["Other"], "Other")) == [
        ("changed default", "Msg.type", True),
        ("changed constant", "Msg.type", True),
    ]


def test_a_changed_default_is_breaking() -> None:
    assert changes_to(bonus_mb=(int, 100)) == [("changed default", "Msg.bonus_mb", True)]


def test_a_tightened_constraint_is_breaking() -> None:
    assert changes_to(
        request_id=(str, Field(min_length=8, max_length=100, pattern="^req-")),
        data_mb=(int | None, Field(ge=1)),
        bonus_mb=(int, Field(default=0, le=10_000)),
    ) == [
        ("tightened constraint", "Msg.bonus_mb", True),  # a maximum
        ("tightened constraint", "Msg.data_mb", True),  # minimum 0 -> 1
        ("tightened constraint", "Msg.request_id", True),  # minLength 1 -> 8
        ("tightened constraint", "Msg.request_id", True),  # maxLength 200 -> 100
        ("tightened constraint", "Msg.request_id", True),  # a pattern
    ]


def test_refusing_unknown_fields_is_breaking() -> None:
    assert changes_to(ConfigDict(extra="forbid")) == [("tightened constraint", "Msg", True)]


# --- additive ----------------------------------------------------------------------------


def test_a_new_optional_field_is_additive() -> None:
    assert changes_to(promotion_code=(str | None, None)) == [
        ("new optional field", "Msg.promotion_code", False)
    ]


def test_a_new_enum_value_is_additive() -> None:
    assert changes_to(reason=(Literal["declined", "expired", "fraud_suspected"], ...)) == [
        ("new enum value", "Msg.reason", False)
    ]


def test_a_field_that_becomes_optional_is_additive() -> None:
    assert changes_to(reason=(Literal["declined", "expired"], "declined")) == [
        ("field became optional", "Msg.reason", False)
    ]


def test_a_field_that_also_accepts_null_is_additive() -> None:
    assert changes_to(bonus_mb=(int | None, 0)) == [("widened type", "Msg.bonus_mb", False)]


def test_a_relaxed_constraint_is_additive() -> None:
    assert changes_to(
        request_id=(str, Field(min_length=1, max_length=500)), data_mb=(int | None, ...)
    ) == [
        ("relaxed constraint", "Msg.data_mb", False),  # no minimum
        ("relaxed constraint", "Msg.request_id", False),  # maxLength 200 -> 500
    ]


def test_documentation_alone_is_no_change() -> None:
    described = Field(min_length=1, max_length=200, description="the publisher's key")
    assert (
        changes_to(
            request_id=(str, described),
            reason=(Literal["declined", "expired"], Field(title="Why")),
            data_mb=(int | None, Field(ge=0, examples=[1024])),
        )
        == []
    )


# --- topics: message types, keys and headers ---------------------------------------------


def snapshot(**messages: type[BaseModel]) -> dict[str, Any]:
    headers = {"type": "object", "properties": {"type": {"type": "string"}}, "required": ["type"]}
    return {
        "topic": "things.events.v1",
        "key": {"type": "string"},
        "headers": headers,
        "messages": {name: model.model_json_schema() for name, model in messages.items()},
    }


def test_a_removed_message_type_is_breaking() -> None:
    found = compare_snapshots(
        snapshot(Msg=message(BEFORE), Money=Money), snapshot(Msg=message(BEFORE))
    )
    assert found == [Change("things.events.v1 Money", "removed message type", breaking=True)]


def test_a_new_message_type_is_additive() -> None:
    found = compare_snapshots(
        snapshot(Msg=message(BEFORE)), snapshot(Msg=message(BEFORE), Money=Money)
    )
    assert found == [Change("things.events.v1 Money", "new message type", breaking=False)]


def test_a_change_to_a_carried_message_is_found_under_the_topic() -> None:
    after = message({**BEFORE, "provider_reference": (str, ...)})
    found = compare_snapshots(snapshot(Msg=message(BEFORE)), snapshot(Msg=after))
    assert [str(change) for change in found] == [
        "BREAKING: new required field at things.events.v1 Msg.provider_reference"
    ]


def with_headers(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    taken = snapshot(Msg=message(BEFORE))
    taken["headers"] = {"type": "object", "properties": properties, "required": required}
    return taken


def test_a_new_optional_header_is_additive() -> None:
    old = with_headers({"type": {"type": "string"}}, ["type"])
    new = with_headers({"type": {"type": "string"}, "traceparent": {"type": "string"}}, ["type"])
    assert [str(change) for change in compare_snapshots(old, new)] == [
        "additive: new optional field at things.events.v1 headers.traceparent"
    ]


def test_a_removed_header_is_breaking() -> None:
    old = with_headers({"type": {"type": "string"}, "event_id": {"format": "uuid"}}, ["type"])
    new = with_headers({"type": {"type": "string"}}, ["type"])
    assert [str(change) for change in compare_snapshots(old, new)] == [
        "BREAKING: removed field at things.events.v1 headers.event_id"
    ]


def test_only_breaking_changes_are_kept_by_breaking() -> None:
    kept = Change("t", "removed field", breaking=True)
    assert breaking([Change("t", "new optional field", breaking=False), kept]) == [kept]
