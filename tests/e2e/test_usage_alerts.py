"""Usage, alerts and expiry end to end: a line gets a package through the saga, then the
test publishes the carrier's usage reports to carrier.usage.v1 as the carrier would, and
reads what provisioning (its own process, on the real broker) makes of them on
provisioning.line-events.v1 and through its read API."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import select, update

from deploy.local.processes import ServiceProcess
from services.provisioning import db
from shared import db as shared_db
from shared import topics
from tests.credentials import RENEWER
from tests.e2e.carrier import publish_usage
from tests.e2e.test_saga_outcomes import final_order, poll, publish
from tests.factories import order_request, usage_report
from tests.infra import KafkaUnderTest
from tests.integration.harness import messages_about

pytestmark = pytest.mark.e2e

Services = dict[str, ServiceProcess]
ONE_GB = 1024  # eu-1gb-7d
SETTLE_S = 3.0  # long enough for several line sweeps (LINE_SWEEP_INTERVAL_S=0.5)


async def line_with_a_package(services: Services, producer: AIOKafkaProducer) -> tuple[str, str]:
    """A fresh line topped up with 1 GB for 7 days through the saga: (iccid, order id),
    the order being the one that started the line's package cycle."""
    request = order_request(package_id="eu-1gb-7d")
    order_id = await publish(producer, request)
    assert (await final_order(services, order_id))["state"] == "COMPLETED"
    return request["iccid"], str(order_id)


async def line_events(
    kafka: KafkaUnderTest, order_id: str, count: int, settle: float = SETTLE_S
) -> list[dict[str, Any]]:
    """The line events of the cycle `order_id` started, once `count` have arrived and no
    more came for `settle` seconds."""
    return await messages_about(
        kafka, topics.PROVISIONING_LINE_EVENTS, uuid.UUID(order_id), count=count, settle=settle
    )


def alerts_in(events: list[dict[str, Any]]) -> list[str]:
    return [e["alert"] for e in events if e["type"] == "LineAlertRaised"]


async def read(services: Services, path: str) -> Any:
    async with httpx.AsyncClient(headers=RENEWER) as client:
        response = await client.get(f"{services['provisioning'].base_url}{path}")
    assert response.status_code == 200, response.text
    return response.json()


async def move_validity(services: Services, iccid: str, valid_until: datetime) -> None:
    """Stands for time passing: the test moves the line's validity, and the start of its
    package cycle by as much, in provisioning's own database, as if the days had gone by,
    and lets the line sweeper notice."""
    engine = shared_db.create_engine(services["provisioning"].env["DATABASE_URL"])
    lines = db.lines
    try:
        async with engine.begin() as connection:
            line = (await connection.execute(select(lines).where(lines.c.iccid == iccid))).one()
            passed = shared_db.as_utc(line.valid_until) - valid_until
            started = shared_db.as_utc(line.cycle_started_at) - passed
            await connection.execute(
                update(lines)
                .where(lines.c.iccid == iccid)
                .values(valid_until=valid_until, cycle_started_at=started)
            )
    finally:
        await engine.dispose()


Check = Callable[[dict[str, Any]], bool]


async def usage_until(services: Services, iccid: str, done: Check) -> dict[str, Any]:
    return await poll(f"{services['provisioning'].base_url}/lines/{iccid}/usage", done)


async def test_a_line_used_down_gets_each_alert_once_even_with_reports_redelivered(
    services: Services, producer: AIOKafkaProducer, carrier: AIOKafkaProducer, kafka: KafkaUnderTest
) -> None:
    iccid, order_id = await line_with_a_package(services, producer)
    reports = [usage_report(iccid, used) for used in (800, 150, 100)]
    for report in reports + reports:  # each delivered a second time, as may happen
        await publish_usage(carrier, report)

    events = await line_events(kafka, order_id, count=3)
    assert alerts_in(events) == ["data_used_75", "data_used_90", "data_exhausted"]
    assert [e["kind"] for e in events] == ["data_used", "data_used", "data_exhausted"]
    exhausted = events[-1]
    assert (exhausted["data_quota_mb"], exhausted["data_used_mb"]) == (ONE_GB, 1050)
    assert (exhausted["data_remaining_mb"], exhausted["overage_mb"]) == (0, 26)
    usage = await usage_until(services, iccid, lambda u: len(u["reports"]) == 3)
    assert (usage["cycle"]["used_mb"], usage["cycle"]["overage_mb"]) == (1050, 26)
    alerts = await read(services, f"/lines/{iccid}/alerts")
    assert [a["alert"] for a in alerts] == ["data_exhausted", "data_used_90", "data_used_75"]
    assert {a["event_id"] for a in alerts} == {e["event_id"] for e in events}


