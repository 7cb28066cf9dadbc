"""Dead letters of provisioning's line consumers on the real broker and PostgreSQL:
provisioning in-process is sent usage reports (carrier.usage.v1) and order events
(orders.events.v1, which it reads for its renewal orders; orders does not read it) that
it cannot process. Each lands on `<topic>.dlt` with its bytes, key, origin and reason,
dead-lettered by provisioning, and the consumer moves on: a valid message behind them
on the same partition still counts (the usage report) or settles (the renewal order).
The general behaviour, on orders' consumers: test_dead_letters_on_real_infra.py."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.provisioning.app import build_app
from services.provisioning.renewals import renewal_request_id
from shared import topics
from shared.events import OrderCompleted, UsageReported, order_id_for
from tests.credentials import RENEWER
from tests.factories import auto_renewal_settings, random_iccid, usage_report
from tests.infra import KafkaUnderTest, PostgresUnderTest
from tests.integration.harness import (
    Record,
    dead_letter_of,
    headers_of,
    messages_about,
    outside_world,
    produce,
    service_running,
    topped_up,
)

pytestmark = pytest.mark.integration

Position = tuple[int, int]  # (partition, offset)

OPT_IN = auto_renewal_settings(alert="data_used_75")


def not_json() -> bytes:
    return f"not json {uuid.uuid4().hex} ".encode() + b"\xff\xfe\x00"


def changed(message: UsageReported | OrderCompleted, **fields: Any) -> bytes:
    """The message's JSON with `fields` set (None: left out), as a careless sender writes it."""
    body = {**message.model_dump(mode="json"), **fields}
    return json.dumps({name: value for name, value in body.items() if value is not None}).encode()


