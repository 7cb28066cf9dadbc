"""The top-up saga as an explicit state machine.

    PLACED -> PAYMENT_PENDING -> PAID -> TOPUP_PENDING -> COMPLETED
                 |                            |
                 +-> PAYMENT_FAILED           +-> REFUND_PENDING -> REFUNDED
                 +-> EXPIRED -(captured late)-^

Each step reads as: in these states, on this message, move to that state and
send these messages. The compensation (refund) sits next to the step it undoes.
A message that arrives in a state where it means nothing (a redelivery, a late
answer) is a logged no-op, never a crash. The functions here are pure: orders.py
loads the order, applies the steps and stores them in one transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, cast

from shared import topics
from shared.events import (
    CancelPayment,
    ChargePayment,
    LineToppedUp,
    Money,
    OrderAwaitingPayment,
    OrderCompleted,
    OrderExpired,
    OrderPaymentFailed,
    OrderRefunded,
    PaymentCancelled,
    PaymentCaptured,
    PaymentDeclined,
    PaymentMethod,
    PaymentPending,
    PaymentRefunded,
    RefundPayment,
    TopUpFailed,
    TopUpLine,
)
from shared.kafka import Outgoing


class OrderState(StrEnum):
    PLACED = "PLACED"
    PAYMENT_PENDING = "PAYMENT_PENDING"
    PAID = "PAID"
    TOPUP_PENDING = "TOPUP_PENDING"
    COMPLETED = "COMPLETED"
    PAYMENT_FAILED = "PAYMENT_FAILED"
    EXPIRED = "EXPIRED"
    REFUND_PENDING = "REFUND_PENDING"
    REFUNDED = "REFUNDED"


S = OrderState
TRANSITIONS: dict[OrderState, frozenset[OrderState]] = {
    S.PLACED: frozenset({S.PAYMENT_PENDING}),
    S.PAYMENT_PENDING: frozenset({S.PAID, S.PAYMENT_FAILED, S.EXPIRED}),
    S.PAID: frozenset({S.TOPUP_PENDING}),
    S.TOPUP_PENDING: frozenset({S.COMPLETED, S.REFUND_PENDING}),
    S.EXPIRED: frozenset({S.REFUND_PENDING}),  # the provider captured after we gave up
    S.REFUND_PENDING: frozenset({S.REFUNDED}),
    S.COMPLETED: frozenset(),
    S.PAYMENT_FAILED: frozenset(),
    S.REFUNDED: frozenset(),
}
FINAL = frozenset(state for state, targets in TRANSITIONS.items() if not targets)
"""States where the saga is over. EXPIRED is not final: a late capture is refunded."""
OUTCOMES = FINAL | {S.EXPIRED}
"""How an order ends, as far as its customer sees (metrics, dashboards)."""


def can_transition(current: OrderState, target: OrderState) -> bool:
    return target in TRANSITIONS[current]


@dataclass(frozen=True)
class Order:
    """What the saga needs to know about an order."""

    order_id: uuid.UUID
    request_id: str
    iccid: str
    state: OrderState
    package_id: str
    data_mb: int | None
    fair_use_mb: int | None
    bonus_mb: int
    validity_days: int
    total: Money
    fee: Money
    payment_method: str
    captured: Money | None = None


@dataclass(frozen=True)
class Step:
    """One transition: the new state, why, and what to send once it is stored."""

    target: OrderState
    cause: str
    send: tuple[Outgoing, ...] = ()
    captured: Money | None = None  # set by the step that learns what was charged
    note_only: bool = False  # a timeline entry that does not change the state


def start(order: Order, payment_token: str) -> list[Step]:
    """PLACED -> PAYMENT_PENDING: ask payments to charge the total, fee included."""
    charge = ChargePayment(
        **_ids(order),
        amount=order.total,
        fee=order.fee,
        payment_method=cast(PaymentMethod, order.payment_method),
        payment_token=payment_token,
        idempotency_key=f"{order.order_id}:charge",
    )
    return [Step(S.PAYMENT_PENDING, "payment requested", ((topics.PAYMENTS_COMMANDS, charge),))]


def on_payment_event(
    order: Order,
    event: PaymentPending | PaymentCaptured | PaymentDeclined | PaymentCancelled | PaymentRefunded,
) -> list[Step]:
    match event, order.state:
        case PaymentPending(), S.PAYMENT_PENDING:
            # The publisher learns what the customer must do (open a page, scan a code).
            awaiting = OrderAwaitingPayment(
                **_ids(order), request_id=order.request_id,
                payment_method=cast(PaymentMethod, order.payment_method),
                next_action=event.next_action,
            )  # fmt: skip
            return [Step(S.PAYMENT_PENDING, "payment awaits the provider's confirmation",
                         ((topics.ORDERS_EVENTS, awaiting),), note_only=True)]  # fmt: skip
        case PaymentCaptured(), S.PAYMENT_PENDING:
            return [
                Step(S.PAID, "payment captured", captured=event.amount),
                Step(S.TOPUP_PENDING, "top-up requested", ((topics.PROVISIONING_COMMANDS,
                     _top_up(order)),)),
            ]  # fmt: skip
        case PaymentCaptured(), S.EXPIRED:
            late = order_with_capture(order, event.amount)
            return [_refund(late, "payment captured after the order expired", event.amount)]
        case PaymentDeclined(), S.PAYMENT_PENDING:
            failed = OrderPaymentFailed(
                **_ids(order), request_id=order.request_id, reason=event.reason,
                message=event.message,
            )  # fmt: skip
            return [Step(S.PAYMENT_FAILED, f"payment declined: {event.reason}",
                         ((topics.ORDERS_EVENTS, failed),))]  # fmt: skip
        case PaymentCancelled(), S.EXPIRED:
            return [Step(S.EXPIRED, "pending payment cancelled", note_only=True)]
        case PaymentRefunded(), S.REFUND_PENDING:
            refunded = OrderRefunded(
                **_ids(order), request_id=order.request_id, amount=event.amount,
                reason="refunded",
            )  # fmt: skip
            return [Step(S.REFUNDED, "payment refunded", ((topics.ORDERS_EVENTS, refunded),))]
    return []


def on_provisioning_event(order: Order, event: LineToppedUp | TopUpFailed) -> list[Step]:
    match event, order.state:
        case LineToppedUp(), S.TOPUP_PENDING:
            completed = OrderCompleted(
                **_ids(order), request_id=order.request_id, data_mb=event.data_mb,
                valid_until=event.valid_until,
            )  # fmt: skip
            return [Step(S.COMPLETED, "line topped up", ((topics.ORDERS_EVENTS, completed),))]
        case TopUpFailed(), S.TOPUP_PENDING:
            captured = order.captured or order.total
            return [_refund(order, f"top-up failed: {event.reason}", captured)]
    return []


def on_payment_deadline(order: Order, now: datetime) -> list[Step]:
    """PAYMENT_PENDING past its deadline -> EXPIRED; payments is told to stop waiting."""
    if order.state is not S.PAYMENT_PENDING:
        return []
    cancel = CancelPayment(
        **_ids(order), idempotency_key=f"{order.order_id}:charge", reason="order expired"
    )
    expired = OrderExpired(**_ids(order), request_id=order.request_id)
    return [
        Step(
            S.EXPIRED,
            f"payment not confirmed by {now.isoformat(timespec='seconds')}",
            ((topics.PAYMENTS_COMMANDS, cancel), (topics.ORDERS_EVENTS, expired)),
        )
    ]


def on_no_progress(order: Order) -> list[Step]:
    """A saga waiting too long on another service: ask again, with the same idempotency
    key, so the other side answers with its first result or carries on; never a new
    charge or top-up. Compensation stays with the answer: a top-up that may have been
    applied is never refunded on a timer."""
    match order.state:
        case S.TOPUP_PENDING:
            again = ((topics.PROVISIONING_COMMANDS, _top_up(order)),)
            return [Step(S.TOPUP_PENDING, "no progress: top-up requested again", again,
                         note_only=True)]  # fmt: skip
        case S.REFUND_PENDING:
            amount = order.captured or order.total
            step = _refund(order, "no progress: refund requested again", amount)
            return [Step(step.target, step.cause, step.send, note_only=True)]
    return []


WAITING_ON_OTHERS = frozenset({S.TOPUP_PENDING, S.REFUND_PENDING})
"""States in which only another service's answer moves the saga on."""


def order_with_capture(order: Order, amount: Money) -> Order:
    return Order(**{**order.__dict__, "captured": amount})


def _refund(order: Order, cause: str, amount: Money) -> Step:
    """The compensation of a capture: give back what was charged, fee included."""
    refund = RefundPayment(
        **_ids(order), amount=amount, idempotency_key=f"{order.order_id}:refund", reason=cause
    )
    return Step(S.REFUND_PENDING, cause, ((topics.PAYMENTS_COMMANDS, refund),), captured=amount)


def _top_up(order: Order) -> TopUpLine:
    return TopUpLine(
        **_ids(order),
        package_id=order.package_id,
        data_mb=order.data_mb,
        fair_use_mb=order.fair_use_mb,
        bonus_mb=order.bonus_mb,
        validity_days=order.validity_days,
        idempotency_key=f"{order.order_id}:topup",
    )


def _ids(order: Order) -> dict[str, Any]:
    """The envelope fields every message about this order carries."""
    return {"order_id": order.order_id, "iccid": order.iccid}
