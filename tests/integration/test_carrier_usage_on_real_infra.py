"""The carrier simulator's usage reports on the real broker, published as the broker
principal `carrier`; the simulator served on a local port, provisioning in-process on
PostgreSQL topping lines up through it: a line the carrier topped up gets a report every
period it used data, keyed by the line; a line it refused, or never saw, gets none."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from fastapi import FastAPI

from services.carrier_simulator.usage_reports import BURST_CAP
from services.provisioning.app import build_app
from services.provisioning.settings import ProvisioningSettings
from shared import topics
from shared.events import UsageReported
from shared.kafka_access import CARRIER
from shared.settings import ServiceSettings
from tests.factories import random_iccid
from tests.infra import KafkaUnderTest, PostgresUnderTest
from tests.integration.carrier import Carrier, carrier_served
from tests.integration.harness import service_running, topped_up

pytestmark = pytest.mark.integration

INTERVAL_S = 0.5
MEAN_MB = 40
SUSPENDED = "8944500102198304834"


def provisioning_with(carrier: Carrier) -> Callable[[ServiceSettings], FastAPI]:
    def build(settings: ServiceSettings) -> FastAPI:
        return build_app(
            ProvisioningSettings(**settings.model_dump(), carrier_api_base=carrier.base_url)
        )

    return build


Received = tuple[bytes, dict[str, str], UsageReported]


async def usage_reports(
    kafka: KafkaUnderTest, lines: set[str], *, of: str, count: int, within: float = 30.0
) -> list[Received]:
    """The reports on carrier.usage.v1 about `lines`, once `count` are about line `of`."""
    consumer = AIOKafkaConsumer(
        topics.CARRIER_USAGE,
        **kafka.options(),
        group_id=None,  # no group: reads every partition and leaves nothing behind
        auto_offset_reset="earliest",
    )
    await consumer.start()
    found: list[Received] = []
    try:
        async with asyncio.timeout(within):
            while sum(report.iccid == of for _, _, report in found) < count:
                batch = await consumer.getmany(timeout_ms=200)
                for record in itertools.chain.from_iterable(batch.values()):
                    body: dict[str, Any] = json.loads(record.value)
                    if body.get("iccid") in lines:
                        headers = {k: v.decode() for k, v in record.headers}
                        found.append((record.key, headers, UsageReported(**body)))
    except TimeoutError:
        raise AssertionError(f"{len(found)} usage reports of {lines}: {found}") from None
    finally:
        await consumer.stop()
    return found


async def test_a_line_the_carrier_topped_up_gets_usage_reports_and_no_other_line_does(
    kafka: KafkaUnderTest, postgres: PostgresUnderTest
) -> None:
    active, never_topped_up = random_iccid(), random_iccid()
    reporting = {
        **kafka.settings(CARRIER),  # the carrier's own principal on the broker
        "carrier_suspended_iccids": frozenset({SUSPENDED}),
        "carrier_usage_interval_s": INTERVAL_S,
        "carrier_usage_mean_mb": MEAN_MB,
    }
    async with (
        carrier_served(postgres, **reporting) as carrier,
        service_running(provisioning_with(carrier), "provisioning", kafka, postgres),
    ):
        assert await topped_up(kafka, SUSPENDED) == "TopUpFailed"
        assert await topped_up(kafka, active) == "LineToppedUp"
        received = await usage_reports(
            kafka, {active, never_topped_up, SUSPENDED}, of=active, count=4
        )

    assert {report.iccid for _, _, report in received} == {active}
    for key, headers, report in received:
        assert key == active.encode()
        assert headers["type"] == "UsageReported"
        assert headers["event_id"] == str(report.event_id)
        assert "order_id" not in headers
        # The mean scales with the period's length: a pass made late (a busy machine) covers
        # more time and may report more than BURST_CAP times the mean of one interval.
        period_s = (report.period_end - report.period_start).total_seconds()
        assert 0 < report.used_mb <= math.ceil(BURST_CAP * MEAN_MB * period_s / INTERVAL_S)
    # A period is the time since the carrier's last pass, about one interval; the line's
    # first one starts when the carrier applied its top-up, so it may be shorter.
    periods = sorted((r.period_start, r.period_end) for _, _, r in received)
    lengths = [end - start for start, end in periods]
    assert all(timedelta(0) < length < timedelta(seconds=INTERVAL_S * 4) for length in lengths)
    assert all(length >= timedelta(seconds=INTERVAL_S * 0.8) for length in lengths[1:]), periods
    assert all(end <= start for (_, end), (start, _) in itertools.pairwise(periods)), periods
    assert len({report.event_id for _, _, report in received}) == len(received)
