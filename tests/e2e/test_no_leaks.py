"""A customer's details stay where they belong: an order and an auto-renewal placed with
known phone number, email address and payment token, then every error path we know
(invalid fields, a NUL, a card number, a too-large body, a URL-encoded search, a bad
message dead-lettered), and no log line of any service and no answer of the operator
API gives one of them back (docs/operations.md says what operators see). And a storm of
oversize requests leaves every service answering and its consumers in their groups."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import urllib.parse
import uuid
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from deploy.local.processes import ServiceProcess
from shared import topics
from tests.credentials import OPERATOR, RENEWER
from tests.e2e.test_saga_outcomes import final_order, publish
from tests.factories import auto_renewal_settings, order_request

pytestmark = pytest.mark.e2e

Services = dict[str, ServiceProcess]
TEN_MB = b"x" * (10 * 1024 * 1024)


def customer() -> dict[str, str]:
    """Details no other test uses, so finding one means this test leaked it."""
    tail = f"{secrets.randbelow(10**6):06d}"
    return {
        "msisdn": f"+4477009{tail}",
        "email": f"leak-{uuid.uuid4().hex[:10]}@example.com",
        "payment_token": f"tok_secret_{uuid.uuid4().hex[:16]}",
    }


async def drive_every_error_path(
    services: Services, producer: AIOKafkaProducer, iccid: str, details: dict[str, str]
) -> None:
    lines = f"{services['provisioning'].base_url}/lines/{iccid}/auto-renewal"
    orders = services["orders"].base_url
    async with httpx.AsyncClient(headers=RENEWER, timeout=30) as client:
        set_up = await client.put(lines, json=auto_renewal_settings(**details))
        assert set_up.status_code == 200, set_up.text
        with_nul = {**details, "email": details["email"] + "\x00"}
        with_newline = {**details, "msisdn": details["msisdn"] + "\n"}
        with_card = {**details, "payment_token": "4242.4242.4242.4242"}
        refused = [
            await client.put(lines, json=auto_renewal_settings(**with_nul)),
            await client.put(lines, json=auto_renewal_settings(**with_newline)),
            await client.put(lines, json=auto_renewal_settings(**with_card)),
            await client.put(lines, content=json.dumps(details).encode() + TEN_MB),
            await client.get(f"{orders}/orders", params={"request_id": details["email"] + "\x00"}),
            await client.get(f"{orders}/orders", params={"request_id": details["msisdn"]}),
            await client.get(f"{orders}/lines/{iccid}/orders", headers={"Authorization": ""}),
        ]  # fmt: skip
    assert [r.status_code for r in refused] == [422, 422, 422, 413, 422, 404, 401]
    # A message with the same details that orders cannot take: dead-lettered with them.
    bad = {**order_request(iccid=iccid, **details), "package_id": {"not": "text"}}
    await producer.send_and_wait(topics.ORDERS_COMMANDS, json.dumps(bad).encode())


async def operator_answers(operator: ServiceProcess, iccid: str, details: dict[str, str]) -> str:
    async with httpx.AsyncClient(base_url=operator.base_url, headers=OPERATOR, timeout=60) as op:
        answers = [
            await op.get("/api/orders/search", params={"q": iccid}),
            await op.get("/api/orders/search", params={"q": urllib.parse.quote(iccid)}),
            await op.get("/api/orders/search", params={"q": details["msisdn"]}),
            await op.get("/api/dead-letters"),
            await op.get("/api/audit"),
            await op.get("/api/sagas"),
        ]
    assert answers[0].status_code == 200, answers[0].text
    return "\n".join(answer.text for answer in answers)


async def test_no_log_line_and_no_operator_answer_gives_back_a_customers_details(
    services: Services, operator: ServiceProcess, producer: AIOKafkaProducer
) -> None:
    details = customer()
    request = order_request(**details)
    iccid = request["iccid"]
    order_id = await publish(producer, request)
    assert (await final_order(services, order_id))["state"] == "COMPLETED"
    await drive_every_error_path(services, producer, iccid, details)
    await asyncio.sleep(2)  # the dead letter written, the audit record relayed
    answered = await operator_answers(operator, iccid, details)
    assert "auto_renewal.set" in answered  # the audit log names who set it...
    assert "care" in answered  # ...the internal system whose token set it
    logs = {p.name: p.read_text(errors="replace") for p in _log_paths(services, operator)}
    raw = [iccid, *details.values(), urllib.parse.quote(details["email"])]
    leaks = {
        where: [value for value in raw if value in text]
        for where, text in {"operator API": answered, **logs}.items()
    }
    assert {where: found for where, found in leaks.items() if found} == {}


def _log_paths(services: Services, operator: ServiceProcess) -> list[Any]:
    return [p.log_path for p in (*services.values(), operator) if p.log_path is not None]


async def test_fifty_oversize_requests_at_once_leave_every_service_answering(
    services: Services, producer: AIOKafkaProducer
) -> None:
    async def oversize(client: httpx.AsyncClient, url: str, n: int) -> int:
        headers = RENEWER if n % 2 else {}  # with a token (413) and without (401)
        response = await client.put(url, content=TEN_MB, headers=headers)
        return response.status_code

    url = f"{services['provisioning'].base_url}/lines/8944500102198304826/auto-renewal"
    async with httpx.AsyncClient(timeout=60) as client:
        storm = asyncio.gather(*(oversize(client, url, n) for n in range(50)))
        await asyncio.sleep(0.2)  # the storm under way
        started = time.monotonic()
        health = {
            name: (await client.get(f"{process.base_url}/health", timeout=1.0)).json()
            for name, process in services.items()
        }
        took = time.monotonic() - started
        statuses = await storm
    assert sorted(set(statuses)) == [401, 413]
    assert took < 3.0  # three /health answers, each within its 1 s timeout
    for name, body in health.items():
        assert body["checks"]["kafka"]["ok"], name
        assert body["status"] in {"ok", "degraded"}, (name, body)
    # The consumers are still in their groups: an order goes through the whole saga.
    order_id = await publish(producer, order_request())
    assert (await final_order(services, order_id))["state"] == "COMPLETED"