async def api(app: FastAPI, method: str, path: str, body: Any = None) -> dict[str, Any]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://provisioning", headers=RENEWER
    ) as client:
        response = await client.request(method, path, json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def read_until(
    app: FastAPI, path: str, done: Callable[[dict[str, Any]], bool], within: float = 30.0
) -> dict[str, Any]:
    """GET `path` until `done` says its answer is the one awaited."""
    answer: dict[str, Any] = {}
    try:
        async with asyncio.timeout(within):
            while True:
                answer = await api(app, "GET", path)
                if done(answer):
                    return answer
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise AssertionError(f"GET {path} never got there: {answer}") from None


def assert_dead_lettered_by_provisioning(
    dead: Record, *, reason: str, source: str, body: bytes, key: bytes, at: Position
) -> None:
    headers = headers_of(dead)
    assert headers["dlq.reason"] == reason, headers
    assert dead.value == body
    assert dead.key == key
    assert headers["dlq.source.topic"] == source
    assert (int(headers["dlq.source.partition"]), int(headers["dlq.source.offset"])) == at
    assert (
        headers["dlq.consumer"] == "provisioning"
    )  # the service; its group: f"provisioning:{source}"
    assert headers["dlq.error"]


def assert_behind_them(valid: Position, bad: dict[str, Position]) -> None:
    """The valid message went through after the bad ones on their very partition."""
    for reason, (partition, offset) in bad.items():
        assert valid[0] == partition, reason
        assert valid[1] > offset, reason


async def test_usage_reports_provisioning_cannot_read_are_dead_lettered_and_a_later_one_counts(
    kafka: KafkaUnderTest,
    postgres: PostgresUnderTest,
    undecodable: list[tuple[str, int, int]],
    tmp_path: Path,
) -> None:
    iccid = random_iccid()
    key = iccid.encode()
    bad = {
        "undecodable": not_json(),
        "schema_invalid": changed(usage_report(iccid, 100), used_mb=-100),
        "unknown_schema_version": changed(usage_report(iccid, 100), schema_version=2),
    }
    counted = usage_report(iccid, 300)

    async with (
        outside_world(tmp_path) as world,
        service_running(build_app, "provisioning", kafka, postgres, world) as app,
    ):
        assert await topped_up(kafka, iccid) == "LineToppedUp"
        bad_at = {
            reason: await produce(kafka, topics.CARRIER_USAGE, body, key)
            for reason, body in bad.items()
        }
        undecodable.append((topics.CARRIER_USAGE, *bad_at["undecodable"]))
        counted_at = await produce(
            kafka, topics.CARRIER_USAGE, counted.model_dump_json().encode(), key
        )
        usage = await read_until(app, f"/lines/{iccid}/usage", lambda usage: bool(usage["reports"]))
        dead = {
            reason: await dead_letter_of(kafka, topics.CARRIER_USAGE, body)
            for reason, body in bad.items()
        }

    assert [report["report_id"] for report in usage["reports"]] == [str(counted.event_id)]
    assert (usage["cycle"]["used_mb"], usage["cycle"]["remaining_mb"]) == (300, 1024 - 300)
    assert_behind_them(counted_at, bad_at)
    for reason, body in bad.items():
        assert_dead_lettered_by_provisioning(
            dead[reason], reason=reason, source=topics.CARRIER_USAGE, body=body, key=key,
            at=bad_at[reason],
        )  # fmt: skip


async def test_order_events_provisioning_cannot_read_are_dead_lettered_by_it_and_a_renewal_settles(
    kafka: KafkaUnderTest,
    postgres: PostgresUnderTest,
    undecodable: list[tuple[str, int, int]],
    tmp_path: Path,
) -> None:
    iccid = random_iccid()
    key = iccid.encode()

    async with (
        outside_world(tmp_path) as world,
        service_running(build_app, "provisioning", kafka, postgres, world) as app,
    ):
        # A renewal order to settle: the line, opted in, crosses its threshold (75% of 1 GB).
        assert await topped_up(kafka, iccid) == "LineToppedUp"
        cycle = (await api(app, "GET", f"/lines/{iccid}/usage"))["cycle"]
        await api(app, "PUT", f"/lines/{iccid}/auto-renewal", OPT_IN)
        crossing = usage_report(iccid, 800).model_dump_json().encode()
        await produce(kafka, topics.CARRIER_USAGE, crossing, key)
        request_id = renewal_request_id(iccid, uuid.UUID(cycle["order_id"]), "data_used_75", 1)
        await messages_about(kafka, topics.ORDERS_COMMANDS, order_id_for(request_id))

        completed = OrderCompleted(
            order_id=order_id_for(request_id), iccid=iccid, request_id=request_id,
            data_mb=1024, valid_until=datetime.now(UTC) + timedelta(days=14),
        )  # fmt: skip
        bad = {
            "undecodable": not_json(),
            "schema_invalid": changed(completed, valid_until=None),
            "unknown_schema_version": changed(completed, schema_version=2),
        }
        bad_at = {
            reason: await produce(kafka, topics.ORDERS_EVENTS, body, key)
            for reason, body in bad.items()
        }
        undecodable.append((topics.ORDERS_EVENTS, *bad_at["undecodable"]))
        completed_at = await produce(
            kafka, topics.ORDERS_EVENTS, completed.model_dump_json().encode(), key
        )
        renewal = await read_until(
            app,
            f"/lines/{iccid}/auto-renewal",
            lambda renewal: renewal["renewal_orders"][0]["status"] == "completed",
        )
        dead = {
            reason: await dead_letter_of(kafka, topics.ORDERS_EVENTS, body)
            for reason, body in bad.items()
        }

    assert [order["request_id"] for order in renewal["renewal_orders"]] == [request_id]
    assert renewal["status"] == "active"
    assert_behind_them(completed_at, bad_at)
    for reason, body in bad.items():
        assert_dead_lettered_by_provisioning(
            dead[reason], reason=reason, source=topics.ORDERS_EVENTS, body=body, key=key,
            at=bad_at[reason],
        )  # fmt: skip
