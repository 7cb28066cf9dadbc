"""The one-line summaries of an order's timeline, and where a line's messages are."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from aiokafka.partitioner import DefaultPartitioner

from services.operator.summaries import SUMMARIES, data, money, summary
from services.operator.timeline import ORDER_TOPICS, partition_for
from shared import topics
from shared.events import (
    ALL_MESSAGES,
    AutoRenewalPaused,
    ChargePayment,
    DataForfeited,
    Envelope,
    LineAlertRaised,
    LineToppedUp,
    Money,
    TopUpFailed,
    TopUpLine,
    UsageReported,
)
from tests.factories import random_iccid

EUR = Money(amount_minor=1299, currency="EUR")
ICCID = random_iccid()
IDS = {"order_id": uuid.uuid4(), "iccid": ICCID}
CYCLE_START = datetime(2026, 11, 1, tzinfo=UTC)
VALID_UNTIL = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


def line(message: Envelope, **headers: str) -> str:
    return summary(message.type, message.model_dump(mode="json"), headers)


def alert(name: str, kind: str, **fields: object) -> LineAlertRaised:
    defaults = {"cycle_started_at": CYCLE_START, "data_quota_mb": 1000, "data_used_mb": 0,
                "data_remaining_mb": 1000, "valid_until": VALID_UNTIL}  # fmt: skip
    return LineAlertRaised.model_validate(
        {**IDS, "alert": name, "kind": kind, **defaults, **fields}
    )


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


def test_every_message_of_the_contract_has_a_summary() -> None:
    assert set(SUMMARIES) == {message.__name__ for message in ALL_MESSAGES}


def test_a_data_alert_says_how_much_of_the_package_is_used() -> None:
    used = alert("data_used_90", "data_used", data_used_mb=912, data_remaining_mb=88)
    assert line(used) == "LineAlertRaised alert data_used_90: 912 of 1000 MB used"


def test_an_exhausted_line_says_how_much_it_used_beyond_its_balance() -> None:
    out = alert("data_exhausted", "data_exhausted", data_used_mb=1040, data_remaining_mb=0,
                overage_mb=40)  # fmt: skip
    assert line(out) == (
        "LineAlertRaised alert data_exhausted: 1040 of 1000 MB used, 40 MB beyond the balance"
    )


def test_an_alert_of_a_cycle_without_a_quota_says_only_what_was_used() -> None:
    unlimited = alert("data_used_75", "data_used", data_quota_mb=None, data_used_mb=300,
                      data_remaining_mb=None)  # fmt: skip
    assert line(unlimited) == "LineAlertRaised alert data_used_75: 300 MB used"


def test_an_expiry_alert_says_what_is_left_and_until_when() -> None:
    near = alert("expires_in_3d", "expiry_near", data_used_mb=488, data_remaining_mb=512)
    ended = alert("validity_ended", "validity_ended", data_remaining_mb=0)
    unlimited = alert("expires_in_1d", "expiry_near", data_quota_mb=None, data_remaining_mb=None)
    assert line(near) == "LineAlertRaised alert expires_in_3d: 512 MB left until 2026-12-01"
    assert line(ended) == "LineAlertRaised alert validity_ended on 2026-12-01"
    assert line(unlimited) == "LineAlertRaised alert expires_in_1d: unlimited left until 2026-12-01"


def test_forfeited_data_says_how_much_was_lost() -> None:
    metered = DataForfeited(**IDS, forfeited_mb=120, valid_until=VALID_UNTIL)
    fair_use = DataForfeited(**IDS, forfeited_mb=0, fair_use_forfeited_mb=2048,
                             valid_until=VALID_UNTIL)  # fmt: skip
    assert line(metered) == "DataForfeited forfeited 120 MB"
    assert line(fair_use) == "DataForfeited forfeited 0 MB and 2 GB of fair use"


def test_a_paused_auto_renewal_says_why_and_after_how_many_attempts() -> None:
    paused = AutoRenewalPaused(**IDS, reason="retries_exhausted", message="declined twice",
                               attempts=2, alert="data_used_90")  # fmt: skip
    assert (
        line(paused) == "AutoRenewalPaused auto-renewal paused: retries_exhausted after 2 attempts"
    )


def test_a_usage_report_says_how_much_was_used() -> None:
    report = UsageReported(event_id=uuid.uuid4(), iccid=ICCID, used_mb=35, period_start=CYCLE_START,
                           period_end=CYCLE_START)  # fmt: skip
    assert line(report) == "UsageReported used 35 MB"
    assert ICCID not in line(report)


def test_a_timeline_reads_the_line_events_but_not_the_carriers_usage() -> None:
    assert topics.PROVISIONING_LINE_EVENTS in ORDER_TOPICS
    assert topics.CARRIER_USAGE not in ORDER_TOPICS
    assert set(topics.SAGA_TOPICS) <= set(ORDER_TOPICS)


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
