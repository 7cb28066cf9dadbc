"""The pure rules: the payment state machine, the settler's backoff, card numbers."""

from datetime import UTC, datetime, timedelta

import pytest

from services.payments.backoff import Backoff
from services.payments.states import OPEN, UNSETTLED, PaymentStatus, can_transition
from shared.card_numbers import looks_like_card_number, storable


def test_a_charge_whose_outcome_is_open_can_still_end_any_way() -> None:
    for status in OPEN:
        for end in (PaymentStatus.CAPTURED, PaymentStatus.DECLINED, PaymentStatus.CANCELLED):
            assert can_transition(status, end)


def test_only_a_captured_charge_is_refunded() -> None:
    assert can_transition(PaymentStatus.CAPTURED, PaymentStatus.REFUND_PENDING)
    assert can_transition(PaymentStatus.REFUND_PENDING, PaymentStatus.REFUNDED)
    for status in PaymentStatus:
        if status is not PaymentStatus.CAPTURED:
            assert not can_transition(status, PaymentStatus.REFUND_PENDING)


def test_declined_and_refunded_are_final_and_a_capture_is_never_undone() -> None:
    assert not any(can_transition(PaymentStatus.DECLINED, s) for s in PaymentStatus)
    assert not any(can_transition(PaymentStatus.REFUNDED, s) for s in PaymentStatus)
    assert not can_transition(PaymentStatus.CAPTURED, PaymentStatus.CANCELLED)


def test_a_capture_reported_after_a_cancel_is_still_recorded() -> None:
    assert can_transition(PaymentStatus.CANCELLED, PaymentStatus.CAPTURED)


def test_the_settler_looks_at_open_charges_and_pending_refunds_only() -> None:
    assert OPEN | {PaymentStatus.REFUND_PENDING} == UNSETTLED


def test_the_backoff_doubles_from_its_base_up_to_its_cap() -> None:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    backoff = Backoff(base_s=0.5, max_s=3.0, new_grace_s=10.0)
    waits = [(backoff.after(n, now) - now).total_seconds() for n in range(1, 6)]
    assert waits == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff.after(10_000, now) == now + timedelta(seconds=3)
    assert backoff.grace(now) == now + timedelta(seconds=10)


@pytest.mark.parametrize(
    "token",
    [
        "4242424242424242", "4242 4242 4242 4242", "4242-4242-4242-4242", "4222222222222",
        "4242.4242.4242.4242", "4242/4242/4242/4242", "4242_4242_4242_4242",
        "5555--5555--5555--4444",
    ],
)  # fmt: skip
def test_card_numbers_are_recognised_and_masked_to_their_last_four_digits(token: str) -> None:
    assert looks_like_card_number(token)
    assert storable(token).endswith(token[-4:])
    assert set(storable(token)[:-4]) == {"*"}


@pytest.mark.parametrize(
    "token", ["card:4242424242424242", "tok_4242424242424242", "PAN 4242 4242 4242 4242 12/29"]
)
def test_a_card_number_behind_a_prefix_or_among_words_is_one_all_the_same(token: str) -> None:
    assert looks_like_card_number(token)
    assert "4242424242424242" not in storable(token).replace(" ", "")
    assert storable(token).endswith(token[-4:]) or "12/29" in token


@pytest.mark.parametrize(
    "token", ["tok_visa", "123456789012", "tok_1N3T00LkdIwHu7ix", "8944500102198304826"]
)  # too short; letters; an ICCID
def test_provider_tokens_are_kept_as_they_are(token: str) -> None:
    assert not looks_like_card_number(token)
    assert storable(token) == token
