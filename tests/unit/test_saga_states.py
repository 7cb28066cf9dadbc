"""The saga's state machine, as pure functions: no broker, no database."""

import itertools
import uuid
from datetime import UTC, datetime
from typing import Any

from services.orders import saga
from services.orders.saga import FINAL, TRANSITIONS, OrderState
from shared import topics
from shared.events import (
    LineToppedUp,
    Money,
    NextAction,
    OrderAwaitingPayment,
    PaymentCancelled,
    PaymentCaptured,
    PaymentDeclined,
    PaymentPending,
    PaymentRefunded,
    RefundPayment,
    TopUpFailed,
    TopUpLine,
)

S = OrderState
EUR = "EUR"
TOTAL = Money(amount_minor=1535, currency=EUR)
FEE = Money(amount_minor=35, currency=EUR)
NOW = datetime(2026, 11, 24, tzinfo=UTC)


def an_order(state: OrderState, captured: Money | None = None) -> saga.Order:
    return saga.Order(
        order_id=uuid.uuid4(), request_id="r", iccid="8944500102198304826", state=state,
        package_id="eu-5gb-30d", data_mb=5120, fair_use_mb=None, bonus_mb=0, validity_days=30,
        total=TOTAL, fee=FEE, payment_method="paypal", captured=captured,
    )  # fmt: skip


def ids(order: saga.Order) -> dict[str, Any]:
    return {"order_id": order.order_id, "iccid": order.iccid}


def sent_types(steps: list[saga.Step]) -> list[str]:
    return [message.type for step in steps for _, message in step.send]


def test_the_happy_path_is_allowed_step_by_step() -> None:
    path = [S.PLACED, S.PAYMENT_PENDING, S.PAID, S.TOPUP_PENDING, S.COMPLETED]
    assert all(saga.can_transition(a, b) for a, b in itertools.pairwise(path))


def test_a_step_cannot_be_skipped_or_undone() -> None:
    assert not saga.can_transition(S.PAYMENT_PENDING, S.COMPLETED)
    assert not saga.can_transition(S.COMPLETED, S.TOPUP_PENDING)


def test_every_state_has_its_transitions_declared_and_the_final_ones_are_the_outcomes() -> None:
    assert set(TRANSITIONS) == set(OrderState)
    assert {S.COMPLETED, S.PAYMENT_FAILED, S.REFUNDED} == FINAL


def test_starting_asks_for_the_total_with_the_fee_under_the_orders_charge_key() -> None:
    order = an_order(S.PLACED)
    [step] = saga.start(order, "tok_1")
    [(_, charge)] = step.send
    assert step.target is S.PAYMENT_PENDING
    assert charge.model_dump(include={"amount", "fee", "idempotency_key"}) == {
        "amount": TOTAL.model_dump(), "fee": FEE.model_dump(),
        "idempotency_key": f"{order.order_id}:charge",
    }  # fmt: skip


def test_a_capture_pays_the_order_and_requests_the_top_up() -> None:
    order = an_order(S.PAYMENT_PENDING)
    event = PaymentCaptured(**ids(order), amount=TOTAL, fee=FEE, provider_reference="p")
    steps = saga.on_payment_event(order, event)
    assert [s.target for s in steps] == [S.PAID, S.TOPUP_PENDING]
    assert steps[0].captured == TOTAL
    assert sent_types(steps) == ["TopUpLine"]


def test_a_pending_payment_is_noted_without_changing_state() -> None:
    order = an_order(S.PAYMENT_PENDING)
    [step] = saga.on_payment_event(order, PaymentPending(**ids(order), provider_reference="p"))
    assert step.note_only
    assert step.target is S.PAYMENT_PENDING


def test_a_pending_payment_tells_the_publisher_the_customers_next_step() -> None:
    order = an_order(S.PAYMENT_PENDING)
    scan = NextAction(type="qr_code", qr_code_data="weixin://wxpay/bizpayurl?pr=abc")
    pending = PaymentPending(**ids(order), provider_reference="pi_1", next_action=scan)
    [step] = saga.on_payment_event(order, pending)
    [(topic, awaiting)] = step.send
    assert topic == topics.ORDERS_EVENTS
    assert isinstance(awaiting, OrderAwaitingPayment)
    assert (awaiting.next_action, awaiting.request_id) == (scan, order.request_id)


