"""Auto-renewal's decisions: what a renewal order's outcome leads to, and its request ids."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from services.provisioning.renewal_policy import RenewalPolicy
from services.provisioning.renewals import (
    Pause,
    Renewed,
    RetryLater,
    decide,
    is_renewal,
    place_order,
    renewal_request_id,
)
from services.provisioning.renewals_db import RenewalSettings
from shared.events import (
    Money,
    OrderCompleted,
    OrderExpired,
    OrderPaymentFailed,
    OrderPlaced,
    OrderRefunded,
    OrderRejected,
    order_id_for,
)

ICCID = "8944500102198304826"
CYCLE = uuid.UUID("0f5e7c1e-3d1b-4c6a-9e7e-1b2c3d4e5f60")
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
POLICY = RenewalPolicy(max_attempts=3, retry_delay_s=600)
REQUEST = renewal_request_id(ICCID, CYCLE, "data_used_90", 1)
IDS = {"order_id": order_id_for(REQUEST), "iccid": ICCID, "request_id": REQUEST}


def declined() -> OrderPaymentFailed:
    return OrderPaymentFailed(**IDS, reason="insufficient_funds", message="declined")


def test_a_renewal_request_id_names_the_line_the_cycle_the_threshold_and_the_attempt() -> None:
    assert renewal_request_id(ICCID, CYCLE, "data_used_90", 2) == (
        f"autorenew:{ICCID}:{CYCLE}:data_used_90:2"
    )
    assert is_renewal(REQUEST)
    assert not is_renewal("req-123")


def test_the_renewal_order_is_placed_with_the_saved_settings_under_its_request_id() -> None:
    settings = RenewalSettings(
        alert="data_used_90", package_id="eu-1gb-7d", currency="EUR", payment_method="card",
        payment_token="tok_visa_4242", msisdn="+447700900123", email="t@example.com",
    )  # fmt: skip
    order = place_order(ICCID, settings, REQUEST, NOW)
    assert (order.request_id, order.order_id, order.iccid) == (REQUEST, IDS["order_id"], ICCID)
    assert (order.package_id, order.currency, order.payment_token) == (
        "eu-1gb-7d", "EUR", "tok_visa_4242",
    )  # fmt: skip


def test_a_completed_renewal_order_is_renewed() -> None:
    completed = OrderCompleted(**IDS, data_mb=1024, valid_until=NOW + timedelta(days=7))
    assert decide(completed, 1, POLICY, NOW) == Renewed()


def test_a_placed_order_decides_nothing_yet() -> None:
    placed = OrderPlaced(
        **IDS, package_id="eu-1gb-7d", catalog_version="v", price=Money(amount_minor=500,
        currency="EUR"), discount=Money(amount_minor=0, currency="EUR"),
        fee=Money(amount_minor=0, currency="EUR"), total=Money(amount_minor=500, currency="EUR"),
        payment_method="card",
    )  # fmt: skip
    assert decide(placed, 1, POLICY, NOW) is None


def test_a_declined_renewal_is_retried_after_the_delay_while_attempts_remain() -> None:
    assert decide(declined(), 1, POLICY, NOW) == RetryLater(
        "insufficient_funds", "declined", attempt=2, due_at=NOW + timedelta(seconds=600)
    )
    assert decide(declined(), 2, POLICY, NOW) == RetryLater(
        "insufficient_funds", "declined", attempt=3, due_at=NOW + timedelta(seconds=600)
    )


def test_the_last_declined_attempt_pauses_with_retries_exhausted_and_the_last_failure() -> None:
    pause = decide(declined(), 3, POLICY, NOW)
    assert isinstance(pause, Pause)
    assert (pause.reason, pause.failure_reason) == ("retries_exhausted", "insufficient_funds")
    assert "3 renewal orders failed" in pause.message
    assert "insufficient_funds" in pause.message


def test_an_expired_or_refunded_renewal_is_retried_too() -> None:
    due_at = NOW + timedelta(seconds=600)
    assert decide(OrderExpired(**IDS), 1, POLICY, NOW) == RetryLater(
        "payment_expired", "the payment was not confirmed in time", 2, due_at
    )
    refunded = OrderRefunded(
        **IDS, amount=Money(amount_minor=500, currency="EUR"), reason="line_suspended"
    )
    assert decide(refunded, 1, POLICY, NOW) == RetryLater(
        "line_suspended", "the line could not be topped up; the payment was refunded", 2, due_at
    )


def test_a_rejected_renewal_pauses_at_once_since_retrying_cannot_help() -> None:
    rejected = OrderRejected(**IDS, reason="unknown_package", message="no package 'gone'")
    pause = decide(rejected, 1, POLICY, NOW)
    assert isinstance(pause, Pause)
    assert (pause.reason, pause.failure_reason) == ("order_rejected", "unknown_package")
    assert "no package 'gone'" in pause.message


def test_with_one_attempt_allowed_the_first_decline_pauses() -> None:
    assert decide(declined(), 1, RenewalPolicy(max_attempts=1), NOW) == Pause(
        reason="retries_exhausted",
        message="1 renewal orders failed; the last: insufficient_funds: declined",
        failure_reason="insufficient_funds",
        failure_message="declined",
    )