async def test_a_report_beyond_the_balance_leaves_it_at_zero_and_records_the_overage(
    services: Services, producer: AIOKafkaProducer, carrier: AIOKafkaProducer, kafka: KafkaUnderTest
) -> None:
    iccid, order_id = await line_with_a_package(services, producer)
    sent = usage_report(iccid, 1500)
    await publish_usage(carrier, sent)

    events = await line_events(kafka, order_id, count=3)
    assert alerts_in(events) == ["data_used_75", "data_used_90", "data_exhausted"]
    usage = await usage_until(services, iccid, lambda u: len(u["reports"]) == 1)
    cycle = usage["cycle"]
    assert (cycle["order_id"], cycle["quota_mb"], cycle["used_mb"]) == (order_id, ONE_GB, 1500)
    assert (cycle["remaining_mb"], cycle["overage_mb"], cycle["percent_used"]) == (0, 476, 100)
    [report] = usage["reports"]
    assert report["report_id"] == str(sent.event_id)
    assert (report["used_mb"], report["applied_mb"], report["overage_mb"]) == (1500, ONE_GB, 476)
    assert (await read(services, f"/lines/{iccid}"))["data_remaining_mb"] == 0


async def test_when_validity_ends_what_was_left_is_forfeited_once(
    services: Services, producer: AIOKafkaProducer, carrier: AIOKafkaProducer, kafka: KafkaUnderTest
) -> None:
    iccid, order_id = await line_with_a_package(services, producer)
    await publish_usage(carrier, usage_report(iccid, 100))
    await usage_until(services, iccid, lambda u: u["cycle"]["used_mb"] == 100)

    ended = datetime.now(UTC) - timedelta(minutes=1)
    await move_validity(services, iccid, ended)  # seven days later, as far as the line knows
    events = await line_events(kafka, order_id, count=2)
    assert [e["type"] for e in events] == ["DataForfeited", "LineAlertRaised"]
    forfeited, alert = events
    assert (forfeited["forfeited_mb"], forfeited["fair_use_forfeited_mb"]) == (ONE_GB - 100, None)
    assert datetime.fromisoformat(forfeited["valid_until"]) == ended
    assert (alert["alert"], alert["kind"]) == ("validity_ended", "validity_ended")
    cycle = (await read(services, f"/lines/{iccid}/usage"))["cycle"]
    assert (cycle["expired"], cycle["remaining_mb"]) == (True, 0)
    assert (await read(services, f"/lines/{iccid}"))["data_remaining_mb"] == 0


async def test_expiry_warnings_come_days_before_validity_ends_once_each(
    services: Services, producer: AIOKafkaProducer, kafka: KafkaUnderTest
) -> None:
    iccid, order_id = await line_with_a_package(services, producer)

    await move_validity(services, iccid, datetime.now(UTC) + timedelta(days=2))
    first = await line_events(kafka, order_id, count=1)
    assert [(e["alert"], e["kind"]) for e in first] == [("expires_in_3d", "expiry_near")]

    await move_validity(services, iccid, datetime.now(UTC) + timedelta(hours=12))
    both = await line_events(kafka, order_id, count=2)
    assert alerts_in(both) == ["expires_in_3d", "expires_in_1d"]
    assert [a["alert"] for a in await read(services, f"/lines/{iccid}/alerts")] == [
        "expires_in_1d",
        "expires_in_3d",
    ]
