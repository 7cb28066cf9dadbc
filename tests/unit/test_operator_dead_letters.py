"""Dead letters as operators see them: masked, with who replayed them; what a replay
request may ask."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from services.operator.audit import AuditEntry
from services.operator.dead_letter_store import DeadLetter, parse_where
from services.operator.dead_letters import REPLAY_ACTION, ReplayRequest, replayed, view
from shared.logs import mask
from tests.factories import random_iccid

WHERE = "payments.events.v1.dlt:2:17"


def letter(value: bytes, **headers: str) -> DeadLetter:
    raw = tuple((k, v.encode()) for k, v in headers.items())
    return DeadLetter("payments.events.v1.dlt", 2, 17, 0, b"key", value, raw)


def replay_entry(who: str, ids: list[str], outcome: str = "ok") -> AuditEntry:
    return AuditEntry.now(who, REPLAY_ACTION, ids[0] if ids else "all", outcome, {"ids": ids})


def test_a_dead_letter_is_named_by_topic_partition_and_offset() -> None:
    assert parse_where(WHERE) == ("payments.events.v1.dlt", 2, 17)
    for bad in (
        "payments.events.v1:2:17",
        "payments.events.v1.dlt:x:1",
        "nope",
        "a.dlt:-1:0",
        "operator.audit.v1.dlt:0:0",  # not a dead-letter topic of the contract
        "payments.events.v1.dlt:+1:0",
        "payments.events.v1.dlt:\u0661:\u0660",  # Arabic-Indic digits: not an offset Kafka knows
        "payments.events.v1.dlt:2147483648:0",  # past Kafka's int32 partitions
        "payments.events.v1.dlt:0:1234567890123456789",
    ):
        with pytest.raises(ValueError):  # noqa: PT011 - int() and ours word it differently
            parse_where(bad)


def test_the_view_masks_the_line_in_the_error_and_the_preview_even_where_it_is_cut() -> None:
    iccid = random_iccid()
    body = json.dumps({"type": "PaymentCaptured", "order_id": "o-1"}).encode()
    shown = view(letter(body, **{"dlq.reason": "business_rule", "dlq.source.topic": "p.v1",
                                 "dlq.error": f"bad line {iccid}", "dlq.consumer": "orders",
                                 "dlq.failed_at": "2026-01-01T00:00:00+00:00"}), None)  # fmt: skip
    cut = view(letter(b"x" * 189 + b'"' + iccid.encode()), None)["payload_preview"]
    assert shown["error"] == f"bad line {mask(iccid)}"
    assert cut == ("x" * 189 + '"' + mask(iccid))[:200]
    assert iccid[:10] not in cut
    # Where a replay goes is the topic the dead-letter topic is named after, not a header's say.
    assert (shown["id"], shown["reason"], shown["source_topic"]) == (
        WHERE,
        "business_rule",
        "payments.events.v1",
    )
    assert (shown["type"], shown["order_id"], shown["consumer"]) == (
        "PaymentCaptured",
        "o-1",
        "orders",
    )
    assert (shown["replayed_by"], shown["replayed_at"]) == (None, None)


def test_bytes_that_are_not_json_are_previewed_as_text() -> None:
    shown = view(letter(b"not json \xff"), None)
    assert shown["payload_preview"] == "not json \ufffd"
    assert (shown["type"], shown["order_id"], shown["reason"]) == (None, None, "?")


def test_who_replayed_a_dead_letter_is_the_latest_successful_replay_naming_it() -> None:
    newest_first = [
        replay_entry("bob", [WHERE], outcome="failed"),
        replay_entry("alice", [WHERE, "x.dlt:0:1"]),
        replay_entry("carol", [WHERE]),
        AuditEntry.now("dave", "something.else", WHERE, "ok", {"ids": ["y.dlt:0:0"]}),
    ]
    done = replayed(newest_first)
    assert done[WHERE].operator == "alice"
    assert done["x.dlt:0:1"].operator == "alice"
    assert "y.dlt:0:0" not in done


def test_one_dead_letter_spelt_several_ways_is_one_dead_letter() -> None:
    spellings = ["payments.events.v1.dlt:1:0", "payments.events.v1.dlt:01:0",
                 "payments.events.v1.dlt:1:00"]  # fmt: skip
    assert {parse_where(where) for where in spellings} == {("payments.events.v1.dlt", 1, 0)}


def test_a_replay_names_dead_letters_or_asks_for_all_of_them() -> None:
    assert ReplayRequest.model_validate({"ids": [WHERE]}).ids == [WHERE]
    every = ReplayRequest.model_validate(
        {"all": True, "topic": "payments.events.v1", "reason": "r"}
    )
    assert (every.all, every.topic, every.reason) == (True, "payments.events.v1", "r")
    with pytest.raises(ValueError, match="Input should be"):
        ReplayRequest.model_validate({"all": True, "topic": "operator.audit.v1"})


@pytest.mark.parametrize(
    "body",
    [{}, {"ids": []}, {"ids": ["nope"]}, {"all": False}, {"all": True, "ids": [WHERE]},
     {"ids": [WHERE], "reason": "r"}],
)  # fmt: skip
def test_a_replay_request_that_is_neither_is_refused(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ReplayRequest.model_validate(body)


def test_an_audit_record_that_is_not_ours_is_skipped() -> None:
    entry = replay_entry("alice", [WHERE])
    assert AuditEntry.parse(json.dumps(entry.__dict__).encode()) == entry
    assert AuditEntry.parse(b"{}") is None
    assert AuditEntry.parse(b"not json") is None


def test_a_dead_letter_holding_only_a_prefix_of_its_original_is_shown_so_and_never_replayed() -> (
    None
):
    prefix = letter(b'{"type": "PlaceOrder", "pad": "xxxx', **{"dlq.truncated": "value"})
    cut_headers = letter(b"{}", **{"dlq.truncated": "headers"})
    assert prefix.truncated
    assert view(prefix, None)["truncated"] is True
    assert not cut_headers.truncated, "its payload is whole: it may be replayed"