def test_a_pending_payment_without_a_next_step_still_says_the_order_awaits_payment() -> None:
    order = an_order(S.PAYMENT_PENDING)
    [step] = saga.on_payment_event(order, PaymentPending(**ids(order), provider_reference="p"))
    [(_, awaiting)] = step.send
    assert isinstance(awaiting, OrderAwaitingPayment)
    assert awaiting.next_action is None


def test_a_decline_fails_the_order_and_tells_the_publisher_why() -> None:
    order = an_order(S.PAYMENT_PENDING)
    event = PaymentDeclined(**ids(order), reason="insufficient_funds", message="no")
    [step] = saga.on_payment_event(order, event)
    assert step.target is S.PAYMENT_FAILED
    assert sent_types([step]) == ["OrderPaymentFailed"]


def test_a_failed_top_up_refunds_what_was_captured_fee_included() -> None:
    order = an_order(S.TOPUP_PENDING, captured=TOTAL)
    event = TopUpFailed(**ids(order), reason="line_suspended", message="", attempts=1)
    [step] = saga.on_provisioning_event(order, event)
    [(_, refund)] = step.send
    assert step.target is S.REFUND_PENDING
    assert isinstance(refund, RefundPayment)
    assert refund.amount == TOTAL
    assert refund.idempotency_key == f"{order.order_id}:refund"


def test_the_refund_ends_the_order_refunded() -> None:
    order = an_order(S.REFUND_PENDING, captured=TOTAL)
    event = PaymentRefunded(**ids(order), amount=TOTAL, provider_reference="p")
    [step] = saga.on_payment_event(order, event)
    assert step.target is S.REFUNDED
    assert sent_types([step]) == ["OrderRefunded"]


def test_a_top_up_completes_the_order() -> None:
    order = an_order(S.TOPUP_PENDING, captured=TOTAL)
    event = LineToppedUp(**ids(order), data_mb=5120, valid_until=NOW, data_remaining_mb=5120)
    [step] = saga.on_provisioning_event(order, event)
    assert step.target is S.COMPLETED
    assert sent_types([step]) == ["OrderCompleted"]


def test_an_overdue_payment_expires_the_order_and_cancels_the_charge() -> None:
    [step] = saga.on_payment_deadline(an_order(S.PAYMENT_PENDING), NOW)
    assert step.target is S.EXPIRED
    assert sent_types([step]) == ["CancelPayment", "OrderExpired"]
    assert saga.on_payment_deadline(an_order(S.PAID), NOW) == []


def test_a_capture_after_expiry_is_refunded() -> None:
    order = an_order(S.EXPIRED)
    event = PaymentCaptured(**ids(order), amount=TOTAL, fee=FEE, provider_reference="p")
    [step] = saga.on_payment_event(order, event)
    assert step.target is S.REFUND_PENDING
    assert sent_types([step]) == ["RefundPayment"]


def test_a_cancellation_confirms_the_expiry_as_a_note() -> None:
    order = an_order(S.EXPIRED)
    [step] = saga.on_payment_event(order, PaymentCancelled(**ids(order), reason="expired"))
    assert step.note_only


def test_messages_in_the_wrong_state_are_ignored() -> None:
    completed = an_order(S.COMPLETED, captured=TOTAL)
    capture = PaymentCaptured(**ids(completed), amount=TOTAL, fee=FEE, provider_reference="p")
    assert saga.on_payment_event(completed, capture) == []
    failed = TopUpFailed(**ids(completed), reason="x", message="", attempts=1)
    assert saga.on_provisioning_event(completed, failed) == []


def test_a_saga_with_no_progress_asks_again_with_the_same_key_and_never_compensates() -> None:
    waiting = an_order(S.TOPUP_PENDING, captured=TOTAL)
    [step] = saga.on_no_progress(waiting)
    [(_, again)] = step.send
    assert step.note_only
    assert isinstance(again, TopUpLine)
    assert again.idempotency_key == f"{waiting.order_id}:topup"
    [refund_step] = saga.on_no_progress(an_order(S.REFUND_PENDING, captured=TOTAL))
    assert sent_types([refund_step]) == ["RefundPayment"]
    assert saga.on_no_progress(an_order(S.PAYMENT_PENDING)) == []
