"""Provisioning in-process on the real broker and PostgreSQL, its carrier the carrier
simulator served on a local port (its ledger in a PostgreSQL database of its own), reached
through the real adapter over HTTP: exactly one top-up per order through repeats,
refusals, outages and timeouts."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
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
from tests.integration.carrier import Carrier, carrier_served
from tests.integration.harness import messages_about, send, service_running

pytestmark = pytest.mark.integration

SUSPENDED = "8944500102198304834"
FAST = {"retry_interval_s": 0.1, "retry_backoff_base_s": 0.3, "carrier_timeout_s": 0.5}


@pytest.fixture
async def carrier(postgres: PostgresUnderTest) -> AsyncIterator[Carrier]:
    async with carrier_served(postgres, carrier_suspended_iccids=frozenset({SUSPENDED})) as served:
        yield served


def provisioning(carrier: Carrier, **overrides: Any) -> Callable[[ServiceSettings], FastAPI]:
    """build_app with the harness's settings plus provisioning's own, talking to `carrier`."""

    def build(settings: ServiceSettings) -> FastAPI:
        given = {**settings.model_dump(), **FAST, "carrier_api_base": carrier.base_url}
        return build_app(ProvisioningSettings(**given, **overrides))

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


async def stored(app: FastAPI, carrier: Carrier, command: TopUpLine) -> dict[str, Any]:
    """The top-up row, and how many orders the carrier's ledger has for its key."""
    async with app.state.sessions() as session:
        topup = (
            await session.execute(
                select(topups).where(topups.c.idempotency_key == command.idempotency_key)
            )
        ).one()
    return {**topup._mapping, "carrier_orders": await carrier.orders(command)}


async def test_a_repeated_command_tops_the_line_up_once_and_repeats_the_answer(
    kafka: KafkaUnderTest, postgres: PostgresUnderTest, carrier: Carrier
) -> None:
    async with service_running(provisioning(carrier), "provisioning", kafka, postgres) as app:
        command = top_up_line(new_iccid())
        await send(kafka, topics.PROVISIONING_COMMANDS, command)
        await send(kafka, topics.PROVISIONING_COMMANDS, command)
        answers = await messages_about(
            kafka, topics.PROVISIONING_EVENTS, command.order_id, count=2, settle=1.0
        )
        row = await stored(app, carrier, command)
    assert [a["type"] for a in answers] == ["LineToppedUp", "LineToppedUp"]
    assert answers[0] == answers[1]
    assert answers[0]["data_remaining_mb"] == 1124
    assert (row["status"], row["attempts"], row["carrier_orders"]) == ("APPLIED", 1, 1)


async def test_a_suspended_line_fails_for_good(
    kafka: KafkaUnderTest, postgres: PostgresUnderTest, carrier: Carrier
) -> None:
    async with service_running(provisioning(carrier), "provisioning", kafka, postgres) as app:
        command = top_up_line(SUSPENDED)
        await send(kafka, topics.PROVISIONING_COMMANDS, command)
        [failed] = await messages_about(
            kafka, topics.PROVISIONING_EVENTS, command.order_id, settle=1.0
        )
        row = await stored(app, carrier, command)
    assert (failed["type"], failed["reason"], failed["attempts"]) == (
        "TopUpFailed", "line_suspended", 1,
    )  # fmt: skip
    assert (row["status"], row["carrier_orders"]) == ("FAILED", 0)


async def test_a_carrier_outage_is_retried_with_backoff_until_the_top_up_applies(
    kafka: KafkaUnderTest, postgres: PostgresUnderTest, carrier: Carrier
) -> None:
    async with service_running(provisioning(carrier), "provisioning", kafka, postgres) as app:
        carrier.behaviour.transient_failure_rate = 1.0
        command = top_up_line(new_iccid())
        await send(kafka, topics.PROVISIONING_COMMANDS, command)
        await _attempted(app, command, times=2)
        carrier.behaviour.transient_failure_rate = 0.0  # the outage ends
        [done] = await messages_about(kafka, topics.PROVISIONING_EVENTS, command.order_id)
        row = await stored(app, carrier, command)
    assert done["type"] == "LineToppedUp"
    assert (row["status"], row["attempts"], row["carrier_orders"]) == ("APPLIED", 3, 1)
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
    kafka: KafkaUnderTest, postgres: PostgresUnderTest, carrier: Carrier
) -> None:
    async with service_running(provisioning(carrier), "provisioning", kafka, postgres) as app:
        command = top_up_line(new_iccid())
        carrier.behaviour.timeout_rate = carrier.behaviour.timeout_applied_rate = 1.0
        await send(kafka, topics.PROVISIONING_COMMANDS, command)
        await _attempted(app, command, times=1)  # applied, its answer held past our timeout
        carrier.behaviour.timeout_rate = 0.0  # so that asking about it is answered
        answers = await messages_about(
            kafka, topics.PROVISIONING_EVENTS, command.order_id, settle=1.5
        )
        row = await stored(app, carrier, command)
    assert [a["type"] for a in answers] == ["LineToppedUp"]
    assert answers[0]["data_remaining_mb"] == 1124
    assert (row["status"], row["attempts"], row["carrier_orders"]) == ("APPLIED", 1, 1)


async def test_the_read_api_shows_the_line_and_its_history(
    kafka: KafkaUnderTest, postgres: PostgresUnderTest, carrier: Carrier
) -> None:
    iccid = new_iccid()
    async with service_running(provisioning(carrier), "provisioning", kafka, postgres) as app:
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
