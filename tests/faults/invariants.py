"""Issue 4, "Nothing lost, nothing doubled", as checks over what the stack left behind.

Each check returns every violation it finds (none when it holds), so one run shows all
that is wrong, not the first thing. A table or topic a check needs and does not find is
a violation too: a missing outbox is not an empty one.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable

from deploy.local.processes import SERVICES
from tests.faults.load import ALLOWED_ENDINGS, Kind, LoadPlan
from tests.faults.state import TERMINAL_STATES, MissingTable, Snapshot

Check = Callable[[Snapshot, LoadPlan], list[str]]


def every_violation(snapshot: Snapshot, plan: LoadPlan) -> dict[str, list[str]]:
    """Check name -> its violations, for the checks that found any."""
    found: dict[str, list[str]] = {}
    for check in CHECKS:
        try:
            violations = check(snapshot, plan)
        except MissingTable as missing:
            violations = [f"cannot check: {missing}"]
        if violations:
            found[check.__name__] = violations
    return found


def every_request_got_exactly_one_order_or_one_rejection(
    snapshot: Snapshot, plan: LoadPlan
) -> list[str]:
    placed = Counter(row["request_id"] for row in snapshot.table("orders", "orders"))
    refused = {r["request_id"]: r["reason"] for r in snapshot.table("orders", "rejected_requests")}
    wrong = []
    for request in plan.requests:
        rid = request.request_id
        answers = placed[rid] + (rid in refused)
        if answers != 1:
            wrong.append(f"{rid} ({request.kind}) got {answers} answers")
        elif request.rejection is not None and refused.get(rid) != request.rejection:
            wrong.append(f"{rid} should be rejected {request.rejection}, got {refused.get(rid)}")
        elif request.rejection is None and rid in refused:
            wrong.append(f"{rid} ({request.kind}) was rejected: {refused[rid]}")
    return wrong


def every_accepted_order_ended_in_a_terminal_state(
    snapshot: Snapshot, _plan: LoadPlan
) -> list[str]:
    return [
        f"{row['order_id']} is still {row['state']}"
        for row in snapshot.table("orders", "orders")
        if row["state"] not in TERMINAL_STATES
    ]


def every_order_ended_where_its_payment_and_line_allow(
    snapshot: Snapshot, plan: LoadPlan
) -> list[str]:
    """A declined card is never charged, a suspended line never topped up, and so on."""
    state = {row["request_id"]: row["state"] for row in snapshot.table("orders", "orders")}
    return [
        f"{r.request_id} ({r.kind}) ended {state[r.request_id]}"
        for r in plan.requests
        if r.kind is not Kind.INVALID
        and state.get(r.request_id) in TERMINAL_STATES
        and state[r.request_id] not in ALLOWED_ENDINGS[r.kind]
    ]


def every_completed_order_has_exactly_one_applied_top_up_and_no_other_order_any(
    snapshot: Snapshot, _plan: LoadPlan
) -> list[str]:
    orders = snapshot.table("orders", "orders")
    at_carrier = Counter(
        _order_of(row["key"])
        for row in snapshot.table("carrier_simulator", "carrier_topup_orders")
        if row["outcome"] == "applied"
    )
    in_provisioning = Counter(
        row["order_id"]
        for row in snapshot.table("provisioning", "topups")
        if row["status"] == "APPLIED"
    )
    wrong = []
    for row in orders:
        expected = 1 if row["state"] == "COMPLETED" else 0
        carrier, ours = at_carrier[row["order_id"]], in_provisioning[row["order_id"]]
        if (carrier, ours) != (expected, expected):
            wrong.append(
                f"{row['order_id']} {row['state']}: applied {carrier}x by the carrier, "
                f"{ours}x by provisioning (expected {expected})"
            )
    known = {row["order_id"] for row in orders}
    return wrong + [f"top-up applied for no order: {o}" for o in at_carrier if o not in known]


def every_line_holds_exactly_the_data_of_its_completed_orders(
    snapshot: Snapshot, _plan: LoadPlan
) -> list[str]:
    """A top-up applied twice to provisioning's balance shows here even when the carrier
    was asked once (every order of the load but the suspended ones has a line of its own)."""
    metered: dict[str, int] = defaultdict(int)
    fair_use: dict[str, int] = defaultdict(int)
    for row in snapshot.table("orders", "orders"):
        if row["state"] != "COMPLETED":
            continue
        if row["data_mb"] is not None:
            metered[row["iccid"]] += row["data_mb"] + row["bonus_mb"]
        else:
            fair_use[row["iccid"]] += (row["fair_use_mb"] or 0) + row["bonus_mb"]
    balances = {row["iccid"]: row for row in snapshot.table("provisioning", "lines")}
    wrong = []
    for iccid in set(metered) | set(fair_use) | set(balances):
        line = balances.get(iccid, {"data_remaining_mb": 0, "fair_use_remaining_mb": None})
        if line["data_remaining_mb"] != metered.get(iccid, 0):
            wrong.append(
                f"line {iccid} holds {line['data_remaining_mb']} MB, "
                f"its orders paid for {metered.get(iccid, 0)} MB"
            )
        if iccid in fair_use and line["fair_use_remaining_mb"] != fair_use[iccid]:
            wrong.append(
                f"line {iccid} has {line['fair_use_remaining_mb']} MB of fair use, "
                f"its orders paid for {fair_use[iccid]} MB"
            )
    return wrong


def the_provider_charged_no_order_twice_and_the_carrier_topped_up_no_line_twice(
    snapshot: Snapshot, _plan: LoadPlan
) -> list[str]:
    """The ledgers are keyed by idempotency key, so one key cannot be applied twice there;
    what can happen is an order charged, or a line topped up, under a second key."""
    charges = snapshot.table("stripe_simulator", "payment_intents")
    captured = Counter(
        _order_of(row["idempotency_key"])
        for row in charges
        if row["status"] in ("captured", "refunded")
    )
    applied = Counter(
        row["iccid"]
        for row in snapshot.table("carrier_simulator", "carrier_topup_orders")
        if row["outcome"] == "applied"
    )
    return (
        [f"order {order} captured {n}x" for order, n in captured.items() if n > 1]
        + [f"line {iccid} topped up {n}x" for iccid, n in applied.items() if n > 1]
        + [
            f"charge under {row['idempotency_key']}, not an order's charge key"
            for row in charges
            if not row["idempotency_key"].endswith(":charge")
        ]
    )


def captured_minus_refunded_equals_the_completed_totals_per_currency(
    snapshot: Snapshot, _plan: LoadPlan
) -> list[str]:
    kept = Counter[str]()
    for row in snapshot.table("stripe_simulator", "payment_intents"):
        if row["status"] in ("captured", "refunded"):  # a refunded charge was captured first
            kept[row["currency"]] += row["amount_minor"]
    for row in snapshot.table("stripe_simulator", "refunds"):
        if row["status"] == "refunded":
            kept[row["currency"]] -= row["amount_minor"]
    owed = Counter[str]()
    for row in snapshot.table("orders", "orders"):
        if row["state"] == "COMPLETED":
            owed[row["currency"]] += row["total_minor"]
    return [
        f"{currency}: the provider kept {kept[currency]}, completed orders total {owed[currency]}"
        for currency in sorted(set(kept) | set(owed))
        if kept[currency] != owed[currency]
    ]


def every_refund_belongs_to_a_failed_top_up_or_a_late_capture(
    snapshot: Snapshot, _plan: LoadPlan
) -> list[str]:
    orders = {row["order_id"]: row for row in snapshot.table("orders", "orders")}
    compensated = {
        row["order_id"]
        for row in snapshot.table("orders", "order_transitions")
        if row["to_state"] == "REFUND_PENDING" and row["from_state"] in ("TOPUP_PENDING", "EXPIRED")
    }
    refunds = Counter[str]()
    wrong = []
    for refund in snapshot.table("stripe_simulator", "refunds"):
        if refund["status"] != "refunded":
            continue  # refused by the provider: no money moved
        order_id = _order_of(refund["charge_key"])
        refunds[order_id] += 1
        order = orders.get(order_id)
        if order is None:
            wrong.append(f"{refund['idempotency_key']} refunds no order")
        elif order["state"] != "REFUNDED" or order_id not in compensated:
            wrong.append(
                f"{order_id} was refunded but is {order['state']}, and neither did "
                f"its top-up fail nor was it captured after it expired"
            )
        elif refund["amount_minor"] != order["captured_minor"]:
            wrong.append(
                f"{order_id}: refunded {refund['amount_minor']}, captured {order['captured_minor']}"
            )
    return wrong + [
        f"{order_id} is REFUNDED, with {refunds[order_id]} refunds at the provider"
        for order_id, order in orders.items()
        if order["state"] == "REFUNDED" and refunds[order_id] != 1
    ]


def no_outbox_row_is_left_unpublished(snapshot: Snapshot, _plan: LoadPlan) -> list[str]:
    wrong = []
    for database in SERVICES:  # the simulators are the outside world: no outbox of ours
        rows = snapshot.rows(database, "outbox")
        if rows is None:
            # Without it, a crash between commit and publish loses the message.
            wrong.append(f"the {database} database has no `outbox` table")
        elif rows[0]["unpublished"]:
            wrong.append(f"the {database} outbox holds {rows[0]['unpublished']} unpublished rows")
    return wrong


def every_malformed_message_is_in_its_dead_letter_topic(
    snapshot: Snapshot, plan: LoadPlan
) -> list[str]:
    wrong = [f"dead-letter topic {t} does not exist" for t in snapshot.missing_dead_letter_topics]
    for bad in plan.malformed:
        letter = next((d for d in snapshot.dead_letters if bad.marker.encode() in d.value), None)
        what = f"{bad.marker} ({bad.flaw} on {bad.topic})"
        if letter is None:
            wrong.append(f"{what} is in no dead-letter topic")
        elif letter.topic != f"{bad.topic}.dlt":
            wrong.append(f"{what} landed on {letter.topic}")
        elif (source := letter.came_from()) is None or source[0] != bad.topic:
            wrong.append(f"{what} lacks its dlq.source.* headers: {letter.headers}")
        elif not (letter.headers.get("dlq.reason") and letter.headers.get("dlq.error")):
            wrong.append(f"{what} lacks its dlq.reason/dlq.error headers: {letter.headers}")
    return wrong


def no_well_formed_message_was_dead_lettered(snapshot: Snapshot, plan: LoadPlan) -> list[str]:
    """A message of the saga on a dead-letter topic is a step some order never took."""
    markers = [bad.marker.encode() for bad in plan.malformed]
    wrong = []
    for letter in snapshot.dead_letters:
        if any(marker in letter.value for marker in markers):
            continue
        source = letter.came_from()
        if source is not None and source[2] < snapshot.source_offsets_before.get(source[:2], 0):
            continue  # a message from before this run (an earlier test on the same broker)
        wrong.append(
            f"on {letter.topic} ({letter.headers.get('dlq.reason')}): "
            f"{letter.headers.get('dlq.error', '')[:200]}"
        )
    return wrong


CHECKS: tuple[Check, ...] = (
    every_request_got_exactly_one_order_or_one_rejection,
    every_accepted_order_ended_in_a_terminal_state,
    every_order_ended_where_its_payment_and_line_allow,
    every_completed_order_has_exactly_one_applied_top_up_and_no_other_order_any,
    every_line_holds_exactly_the_data_of_its_completed_orders,
    the_provider_charged_no_order_twice_and_the_carrier_topped_up_no_line_twice,
    captured_minus_refunded_equals_the_completed_totals_per_currency,
    every_refund_belongs_to_a_failed_top_up_or_a_late_capture,
    no_outbox_row_is_left_unpublished,
    every_malformed_message_is_in_its_dead_letter_topic,
    no_well_formed_message_was_dead_lettered,
)


def _order_of(idempotency_key: str) -> str:
    """`{order_id}:charge` -> order_id."""
    return idempotency_key.split(":", 1)[0]
