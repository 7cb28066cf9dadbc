import itertools

from services.orders.saga import TRANSITIONS, OrderState, can_transition


def test_the_happy_path_is_allowed_step_by_step() -> None:
    path = [OrderState.PAYMENT_PENDING, OrderState.TOPUP_PENDING, OrderState.COMPLETED]
    assert all(can_transition(a, b) for a, b in itertools.pairwise(path))


def test_a_step_cannot_be_skipped_or_undone() -> None:
    assert not can_transition(OrderState.PAYMENT_PENDING, OrderState.COMPLETED)
    assert not can_transition(OrderState.COMPLETED, OrderState.TOPUP_PENDING)


def test_every_state_has_its_transitions_declared() -> None:
    assert set(TRANSITIONS) == set(OrderState)
