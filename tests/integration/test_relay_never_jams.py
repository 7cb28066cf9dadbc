"""The outbox relay on the real broker cannot be jammed: a row larger than the broker
takes (as an inflated answer would have been) is parked after three refusals, /health
says so, and the rows staged behind it are published all the same."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import insert, select

from services.orders.app import build_app
from shared import outbox, topics
from shared.events import OrderExpired
from tests.factories import random_iccid
from tests.infra import KafkaUnderTest, PostgresUnderTest
from tests.integration.harness import health_until, messages_about, service_running

pytestmark = pytest.mark.integration


async def test_a_row_the_broker_refuses_is_parked_and_the_rows_behind_it_are_published(
    kafka: KafkaUnderTest, postgres: PostgresUnderTest
) -> None:
    iccid = random_iccid()
    inflated, behind = (
        OrderExpired(order_id=uuid.uuid4(), iccid=iccid, request_id=f"r-{uuid.uuid4()}")
        for _ in range(2)
    )
    async with service_running(build_app, "orders", kafka, postgres) as app:
        async with app.state.sessions.begin() as session:  # one transaction, in this order
            await session.execute(
                insert(outbox.outbox),
                [
                    row(inflated, padding=2_000_000),  # beyond the broker's 1 MiB
                    row(behind, padding=0),
                ],
            )
        [published] = await messages_about(kafka, topics.ORDERS_EVENTS, behind.order_id)
        assert published["event_id"] == str(behind.event_id)
        health = await health_until(app, names_a_parked_row, within=30)
        assert health["status"] == "degraded"
        async with app.state.sessions() as session:
            reason = await session.scalar(
                select(outbox.outbox.c.park_reason).where(outbox.outbox.c.parked_at.is_not(None))
            )
        assert reason is not None
        assert "TooLarge" in reason
    assert (
        await messages_about(kafka, topics.ORDERS_EVENTS, inflated.order_id, count=0, settle=1)
        == []
    )


def row(message: OrderExpired, padding: int) -> dict[str, object]:
    return {
        "topic": topics.ORDERS_EVENTS,
        "key": message.iccid,
        "payload": message.model_dump_json() + " " * padding,
        "headers": json.dumps({"type": message.type, "event_id": str(message.event_id)}),
        "created_at": datetime.now(UTC),
    }


def names_a_parked_row(health: dict[str, Any]) -> bool:
    return any("parked" in problem for problem in health["checks"]["progress"]["problems"])
