"""Provisioning at handler level: its router in a fresh in-memory broker, its tables in a
temporary SQLite file, a clock the test moves, and the carrier simulator (its own ledger)
reached through the real adapter (tests/unit/carrier_fixtures.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from services.provisioning import db, handlers, provisioning
from services.provisioning.balances import Balance, StackingRule
from services.provisioning.carrier import Applied
from services.provisioning.provisioning import PROVISIONER, Provisioner
from services.provisioning.retrier import settle_due
from services.provisioning.topup_states import RetryPolicy, TopUpStatus
from shared import topics
from shared.events import TopUpLine
from tests.clock import Clock
from tests.unit.carrier_fixtures import SimulatedCarrier, simulated_carrier
from tests.unit.harness import InMemoryService, in_memory_service, running

ICCID = "8944500102198304826"
SUSPENDED = "8944500102198304834"
START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
POLICY = RetryPolicy(
    max_attempts=3, backoff_base_s=10, backoff_max_s=60, grace_s=30, in_flight_s=20
)
CARRIER_PACKAGE = "eurolink-7days-1gb-topup"  # eu-1gb-7d's, by the catalog
# Long enough for a first request on a busy machine (a token, a SQLite commit), short
# enough that the timeout tests stay quick.
CLIENT_TIMEOUT_S = 0.5


@dataclass
class Provisioning:
    service: InMemoryService
    carrier: SimulatedCarrier
    provisioner: Provisioner
    clock: Clock
    events: list[dict[str, Any]]

    async def top_up(self, command: TopUpLine) -> None:
        await self.service.send(topics.PROVISIONING_COMMANDS, command)

    async def retrier_pass(self, after_s: float = 0.0) -> int:
        self.clock.advance(after_s)
        due = await settle_due(self.service.sessions, self.provisioner)
        await self.service.relay()  # what the outbox relay does after the pass commits
        return due

    async def topup(self, command: TopUpLine) -> db.TopUp:
        async with self.service.sessions() as session:
            found = await db.find_topup(session, command.idempotency_key)
        assert found is not None
        return found

    async def balance(self) -> Balance | None:
        async with self.service.sessions() as session:
            return await db.balance_of(session, ICCID)

    async def carrier_orders(self, command: TopUpLine) -> int:
        """How many top-up orders the carrier's ledger holds for the command's key."""
        return len(await self.carrier.orders(description=command.idempotency_key))


@asynccontextmanager
async def rig_with(
    tmp_path: Path, rule: StackingRule, *, over_sockets: bool = False
) -> AsyncIterator[Provisioning]:
    async with (
        in_memory_service("provisioning", handlers.router, db.metadata, tmp_path) as service,
        simulated_carrier(
            tmp_path,
            timeout_s=CLIENT_TIMEOUT_S,
            carrier_hang_s=CLIENT_TIMEOUT_S * 3,
            carrier_suspended_iccids={SUSPENDED},
            over_sockets=over_sockets,
        ) as carrier,
    ):
        clock = Clock(START)
        provisioner = Provisioner(carrier.adapter, rule, POLICY, clock)
        service.broker.context.set_global(PROVISIONER, provisioner)
        events = service.watch(topics.PROVISIONING_EVENTS)
        async with running(service.broker):
            yield Provisioning(service, carrier, provisioner, clock, events)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Provisioning]:
    async with rig_with(tmp_path, StackingRule.EXTEND) as built:
        yield built


def top_up_line(
    iccid: str = ICCID, data_mb: int | None = 1024, bonus_mb: int = 0, **package: Any
) -> TopUpLine:
    order_id = uuid.uuid4()
    return TopUpLine(
        order_id=order_id, iccid=iccid, package_id="eu-1gb-7d", data_mb=data_mb,
        bonus_mb=bonus_mb, validity_days=package.pop("validity_days", 7),
        idempotency_key=f"{order_id}:topup", **package,
    )  # fmt: skip


def days(n: int) -> datetime:
    return START + timedelta(days=n)


async def test_a_top_up_adds_the_package_and_its_bonus_and_tells_orders(
    rig: Provisioning,
) -> None:
    command = top_up_line(bonus_mb=100)
    await rig.top_up(command)
    assert [(e["type"], e["order_id"]) for e in rig.events] == [
        ("LineToppedUp", str(command.order_id))
    ]
    assert rig.events[0]["data_mb"] == 1124
    assert rig.events[0]["data_remaining_mb"] == 1124
    assert datetime.fromisoformat(rig.events[0]["valid_until"]) == days(7)
    assert await rig.balance() == Balance(1124, days(7))
    topup = await rig.topup(command)
    assert (topup.status, topup.attempts, topup.applied_at) == (TopUpStatus.APPLIED, 1, START)


async def test_a_repeated_command_is_applied_once_and_gets_the_very_same_answer(
    rig: Provisioning,
) -> None:
    command = top_up_line()
    await rig.top_up(command)
    rig.clock.advance(60)
    await rig.top_up(command.model_copy(update={"event_id": uuid.uuid4()}))
    assert len(rig.events) == 2
    assert rig.events[0] == rig.events[1]
    assert await rig.balance() == Balance(1024, days(7))
    assert await rig.carrier_orders(command) == 1
    assert rig.carrier.top_up_requests() == 1


async def test_a_repeated_command_while_the_first_is_retrying_is_not_answered_yet(
    rig: Provisioning,
) -> None:
    rig.carrier.behaviour.transient_failure_rate = 1.0
    command = top_up_line()
    await rig.top_up(command)
    await rig.top_up(command)
    assert rig.events == []
    assert (await rig.topup(command)).attempts == 1


async def test_two_top_ups_of_a_valid_line_add_up_and_extend_from_its_expiry(
    rig: Provisioning,
) -> None:
    await rig.top_up(top_up_line())
    rig.clock.advance(timedelta(days=2).total_seconds())
    await rig.top_up(top_up_line(data_mb=5120, validity_days=30))
    assert await rig.balance() == Balance(6144, days(37))
    assert rig.events[-1]["data_remaining_mb"] == 6144


async def test_the_reset_rule_forfeits_what_was_left(tmp_path: Path) -> None:
    async with rig_with(tmp_path, StackingRule.RESET) as rig:
        await rig.top_up(top_up_line())
        rig.clock.advance(timedelta(days=2).total_seconds())
        second = top_up_line(data_mb=5120, validity_days=30)
        await rig.top_up(second)
        assert await rig.balance() == Balance(5120, days(32))
        assert (await rig.topup(second)).status is TopUpStatus.APPLIED


async def test_an_unlimited_package_reports_no_data_figures(rig: Provisioning) -> None:
    await rig.top_up(top_up_line(data_mb=None, fair_use_mb=20_000, validity_days=30))
    event = rig.events[0]
    assert (event["type"], event["data_mb"], event["data_remaining_mb"]) == (
        "LineToppedUp", None, None,
    )  # fmt: skip
    assert await rig.balance() == Balance(0, days(30), days(30), 20_000)


async def test_a_suspended_line_fails_for_good_without_retrying(rig: Provisioning) -> None:
    command = top_up_line(iccid=SUSPENDED)
    await rig.top_up(command)
    assert len(rig.events) == 1
    failed = rig.events[0]
    assert (failed["type"], failed["reason"], failed["attempts"]) == (
        "TopUpFailed", "line_suspended", 1,
    )  # fmt: skip
    assert failed["message"] == "the carrier no longer tops this line up"
    assert await rig.retrier_pass(after_s=3600) == 0
    assert (await rig.carrier_orders(command), rig.carrier.top_up_requests()) == (0, 1)


async def test_a_line_the_carrier_does_not_know_fails_as_line_unknown(rig: Provisioning) -> None:
    await rig.top_up(top_up_line(iccid="1944500102198304823"))
    assert [(e["type"], e["reason"]) for e in rig.events] == [("TopUpFailed", "line_unknown")]


async def test_a_transient_failure_is_retried_after_its_backoff_and_then_applied(
    rig: Provisioning,
) -> None:
    rig.carrier.behaviour.transient_failure_rate = 1.0
    command = top_up_line()
    await rig.top_up(command)
    retrying = await rig.topup(command)
    assert (retrying.status, retrying.attempts) == (TopUpStatus.RETRYING, 1)
    assert retrying.last_error is not None
    assert retrying.last_error.startswith("carrier unavailable")
    assert await rig.retrier_pass(after_s=9) == 0  # backoff after attempt 1: 10 s
    assert await rig.retrier_pass(after_s=1) == 1  # attempt 2 fails too: 20 s
    assert await rig.retrier_pass(after_s=19) == 0
    rig.carrier.behaviour.transient_failure_rate = 0.0
    assert await rig.retrier_pass(after_s=1) == 1
    applied = await rig.topup(command)
    assert (applied.status, applied.attempts, applied.last_error) == (TopUpStatus.APPLIED, 3, None)
    assert [e["type"] for e in rig.events] == ["LineToppedUp"]
    assert await rig.balance() == Balance(1024, START + timedelta(seconds=30, days=7))


async def test_the_last_attempt_failing_gives_up_with_retries_exhausted(
    rig: Provisioning,
) -> None:
    rig.carrier.behaviour.transient_failure_rate = 1.0
    command = top_up_line()
    await rig.top_up(command)
    await rig.retrier_pass(after_s=10)
    await rig.retrier_pass(after_s=20)
    assert [(e["type"], e["reason"], e["attempts"]) for e in rig.events] == [
        ("TopUpFailed", "retries_exhausted", 3)
    ]
    assert rig.events[0]["message"].startswith("no top-up after 3 attempts")
    assert await rig.retrier_pass(after_s=3600) == 0
    assert await rig.balance() is None


async def test_a_timed_out_top_up_that_was_applied_is_settled_by_asking_not_by_sending_again(
    rig: Provisioning,
) -> None:
    rig.carrier.behaviour.timeout_rate = 1.0
    rig.carrier.behaviour.timeout_applied_rate = 1.0
    command = top_up_line()
    await rig.top_up(command)
    assert rig.events == []
    assert (await rig.topup(command)).status is TopUpStatus.UNKNOWN
    rig.carrier.behaviour.timeout_rate = 0.0
    assert await rig.retrier_pass(after_s=10) == 1
    assert [e["type"] for e in rig.events] == ["LineToppedUp"]
    assert (await rig.carrier_orders(command), rig.carrier.top_up_requests()) == (1, 1)
    assert (await rig.topup(command)).attempts == 1
    assert await rig.balance() == Balance(1024, START + timedelta(seconds=10, days=7))


async def test_a_timed_out_top_up_the_carrier_never_received_is_sent_again_with_its_key(
    rig: Provisioning,
) -> None:
    rig.carrier.behaviour.timeout_rate = 1.0
    rig.carrier.behaviour.timeout_applied_rate = 0.0
    command = top_up_line()
    await rig.top_up(command)
    rig.carrier.behaviour.timeout_rate = 0.0
    await rig.retrier_pass(after_s=10)  # not found, but sent 10 s ago: it may still land
    assert (await rig.topup(command)).status is TopUpStatus.UNKNOWN
    await rig.retrier_pass(after_s=POLICY.in_flight_s - 10)  # not found, and it cannot land
    assert (await rig.topup(command)).status is TopUpStatus.RETRYING
    await rig.retrier_pass()  # sent again at once
    assert [e["type"] for e in rig.events] == ["LineToppedUp"]
    assert (await rig.carrier_orders(command), rig.carrier.top_up_requests()) == (1, 2)
    assert (await rig.topup(command)).attempts == 2


async def test_a_top_up_still_on_its_way_through_the_carrier_is_not_sent_again(
    tmp_path: Path,
) -> None:
    async with rig_with(tmp_path, StackingRule.EXTEND, over_sockets=True) as rig:
        await rig.carrier.adapter.status("warm-up:topup", ICCID)  # the token, fetched fast
        rig.carrier.behaviour.latency_ms = 2000  # 1-3 s: the client gives up before
        command = top_up_line()
        await rig.top_up(command)
        assert (await rig.topup(command)).status is TopUpStatus.UNKNOWN
        rig.carrier.behaviour.latency_ms = 0
        await rig.retrier_pass(after_s=10)  # asked before the carrier placed it: not found
        assert await rig.carrier_orders(command) == 0
        assert (await rig.topup(command)).status is TopUpStatus.UNKNOWN
        for _ in range(500):  # the carrier places it, late
            if await rig.carrier_orders(command):
                break
            await asyncio.sleep(0.01)
        await rig.retrier_pass(after_s=POLICY.in_flight_s)
        assert [e["type"] for e in rig.events] == ["LineToppedUp"]
        assert (await rig.carrier_orders(command), rig.carrier.top_up_requests()) == (1, 1)


async def test_an_unknown_top_up_stays_unknown_while_the_carrier_cannot_say(
    rig: Provisioning,
) -> None:
    rig.carrier.behaviour.timeout_rate = 1.0
    command = top_up_line()
    await rig.top_up(command)
    rig.carrier.behaviour.transient_failure_rate = 1.0
    for _ in range(POLICY.max_attempts + 2):
        await rig.retrier_pass(after_s=POLICY.backoff_max_s)
    unknown = await rig.topup(command)
    assert (unknown.status, unknown.attempts) == (TopUpStatus.UNKNOWN, 1)
    assert unknown.last_error is not None
    assert unknown.last_error.startswith("carrier status not available")
    assert rig.events == []


async def test_a_top_up_left_new_by_a_crash_is_asked_about_after_the_grace_period(
    rig: Provisioning,
) -> None:
    command = top_up_line()
    # The first delivery reached the carrier, then the process died before recording it.
    async with rig.service.sessions.begin() as session:
        await db.insert_topup(session, command, START, START + timedelta(seconds=30))
    await rig.carrier.adapter.top_up(command.idempotency_key, ICCID, CARRIER_PACKAGE)
    assert await rig.retrier_pass(after_s=29) == 0
    assert await rig.retrier_pass(after_s=1) == 1
    assert [e["type"] for e in rig.events] == ["LineToppedUp"]
    assert (await rig.carrier_orders(command), rig.carrier.top_up_requests()) == (1, 1)


async def test_a_claimed_top_up_is_not_claimed_again_while_it_is_worked_on(
    rig: Provisioning,
) -> None:
    rig.carrier.behaviour.transient_failure_rate = 1.0
    await rig.top_up(top_up_line())
    rig.clock.advance(10)
    first = await provisioning.claim_due(rig.service.sessions, rig.provisioner)
    second = await provisioning.claim_due(rig.service.sessions, rig.provisioner)
    assert (len(first), len(second)) == (1, 0)


async def test_a_retry_whose_sender_died_mid_call_is_asked_about_not_sent_again(
    rig: Provisioning,
) -> None:
    rig.carrier.behaviour.transient_failure_rate = 1.0
    command = top_up_line()
    await rig.top_up(command)
    rig.carrier.behaviour.transient_failure_rate = 0.0
    rig.clock.advance(10)
    # One instance claims the retry and sends it; the carrier places it; the instance dies.
    [claimed] = await provisioning.claim_due(rig.service.sessions, rig.provisioner)
    assert claimed.status is TopUpStatus.RETRYING
    await rig.carrier.adapter.top_up(command.idempotency_key, ICCID, CARRIER_PACKAGE)
    assert (await rig.topup(command)).status is TopUpStatus.UNKNOWN
    assert await rig.retrier_pass(after_s=POLICY.grace_s) == 1  # its lease ran out: asked
    assert [e["type"] for e in rig.events] == ["LineToppedUp"]
    assert (await rig.carrier_orders(command), rig.carrier.top_up_requests()) == (1, 2)


async def test_a_late_outcome_for_a_settled_top_up_changes_nothing(rig: Provisioning) -> None:
    command = top_up_line()
    await rig.top_up(command)
    async with rig.service.sessions.begin() as session:
        late = await provisioning.record_outcome(
            session, rig.provisioner, command.idempotency_key, Applied("again"), sent=True
        )
    assert late == []
    assert await rig.balance() == Balance(1024, days(7))
    assert (await rig.topup(command)).attempts == 1


async def test_a_top_up_moved_on_by_someone_else_meanwhile_is_left_to_them(
    rig: Provisioning,
) -> None:
    rig.carrier.behaviour.transient_failure_rate = 1.0
    command = top_up_line()
    await rig.top_up(command)
    stale = await rig.topup(command)
    async with rig.service.sessions.begin() as session:
        await session.execute(
            update(db.topups)
            .where(db.topups.c.idempotency_key == command.idempotency_key)
            .values(attempts=2)
        )
    async with rig.service.sessions.begin() as session:
        assert not await db.mark(session, stale, START, status=TopUpStatus.APPLIED)
        count = await session.scalar(
            select(func.count()).select_from(db.topups).where(db.topups.c.status == "APPLIED")
        )
    assert count == 0


async def test_a_package_the_catalog_maps_to_no_carrier_package_fails_without_a_call(
    rig: Provisioning,
) -> None:
    command = top_up_line().model_copy(update={"package_id": "not-in-the-catalog"})
    await rig.top_up(command)
    assert [(e["type"], e["reason"]) for e in rig.events] == [("TopUpFailed", "package_unknown")]
    assert rig.carrier.top_up_requests() == 0


async def test_a_rate_limited_carrier_is_not_called_again_before_its_retry_after(
    rig: Provisioning,
) -> None:
    await rig.carrier.adapter.usage(ICCID)  # the token first
    rig.carrier.behaviour.rate_limit_per_s = 1
    await rig.carrier.adapter.usage(ICCID)  # the one request of this second
    command = top_up_line()
    await rig.top_up(command)
    retrying = await rig.topup(command)
    assert retrying.status is TopUpStatus.RETRYING
    assert retrying.last_error is not None
    assert "429" in retrying.last_error
