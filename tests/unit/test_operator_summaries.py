"""The one-line summaries of an order's timeline, and where a line's messages are."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from aiokafka.partitioner import DefaultPartitioner

from services.operator.summaries import data, money, summary
from services.operator.timeline import partition_for
from shared.events import ChargePayment, LineToppedUp, Message, Money, TopUpFailed, TopUpLine
from tests.factories import random_iccid

EUR = Money(amount_minor=1299, currency="EUR")
ICCID = random_iccid()
IDS = {"order_id": uuid.uuid4(), "iccid": ICCID}


def line(message: Message, **headers: str) -> str:
    return summary(message.type, message.model_dump(mode="json"), headers)


def test_amounts_read_in_major_units_with_their_currency() -> None:
    assert money({"amount_minor": 1299, "currency": "EUR"}) == "12.99 EUR"
    assert money({"amount_minor": 5, "currency": "USD"}) == "0.05 USD"
    assert money({"amount_minor": 1500, "currency": "JPY"}) == "1500 JPY"
    assert money(None) == "?"


def test_data_reads_in_gigabytes_when_whole() -> None:
    assert (data(5120), data(1536), data(None)) == ("5 GB", "1536 MB", "unlimited")


def test_a_charge_says_how_much_and_how() -> None:
    charge = ChargePayment(**IDS, amount=EUR, fee=Money(amount_minor=0, currency="EUR"),
                           payment_method="card", payment_token="tok_visa",
                           idempotency_key="k")  # fmt: skip
    assert line(charge) == "ChargePayment 12.99 EUR by card"


def test_a_top_up_says_what_it_adds_and_until_when() -> None:
    command = TopUpLine(**IDS, package_id="eu-5gb-30d", data_mb=5120, bonus_mb=1024,
                        validity_days=30, idempotency_key="k")  # fmt: skip
    done = LineToppedUp(**IDS, data_mb=6144, valid_until=datetime(2026, 12, 1, tzinfo=UTC),
                        data_remaining_mb=6144)  # fmt: skip
    failed = TopUpFailed(**IDS, reason="line_suspended", message="no", attempts=3)
    assert line(command) == "TopUpLine eu-5gb-30d: +6 GB for 30 days"
    assert line(done) == "LineToppedUp +6 GB until 2026-12-01"
    assert line(failed) == "TopUpFailed line_suspended after 3 attempts"


def test_a_summary_never_shows_the_line() -> None:
    command = TopUpLine(**IDS, package_id="p", data_mb=1, validity_days=1, idempotency_key="k")
    assert ICCID not in line(command)


def test_a_dead_letter_says_why_and_a_replay_where_from() -> None:
    failed = TopUpFailed(**IDS, reason="r", message="m", attempts=1)
    dead = line(failed, **{"dlq.reason": "business_rule", "dlq.source.topic": "a.v1",
                           "dlq.consumer": "orders"})  # fmt: skip
    replayed = line(failed, **{"dlq.replayed_from": "a.v1.dlt:0:7"})
    assert (
        dead
        == "dead letter (business_rule, refused on a.v1 by orders): TopUpFailed r after 1 attempts"
    )
    assert replayed == "TopUpFailed r after 1 attempts (replayed from a.v1.dlt:0:7)"


def test_an_unknown_or_unreadable_message_still_gets_a_line() -> None:
    assert summary("?", None, {}) == "? (not a JSON object)"
    assert summary("SomethingNew", {"x": 1}, {}) == "SomethingNew"


def test_a_lines_messages_are_on_the_partition_the_producer_chose() -> None:
    for _ in range(50):
        iccid = random_iccid()
        chosen = DefaultPartitioner()(iccid.encode(), [0, 1, 2], [0, 1, 2])
        assert partition_for(iccid, 3) == chosen
