"""Provisioning in-process on the real broker and PostgreSQL, its carrier simulated:
exactly one top-up per order through repeats, refusals, outages and timeouts."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from services.provisioning.carrier_simulator import CarrierSimulator, simulated_carrier_topups
from sqlalchemy import select

from services.provisioning.app import build_app
from services.provisioning.db import topups
from services.provisioning.iccid import has_valid_check_digit
from services.provisioning.settings import ProvisioningSettings
from shared import topics
from shared.events import TopUpLine
from shared.settings import ServiceSettings
from tests.credentials import RENEWER
from tests.infra import KafkaUnderTest, PostgresUnderTest
from tests.integration.harness import messages_about, send, service_running

pytestmark = pytest.mark.integration

SUSPENDED = "8944500102198304834"
FAST = {
    "carrier_latency_ms": 20,
    "retry_interval_s": 0.1,
    "retry_backoff_base_s": 0.3,
    "carrier_suspended_iccids": SUSPENDED,
}


def provisioning(**overrides: Any) -> Callable[[ServiceSettings], FastAPI]:
    """build_app with the harness's settings plus provisioning's own."""

    def build(settings: ServiceSettings) -> FastAPI:
        return build_app(ProvisioningSettings(**{**settings.model_dump(), **FAST, **overrides}))

    return build


def new_iccid() -> str:
    body = "89" + "".join(random.choices("0123456789", k=16))
    return next(body + d for d in "0123456789" if has_valid_check_digit(body + d))


def top_up_line(iccid: str, data_mb: int = 1024) -> TopUpLine:
    order_id = uuid.uuid4()
    return TopUpLine(
        order_id=order_id, iccid=iccid, package_id="eu-1gb-7d", data_mb=data_mb,
        bonus_mb=100, validity_days=7, idempotency_key=f"{order_id}:topup",
    )  # fmt: skip


def simulator(app: FastAPI) -> CarrierSimulator:
    carrier = app.state.provisioner.carrier
    assert isinstance(carrier, CarrierSimulator)
    return carrier


async def stored(app: FastAPI, command: TopUpLine) -> dict[str, Any]:
    """The top-up row and the carrier's ledger row for one command."""
    ledger = simulated_carrier_topups
    async with app.state.sessions() as session:
        topup = (
            await session.execute(
                select(topups).where(topups.c.idempotency_key == command.idempotency_key)
            )
        ).one()
        sent = await session.scalar(
            select(ledger.c.requests).where(ledger.c.key == command.idempotency_key)
        )
    return {**topup._mapping, "carrier_requests": sent}


async def test_a_repeated_command_tops_the_line_up_once_and_repeats_the_answer(
    kafka: KafkaUnderTest, postgres: PostgresUnderTest
) -> None:
    async with service_running(provisioning(), "provisioning", kafka, postgres) as app:
        command = top_up_line(new_iccid())
        await send(kafka, topics.PROVISIONING_COMMANDS, command)
        await send(kafka, topics.PROVISIONING_COMMANDS, command)
        answers = await messages_about(
            kafka, topics.PROVISIONING_EVENTS, command.order_id, count=2, settle=1.0
        )
        row = await stored(app, command)
    assert [a["type"] for a in answers] == ["LineToppedUp", "LineToppedUp"]
    assert answers[0] == answers[1]
    assert answers[0]["data_remaining_mb"] == 1124
    assert (row["status"], row["attempts"], row["carrier_requests"]) == ("APPLIED", 1, 1)


async def test_a_suspended_line_fails_for_good(
    kafka: KafkaUnderTest, postgres: PostgresUnderTest
) -> None:
    async with service_running(provisioning(), "provisioning", kafka, postgres) as app:
        command = top_up_line(SUSPENDED)
        await send(kafka, topics.PROVISIONING_COMMANDS, command)
        [failed] = await messages_about(
            kafka, topics.PROVISIONING_EVENTS, command.order_id, settle=1.0
        )
        row = await stored(app, command)
    assert (failed["type"], failed["reason"], failed["attempts"]) == (
        "TopUpFailed", "line_suspended", 1,
    )  # fmt: skip
    assert (row["status"], row["carrier_requests"]) == ("FAILED", 1)


async def test_a_carrier_outage_is_retried_with_backoff_until_the_top_up_applies(
    kafka: KafkaUnderTest, postgres: PostgresUnderTest
) -> None:
    async with service_running(provisioning(), "provisioning", kafka, postgres) as app:
        carrier = simulator(app)
        carrier.behaviour.transient_failure_rate = 1.0
        command = top_up_line(new_iccid())
        await send(kafka, topics.PROVISIONING_COMMANDS, command)
        await _attempted(app, command, times=2)
        carrier.behaviour.transient_failure_rate = 0.0  # the outage ends
        [done] = await messages_about(kafka, topics.PROVISIONING_EVENTS, command.order_id)
        row = await stored(app, command)
    assert done["type"] == "LineToppedUp"
    assert (row["status"], row["attempts"], row["carrier_requests"]) == ("APPLIED", 3, 1)
    # Attempt 2 came 0.3 s after attempt 1, attempt 3 0.6 s after attempt 2.
    assert (row["applied_at"] - row["created_at"]).total_seconds() >= 0.9


async def _attempted(app: FastAPI, command: TopUpLine, times: int) -> None:
    query = select(topups.c.attempts).where(topups.c.idempotency_key == command.idempotency_key)
    async with asyncio.timeout(30):
        while True:
            async with app.state.sessions() as session:
                if (await session.scalar(query) or 0) >= times:
                    return
            await asyncio.sleep(0.05)


async def test_a_timeout_is_settled_by_asking_the_carrier_without_applying_twice(
    kafka: KafkaUnderTest, postgres: PostgresUnderTest
) -> None:
    build = provisioning(carrier_timeout_rate=1.0, carrier_timeout_applied_rate=1.0)
    async with service_running(build, "provisioning", kafka, postgres) as app:
        command = top_up_line(new_iccid())
        await send(kafka, topics.PROVISIONING_COMMANDS, command)
        answers = await messages_about(
            kafka, topics.PROVISIONING_EVENTS, command.order_id, settle=1.5
        )
        row = await stored(app, command)
    assert [a["type"] for a in answers] == ["LineToppedUp"]
    assert answers[0]["data_remaining_mb"] == 1124
    assert (row["status"], row["attempts"], row["carrier_requests"]) == ("APPLIED", 1, 1)


async def test_the_read_api_shows_the_line_and_its_history(
    kafka: KafkaUnderTest, postgres: PostgresUnderTest
) -> None:
    iccid = new_iccid()
    async with service_running(provisioning(), "provisioning", kafka, postgres) as app:
        commands = [top_up_line(iccid), top_up_line(iccid, data_mb=5120)]
        for command in commands:
            await send(kafka, topics.PROVISIONING_COMMANDS, command)
            await messages_about(kafka, topics.PROVISIONING_EVENTS, command.order_id)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", headers=RENEWER
        ) as client:
            line = await client.get(f"/lines/{iccid}")
            unknown = await client.get(f"/lines/{new_iccid()}")
            malformed = await client.get("/lines/not-an-iccid")
    assert line.status_code == 200
    body = line.json()
    assert (body["valid"], body["data_remaining_mb"]) == (True, 1124 + 5220)
    assert [t["order_id"] for t in body["topups"]] == [str(c.order_id) for c in commands]
    assert {t["status"] for t in body["topups"]} == {"APPLIED"}
    assert (unknown.status_code, malformed.status_code) == (404, 422)
