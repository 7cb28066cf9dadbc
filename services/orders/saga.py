"""The top-up saga as an explicit state machine: states and the allowed transitions."""

from enum import StrEnum


class OrderState(StrEnum):
    PAYMENT_PENDING = "PAYMENT_PENDING"
    TOPUP_PENDING = "TOPUP_PENDING"
    COMPLETED = "COMPLETED"


TRANSITIONS: dict[OrderState, frozenset[OrderState]] = {
    OrderState.PAYMENT_PENDING: frozenset({OrderState.TOPUP_PENDING}),
    OrderState.TOPUP_PENDING: frozenset({OrderState.COMPLETED}),
    OrderState.COMPLETED: frozenset(),
}


def can_transition(current: OrderState, target: OrderState) -> bool:
    return target in TRANSITIONS[current]
