"""A payment's state machine: one charge and, once captured, its refund."""

from enum import StrEnum


class PaymentStatus(StrEnum):
    NEW = "NEW"  # recorded; the charge call is under way (or its caller crashed)
    PENDING = "PENDING"  # the provider will confirm later (asynchronous methods)
    UNKNOWN = "UNKNOWN"  # the call timed out: charged or not, only the provider knows
    CAPTURED = "CAPTURED"
    DECLINED = "DECLINED"
    CANCELLED = "CANCELLED"
    REFUND_PENDING = "REFUND_PENDING"  # refund asked for; the provider's answer is awaited
    REFUNDED = "REFUNDED"


TRANSITIONS: dict[PaymentStatus, frozenset[PaymentStatus]] = {
    PaymentStatus.NEW: frozenset(
        {
            PaymentStatus.PENDING,
            PaymentStatus.UNKNOWN,
            PaymentStatus.CAPTURED,
            PaymentStatus.DECLINED,
            PaymentStatus.CANCELLED,
        }
    ),
    PaymentStatus.PENDING: frozenset(
        {PaymentStatus.CAPTURED, PaymentStatus.DECLINED, PaymentStatus.CANCELLED}
    ),
    PaymentStatus.UNKNOWN: frozenset(
        {
            PaymentStatus.PENDING,
            PaymentStatus.CAPTURED,
            PaymentStatus.DECLINED,
            PaymentStatus.CANCELLED,
        }
    ),
    PaymentStatus.CAPTURED: frozenset({PaymentStatus.REFUND_PENDING}),
    PaymentStatus.DECLINED: frozenset(),
    # A charge re-sent by the settler can race a cancel the provider never saw:
    # money the provider says it took is always reported, so orders refunds it.
    PaymentStatus.CANCELLED: frozenset({PaymentStatus.CAPTURED}),
    PaymentStatus.REFUND_PENDING: frozenset({PaymentStatus.REFUNDED}),
    PaymentStatus.REFUNDED: frozenset(),
}

UNSETTLED = frozenset(
    {
        PaymentStatus.NEW,
        PaymentStatus.PENDING,
        PaymentStatus.UNKNOWN,
        PaymentStatus.REFUND_PENDING,
    }
)
"""What the settler asks the provider about until it is settled."""

OPEN = frozenset({PaymentStatus.NEW, PaymentStatus.PENDING, PaymentStatus.UNKNOWN})
"""A charge whose outcome is still open: it may be cancelled, it is asked about."""


def can_transition(current: PaymentStatus, target: PaymentStatus) -> bool:
    return target in TRANSITIONS[current]
