"""The invariants of the fault suite on hand-made snapshots: silent on a consistent world,
and each one speaks up on the violation it exists for (a check that never fails proves
nothing). No infrastructure: these run in a blink."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable

import pytest

from shared import topics
from tests.factories import order_request
from tests.faults import invariants
from tests.faults.invariants import every_violation
from tests.faults.load import Flaw, Kind, LoadPlan, Malformed, Request
from tests.faults.state import DeadLetter, Snapshot

CARD = Request(Kind.CARD, order_request(currency="EUR"))
SUSPENDED = Request(Kind.SUSPENDED_LINE, order_request(currency="EUR"))
Tables = dict[str, dict[str, list[dict[str, object]] | None]]

BAD = Malformed("faults-bad-0001", topics.PAYMENTS_EVENTS, Flaw.NOT_JSON, b"\xff faults-bad-0001")


def a_consistent_world() -> tuple[Snapshot, LoadPlan]:
    """One order completed, one refunded after its top-up failed, one malformed message
    dead-lettered, every outbox empty."""
    done, refunded = str(CARD.order_id), str(SUSPENDED.order_id)

    def order(request: Request, state: str) -> dict[str, object]:
        return {
            "order_id": str(request.order_id), "request_id": request.request_id,
            "iccid": request.body["iccid"], "state": state, "currency": "EUR",
            "total_minor": 1500, "captured_minor": 1500, "data_mb": 5120,
            "fair_use_mb": None, "bonus_mb": 0,
        }  # fmt: skip

    empty_outbox: list[dict[str, object]] = [{"unpublished": 0}]
    tables: Tables = {
        "orders": {
            "orders": [order(CARD, "COMPLETED"), order(SUSPENDED, "REFUNDED")],
            "order_transitions": [
                {"order_id": refunded, "from_state": "TOPUP_PENDING", "to_state": "REFUND_PENDING"},
                {"order_id": refunded, "from_state": "REFUND_PENDING", "to_state": "REFUNDED"},
            ],
            "rejected_requests": [],
            "outbox": empty_outbox,
        },
        "payments": {"outbox": empty_outbox},
        "stripe_simulator": {
            "payment_intents": [
                {"idempotency_key": f"{done}:charge", "amount_minor": 1500, "currency": "EUR",
                 "status": "captured", "charge_calls": 1},
                {"idempotency_key": f"{refunded}:charge", "amount_minor": 1500,
                 "currency": "EUR", "status": "captured", "charge_calls": 2},
            ],
            "refunds": [
                {"idempotency_key": f"{refunded}:refund", "charge_key": f"{refunded}:charge",
                 "amount_minor": 1500, "currency": "EUR", "status": "refunded"},
            ],
        },
        "carrier_simulator": {
            "carrier_topup_orders": [
                {"key": f"{done}:topup", "iccid": CARD.body["iccid"], "outcome": "applied"},
            ],
        },
        "provisioning": {
            "topups": [
                {"idempotency_key": f"{done}:topup", "order_id": done,
                 "iccid": CARD.body["iccid"], "status": "APPLIED"},
            ],
            "lines": [
                {"iccid": CARD.body["iccid"], "data_remaining_mb": 5120,
                 "fair_use_remaining_mb": None},
            ],
            "outbox": empty_outbox,
        },
    }  # fmt: skip
    dead = DeadLetter(
        f"{BAD.topic}.dlt",
        BAD.value,
        {"dlq.source.topic": BAD.topic, "dlq.source.partition": "0",
         "dlq.source.offset": "7", "dlq.reason": "undecodable", "dlq.error": "..."},
    )  # fmt: skip
    return Snapshot(tables, [dead]), LoadPlan([CARD, SUSPENDED], [BAD], [], 0)


def test_a_consistent_world_violates_nothing() -> None:
    snapshot, plan = a_consistent_world()
    assert every_violation(snapshot, plan) == {}


def charge_twice(t: Tables) -> None:
    charges = t["stripe_simulator"]["payment_intents"]
    assert charges is not None
    charges.append({**charges[0], "idempotency_key": f"{CARD.order_id}:charge-again"})


def top_up_twice(t: Tables) -> None:
    lines = t["provisioning"]["lines"]
    assert lines is not None
    lines[0]["data_remaining_mb"] = 2 * 5120


def leave_an_order_waiting(t: Tables) -> None:
    orders = t["orders"]["orders"]
    assert orders is not None
    orders[0]["state"] = "TOPUP_PENDING"


def refund_without_reason(t: Tables) -> None:
    t["orders"]["order_transitions"] = []


def drop_the_outbox(t: Tables) -> None:
    t["payments"]["outbox"] = None


def leave_outbox_rows(t: Tables) -> None:
    t["orders"]["outbox"] = [{"unpublished": 3}]


def drop_a_ledger(t: Tables) -> None:
    t["carrier_simulator"]["carrier_topup_orders"] = None


@pytest.mark.parametrize(
    ("break_it", "violated"),
    [
        (
            charge_twice,
            invariants.the_provider_charged_no_order_twice_and_the_carrier_topped_up_no_line_twice,
        ),
        (top_up_twice, invariants.every_line_holds_exactly_the_data_of_its_completed_orders),
        (leave_an_order_waiting, invariants.every_accepted_order_ended_in_a_terminal_state),
        (
            refund_without_reason,
            invariants.every_refund_belongs_to_a_failed_top_up_or_a_late_capture,
        ),
        (drop_the_outbox, invariants.no_outbox_row_is_left_unpublished),
        (leave_outbox_rows, invariants.no_outbox_row_is_left_unpublished),
        (
            drop_a_ledger,
            invariants.every_completed_order_has_exactly_one_applied_top_up_and_no_other_order_any,
        ),
    ],
    ids=lambda case: getattr(case, "__name__", ""),
)
def test_each_invariant_reports_its_violation(
    break_it: Callable[[Tables], None], violated: invariants.Check
) -> None:
    snapshot, plan = a_consistent_world()
    broken = Snapshot(copy.deepcopy(snapshot.tables), snapshot.dead_letters)
    break_it(broken.tables)
    assert violated.__name__ in every_violation(broken, plan)


def test_money_kept_for_an_order_that_did_not_complete_is_reported() -> None:
    snapshot, plan = a_consistent_world()
    refunds = snapshot.tables["stripe_simulator"]["refunds"]
    assert refunds is not None
    refunds.clear()
    found = every_violation(snapshot, plan)
    assert "captured_minus_refunded_equals_the_completed_totals_per_currency" in found
    assert "every_refund_belongs_to_a_failed_top_up_or_a_late_capture" in found


def test_a_request_answered_twice_or_never_is_reported() -> None:
    snapshot, plan = a_consistent_world()
    snapshot.tables["orders"]["rejected_requests"] = [
        {"request_id": CARD.request_id, "reason": "unknown_package"}
    ]
    plan.requests.append(Request(Kind.CARD, order_request()))
    [twice, never] = every_violation(snapshot, plan)[
        "every_request_got_exactly_one_order_or_one_rejection"
    ]
    assert "2 answers" in twice
    assert "0 answers" in never


def test_a_malformed_message_not_dead_lettered_and_a_saga_message_dead_lettered_are_reported() -> (
    None
):
    snapshot, plan = a_consistent_world()
    saga_message = DeadLetter(
        "payments.events.v1.dlt",
        json.dumps({"type": "PaymentCaptured"}).encode(),
        {"dlq.reason": "retries_exhausted", "dlq.source.topic": "payments.events.v1",
         "dlq.source.partition": "1", "dlq.source.offset": "3"},
    )  # fmt: skip
    found = every_violation(Snapshot(snapshot.tables, [saga_message]), plan)
    assert "every_malformed_message_is_in_its_dead_letter_topic" in found
    assert "no_well_formed_message_was_dead_lettered" in found
