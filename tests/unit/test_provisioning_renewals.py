"""Auto-renewal at handler level: provisioning's router in a fresh in-memory broker, its
read API over the same SQLite file, and a clock the test moves. The alerts are raised
here as usage.py raises them: `on_alerts_raised` in the transaction, its orders staged."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from services.provisioning import renewals
from services.provisioning.renewal_policy import RenewalPolicy
from services.provisioning.renewals import renewal_request_id
from shared import topics
from shared.audit import AUDIT_TOPIC
from shared.events import (
    LineAlertRaised,
    Message,
    OrderCompleted,
    OrderPaymentFailed,
    OrderRejected,
    TopUpLine,
    UsageReported,
    order_id_for,
)
from shared.logs import mask
from shared.outbox import outbox, stage
from tests.credentials import READER
from tests.factories import auto_renewal_settings, random_iccid
from tests.unit.provisioning_fixtures import ProvisioningUnderTest, provisioning_under_test

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
POLICY = RenewalPolicy(max_attempts=2, retry_delay_s=60)
SETTINGS = auto_renewal_settings()


@dataclass
class Renewals(ProvisioningUnderTest):
    iccid: str
    cycle: uuid.UUID  # the order whose top-up started the line's current package cycle

    async def top_up(self) -> uuid.UUID:
        """Top the line up; that top-up's order starts the line's package cycle."""
        order_id = uuid.uuid4()
        command = TopUpLine(
            order_id=order_id, iccid=self.iccid, package_id="eu-1gb-7d", data_mb=1024,
            validity_days=7, idempotency_key=f"{order_id}:topup",
        )  # fmt: skip
        await self.service.send(topics.PROVISIONING_COMMANDS, command)
        self.cycle = order_id
        return order_id

    async def opt_in(self, **overrides: str) -> httpx.Response:
        body = json.dumps({**SETTINGS, **overrides})  # ASCII: a lone surrogate as an escape
        return await self.http.put(
            f"/lines/{self.iccid}/auto-renewal",
            content=body,
            headers={"content-type": "application/json"},
        )

    async def opt_out(self) -> httpx.Response:
        return await self.http.delete(f"/lines/{self.iccid}/auto-renewal")

    async def settings(self) -> dict[str, Any]:
        response = await self.http.get(f"/lines/{self.iccid}/auto-renewal")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def cross(self, alert: str = "data_used_90") -> None:
        """The line crosses `alert` in its cycle: recorded and staged in one transaction."""
        raised = LineAlertRaised(
            order_id=self.cycle, iccid=self.iccid, alert=alert, kind="data_used",
            cycle_started_at=START, data_quota_mb=1024, data_used_mb=950,
            data_remaining_mb=74, valid_until=START + timedelta(days=7),
        )  # fmt: skip
        async with self.service.sessions.begin() as session:
            outgoing = await renewals.on_alerts_raised(
                session, self.provisioner, [raised], self.clock()
            )
            await stage(session, outgoing)
        await self.service.relay()

    async def use(self, report: UsageReported) -> None:
        """The carrier reports usage (usage.py counts it and raises what it crossed)."""
        await self.service.send(topics.CARRIER_USAGE, report)

    async def answer(self, event: Message) -> None:
        """Orders publishes the outcome of a renewal order."""
        await self.service.send(topics.ORDERS_EVENTS, event)

    async def sweep(self, after_s: float) -> int:
        self.clock.advance(after_s)
        placed = await renewals.place_due(self.service.sessions, self.provisioner)
        await self.service.relay()
        return placed

    def request_id(self, attempt: int, alert: str = "data_used_90") -> str:
        return renewal_request_id(self.iccid, self.cycle, alert, attempt)

    def declined(self, attempt: int) -> OrderPaymentFailed:
        request_id = self.request_id(attempt)
        return OrderPaymentFailed(
            order_id=order_id_for(request_id), iccid=self.iccid, request_id=request_id,
            reason="insufficient_funds", message="the card was declined",
        )  # fmt: skip

    def completed(self, attempt: int) -> OrderCompleted:
        request_id = self.request_id(attempt)
        return OrderCompleted(
            order_id=order_id_for(request_id), iccid=self.iccid, request_id=request_id,
            data_mb=1024, valid_until=START + timedelta(days=14),
        )  # fmt: skip


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Renewals]:
    async with provisioning_under_test(tmp_path, START, renewal=POLICY) as provisioning:
        built = Renewals(**vars(provisioning), iccid=random_iccid(), cycle=uuid.uuid4())
        await built.top_up()
        yield built


# --- the API --------------------------------------------------------------------------


async def test_opting_in_saves_the_settings_and_shows_them_masked(rig: Renewals) -> None:
    response = await rig.opt_in()
    assert response.status_code == 200, response.text
    assert "tok_visa_4242" not in response.text
    shown = await rig.settings()
    assert (shown["status"], shown["alert"], shown["package_id"]) == (
        "active", "data_used_90", "eu-1gb-7d",
    )  # fmt: skip
    assert shown["payment_token"] == "****4242"
    assert shown["msisdn"] == "+44********23"
    assert shown["email"] == "t***@example.com"
    assert shown["renewal_orders"] == []


async def test_a_line_that_never_opted_in_shows_auto_renewal_off(rig: Renewals) -> None:
    shown = await rig.settings()
    assert (shown["status"], shown["payment_token"], shown["renewal_orders"]) == ("off", None, [])


async def test_opting_out_turns_auto_renewal_off(rig: Renewals) -> None:
    await rig.opt_in()
    response = await rig.opt_out()
    assert response.status_code == 200
    assert response.json()["status"] == "off"
    assert (await rig.settings())["status"] == "off"


@pytest.mark.parametrize(
    ("headers", "status", "says"),
    [
        ({"Authorization": ""}, 401, "missing bearer token"),
        ({"Authorization": "Bearer not-a-token"}, 401, "unknown token"),
        (READER, 403, "storefront may not do this: it needs the scope 'auto-renewal'"),
    ],
)
async def test_changing_auto_renewal_needs_a_token_with_the_auto_renewal_scope(
    rig: Renewals, headers: dict[str, str], status: int, says: str
) -> None:
    path = f"/lines/{rig.iccid}/auto-renewal"
    put = await rig.http.put(path, json=SETTINGS, headers=headers)
    delete = await rig.http.delete(path, headers=headers)
    assert (put.status_code, delete.status_code) == (status, status)
    assert says in put.json()["detail"]
    assert (await rig.settings())["status"] == "off"
    assert await audit_records(rig) == []


async def test_who_sets_and_stops_auto_renewal_is_kept_and_audited(rig: Renewals) -> None:
    await rig.opt_in()
    assert (await rig.settings())["updated_by"] == "care"
    await rig.opt_out()
    records = await audit_records(rig)
    assert [(r["operator"], r["action"], r["outcome"]) for r in records] == [
        ("care", "auto_renewal.set", "ok"),
        ("care", "auto_renewal.stop", "ok"),
    ]
    assert records[0]["target"] == mask(rig.iccid)  # an audit record is read by people
    assert records[0]["detail"] == {"alert": SETTINGS["alert"], "package_id": "eu-1gb-7d"}


async def audit_records(rig: Renewals) -> list[dict[str, Any]]:
    """The audit records provisioning staged in its outbox, oldest first."""
    async with rig.service.sessions() as session:
        rows = await session.execute(
            select(outbox.c.payload).where(outbox.c.topic == AUDIT_TOPIC).order_by(outbox.c.id)
        )
    return [json.loads(payload) for (payload,) in rows]


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("alert", "data_used_50", "data_used_75, data_used_90, data_exhausted"),
        ("payment_method", "bitcoin", "'card', 'paypal', 'alipay' or 'wechat_pay'"),
        ("payment_token", "4242 4242 4242 4242", "never a card number"),
        ("payment_token", "4242.4242.4242.4242", "never a card number"),
        ("payment_token", "4242/4242/4242/4242", "never a card number"),
        ("payment_token", "tok_4242424242424242", "never a card number"),
        ("payment_token", "4242x4242x4242x4242", "never a card number"),
        ("payment_token", "4242____4242____4242____4242", "never a card number"),
        ("payment_token", "14242424242424242", "never a card number"),
        ("payment_token", "tok_ok\n", "should match pattern"),
        ("payment_token", "tok\x00ok", "should match pattern"),
        ("currency", "eur", "ISO 4217"),
        ("currency", "EUR\n", "ISO 4217"),
        ("currency", "JPY", "not sold in this currency, only in"),
        ("package_id", "no-such-package", "no such package in the catalog"),
        ("package_id", "eu-5gb-30d\n", "should match pattern"),
        ("msisdn", "07700900123", "E.164"),
        ("msisdn", "+447700900123\n", "E.164"),
        ("email", "traveller-at-example.com", "email address is not valid"),
        ("email", "traveller@example.com\x00", "email address is not valid"),
        ("email", "\ud800@example.com", "a valid string"),
    ],
)
async def test_a_bad_field_is_refused_with_a_clear_message(
    rig: Renewals, field: str, value: str, says: str
) -> None:
    response = await rig.opt_in(**{field: value})
    assert response.status_code == 422
    [problem] = response.json()["detail"]
    assert problem["loc"] == ["body", field]
    assert says in problem["msg"]
    assert (await rig.settings())["status"] == "off"


async def test_an_unknown_line_is_404_and_a_malformed_iccid_422(rig: Renewals) -> None:
    unknown = random_iccid()
    put = await rig.http.put(f"/lines/{unknown}/auto-renewal", json=SETTINGS)
    assert put.status_code == 404
    assert (await rig.http.get(f"/lines/{unknown}/auto-renewal")).status_code == 404
    assert (await rig.http.delete(f"/lines/{unknown}/auto-renewal")).status_code == 404
    for malformed in ("1234", "8944500102198304826%0A", "89445001021983048261"[:18]):
        answer = await rig.http.get(f"/lines/{malformed}/auto-renewal")
        assert answer.status_code == 422, malformed
        [problem] = answer.json()["detail"]
        assert problem["loc"] == ["path", "iccid"]


# --- renewing -------------------------------------------------------------------------


async def test_crossing_the_chosen_threshold_places_exactly_one_renewal_order(
    rig: Renewals,
) -> None:
    await rig.opt_in()
    await rig.cross("data_used_75")
    assert rig.orders_commands == []
    await rig.cross("data_used_90")
    await rig.cross("data_used_90")  # the same crossing again: its request_id's row decides
    [order] = rig.orders_commands
    assert order["type"] == "PlaceOrder"
    assert order["request_id"] == rig.request_id(1)
    assert order["order_id"] == str(order_id_for(rig.request_id(1)))
    assert (order["iccid"], order["package_id"], order["payment_token"]) == (
        rig.iccid, "eu-1gb-7d", "tok_visa_4242",
    )  # fmt: skip
    [renewal] = (await rig.settings())["renewal_orders"]
    assert (renewal["request_id"], renewal["attempt"], renewal["status"]) == (
        rig.request_id(1), 1, "placed",
    )  # fmt: skip


async def test_usage_past_the_chosen_threshold_renews_once_even_when_reported_twice(
    rig: Renewals,
) -> None:
    await rig.opt_in()
    report = UsageReported(
        event_id=uuid.uuid4(),
        iccid=rig.iccid,
        used_mb=950,
        period_start=START,
        period_end=START + timedelta(hours=1),
    )
    await rig.use(report)
    await rig.use(report)  # redelivered: counted once, renewed once
    assert [o["request_id"] for o in rig.orders_commands] == [rig.request_id(1)]
    assert [e["alert"] for e in rig.line_events] == ["data_used_75", "data_used_90"]


async def test_an_opted_out_line_is_not_renewed(rig: Renewals) -> None:
    await rig.opt_in()
    await rig.opt_out()
    await rig.cross()
    assert rig.orders_commands == []
    assert (await rig.settings())["renewal_orders"] == []


async def test_a_completed_renewal_is_settled_once_and_a_redelivered_event_changes_nothing(
    rig: Renewals,
) -> None:
    await rig.opt_in()
    await rig.cross()
    await rig.answer(rig.completed(1))
    settled = await rig.settings()
    await rig.answer(rig.completed(1))
    assert await rig.settings() == settled
    assert [r["status"] for r in settled["renewal_orders"]] == ["completed"]
    assert len(rig.orders_commands) == 1
    assert rig.line_events == []


async def test_another_orders_event_is_ignored(rig: Renewals) -> None:
    await rig.opt_in()
    event = OrderCompleted(
        order_id=order_id_for("req-1"), iccid=rig.iccid, request_id="req-1", data_mb=1024,
        valid_until=START + timedelta(days=7),
    )  # fmt: skip
    await rig.answer(event)
    assert (await rig.settings())["renewal_orders"] == []


async def test_a_declined_renewal_is_retried_when_due_then_pauses_after_the_bound(
    rig: Renewals,
) -> None:
    await rig.opt_in()
    await rig.cross()
    await rig.answer(rig.declined(1))
    await rig.answer(rig.declined(1))  # redelivered: still one retry
    first, retry = (await rig.settings())["renewal_orders"]
    assert (first["status"], first["failure_reason"]) == ("failed", "insufficient_funds")
    assert (retry["request_id"], retry["status"]) == (rig.request_id(2), "due")
    assert datetime.fromisoformat(retry["due_at"]) == START + timedelta(seconds=60)

    assert await rig.sweep(after_s=30) == 0  # not due yet
    assert await rig.sweep(after_s=30) == 1
    assert await rig.sweep(after_s=30) == 0  # placed once
    assert [o["request_id"] for o in rig.orders_commands] == [rig.request_id(1), rig.request_id(2)]

    await rig.answer(rig.declined(2))
    await rig.answer(rig.declined(2))  # redelivered: still one pause, one event
    shown = await rig.settings()
    assert (shown["status"], shown["paused_reason"]) == ("paused", "retries_exhausted")
    assert "insufficient_funds" in shown["paused_message"]
    assert [r["status"] for r in shown["renewal_orders"]] == ["failed", "failed"]
    [paused] = rig.line_events
    assert paused["type"] == "AutoRenewalPaused"
    assert (paused["reason"], paused["attempts"], paused["alert"]) == (
        "retries_exhausted", 2, "data_used_90",
    )  # fmt: skip
    assert paused["order_id"] == str(order_id_for(rig.request_id(2)))
    assert paused["iccid"] == rig.iccid


async def test_opting_in_again_resumes_a_paused_auto_renewal(rig: Renewals) -> None:
    await rig.opt_in()
    await rig.cross()
    rejected = OrderRejected(
        order_id=order_id_for(rig.request_id(1)), iccid=rig.iccid,
        request_id=rig.request_id(1), reason="unknown_package", message="no package",
    )  # fmt: skip
    await rig.answer(rejected)
    shown = await rig.settings()
    assert (shown["status"], shown["paused_reason"]) == ("paused", "order_rejected")
    assert [e["reason"] for e in rig.line_events] == ["order_rejected"]

    resumed = (await rig.opt_in(package_id="eu-5gb-30d")).json()
    assert (resumed["status"], resumed["paused_reason"], resumed["package_id"]) == (
        "active", None, "eu-5gb-30d",
    )  # fmt: skip


async def test_a_due_retry_is_not_placed_once_the_line_opted_out(rig: Renewals) -> None:
    await rig.opt_in()
    await rig.cross()
    await rig.answer(rig.declined(1))
    await rig.opt_out()
    assert await rig.sweep(after_s=60) == 0
    assert len(rig.orders_commands) == 1
    retry = (await rig.settings())["renewal_orders"][1]
    assert (retry["status"], retry["failure_reason"]) == ("cancelled", "opted_out")


async def test_a_due_retry_is_not_placed_once_a_top_up_started_a_new_cycle(
    rig: Renewals,
) -> None:
    await rig.opt_in()
    await rig.cross()
    await rig.answer(rig.declined(1))
    await rig.top_up()  # the customer topped up by hand meanwhile
    assert await rig.sweep(after_s=60) == 0
    retry = (await rig.settings())["renewal_orders"][1]
    assert (retry["status"], retry["failure_reason"]) == ("cancelled", "superseded")
