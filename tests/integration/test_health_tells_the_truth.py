"""/health tells the truth on the real broker: orders cannot write a dead letter (its
dead-letter topic takes nothing that large), so the partition is held; /health says
degraded, naming it, and the metrics show it; once the topic takes it again, the dead
letter is written and /health is ok again. No restart."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from services.orders.app import build_app
from shared import topics
from shared.events import Money, PaymentCaptured
from tests.factories import random_iccid
from tests.infra import KafkaUnderTest, PostgresUnderTest
from tests.integration.harness import (
    dead_letter_topic_taking,
    get,
    headers_of,
    health_until,
    produce,
    records_where,
    service_running,
)

pytestmark = pytest.mark.integration

DLT = topics.dead_letter_topic(topics.PAYMENTS_EVENTS)


async def test_health_says_degraded_while_a_dead_letter_cannot_be_written_and_ok_once_it_is(
    kafka: KafkaUnderTest, postgres: PostgresUnderTest
) -> None:
    euros = Money(amount_minor=1500, currency="EUR")
    iccid = random_iccid()
    unknown_order = PaymentCaptured(
        order_id=uuid.uuid4(), iccid=iccid, amount=euros, fee=euros, provider_reference="p-1"
    )  # a business rule broken: to be dead-lettered at once
    async with service_running(
        build_app, "orders", kafka, postgres, partition_stuck_after_s=2.0
    ) as app:
        async with dead_letter_topic_taking(kafka, DLT, max_bytes=100):
            partition, offset = await produce(
                kafka, topics.PAYMENTS_EVENTS, unknown_order.model_dump_json().encode(),
                iccid.encode(),
            )  # fmt: skip
            held = f"{topics.PAYMENTS_EVENTS}[{partition}] of orders:{topics.PAYMENTS_EVENTS}"
            degraded = await health_until(app, lambda body: _names(body, held), within=60)
            assert degraded["status"] == "degraded"
            assert f"stuck at offset {offset}" in " ".join(
                degraded["checks"]["progress"]["problems"]
            )
            metrics = await get(app, "/metrics/")
            assert (
                f'topup_partition_stuck_seconds{{group="orders:{topics.PAYMENTS_EVENTS}"' in metrics
            )
        recovered = await health_until(app, lambda body: not _names(body, held), within=90)
        assert recovered["checks"]["kafka"]["ok"]

    [letter] = await records_where(
        kafka,
        DLT,
        lambda r: (
            headers_of(r).get("dlq.source.offset") == str(offset)
            and headers_of(r).get("dlq.source.partition") == str(partition)
        ),
    )
    assert headers_of(letter)["dlq.reason"] == "business_rule"


def _names(body: dict[str, Any], held: str) -> bool:
    return any(held in problem for problem in body["checks"]["progress"]["problems"])
