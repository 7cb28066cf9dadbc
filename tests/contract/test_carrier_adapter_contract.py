"""The carrier adapter speaks the partner API as its published OpenAPI document says
(docs/vendor/airalo/partner-api-topups.openapi.yml): every request it sends and every
response it parses, recorded while it talks to the carrier simulator, is validated
against that document with openapi-core.

How a response is checked: against the operation's documented status code (openapi-core);
else against the operation's own variants the document lists as `x-<status>:...`; else,
for a status the operation does not document (a 401 to a call with an expired token, a
429 to a top-up), against the shape the document gives that status on another operation.
A status the document has nowhere (503) fails the test: none is expected here.

One reading of the document is needed: it uses `type: 'null'` (JSON Schema's null type),
which OpenAPI 3.0.1 lacks; it is read as OpenAPI 3.0's `nullable: true, enum: [null]`.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from openapi_core import Config, OpenAPI
from openapi_core.exceptions import OpenAPIError
from openapi_core.testing import MockRequest, MockResponse
from openapi_schema_validator import OAS30Validator
from pydantic import SecretStr
from sqlalchemy import delete

from services.carrier_simulator import ledger
from services.carrier_simulator.app import build_app
from services.provisioning import db, provisioning
from services.provisioning.carrier import Applied, CarrierUnavailable, Failed
from services.provisioning.partner_api import PartnerApiCarrier
from services.provisioning.provisioning import Provisioner
from services.provisioning.retrier import settle_due
from services.provisioning.topup_states import RetryPolicy, TopUpStatus
from shared.events import TopUpLine
from shared.settings import REPO_ROOT
from tests.clock import Clock
from tests.factories import random_iccid
from tests.unit.carrier_fixtures import (
    SimulatedCarrier,
    served,
    simulated_carrier,
    simulator_settings,
)
from tests.unit.harness import sqlite_sessions

DOCUMENT = REPO_ROOT / "docs" / "vendor" / "airalo" / "partner-api-topups.openapi.yml"
SERVER = "https://partners-api.airalo.com"  # the document's server: the host is not checked
ONE_GB = "eurolink-7days-1gb-topup"
SUSPENDED = "8944500102198304834"


def read_null_as_nullable(node: Any) -> Any:
    if isinstance(node, dict):
        if node.get("type") == "null":
            rest = {k: v for k, v in node.items() if k != "type"}
            return {**read_null_as_nullable(rest), "nullable": True, "enum": [None]}
        return {key: read_null_as_nullable(value) for key, value in node.items()}
    if isinstance(node, list):
        return [read_null_as_nullable(item) for item in node]
    return node


@cache
def document() -> dict[str, Any]:
    loaded = yaml.safe_load(DOCUMENT.read_text())
    assert isinstance(loaded, dict)
    return dict(read_null_as_nullable(loaded))


@cache
def openapi() -> OpenAPI:
    return OpenAPI.from_dict(document(), config=Config(spec_validator_cls=None))


@dataclass(frozen=True)
class Exchange:
    request: httpx.Request
    response: httpx.Response

    def __str__(self) -> str:
        return f"{self.request.method} {self.request.url.path} -> {self.response.status_code}"


class Recorder:
    """Every request the adapter sends, and each with the response it got, if it got one
    (httpx event hooks)."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.exchanges: list[Exchange] = []

    def hooks(self) -> dict[str, list[Any]]:
        async def on_request(request: httpx.Request) -> None:
            await request.aread()
            self.requests.append(request)

        async def on_response(response: httpx.Response) -> None:
            await response.aread()
            self.exchanges.append(Exchange(response.request, response))

        return {"request": [on_request], "response": [on_response]}

    def seen(self) -> set[tuple[str, str, int]]:
        return {(e.request.method, template(e.request.url.path), e.response.status_code)
                for e in self.exchanges}  # fmt: skip


def template(path: str) -> str:
    parts = path.split("/")
    if len(parts) == 5 and parts[2] == "sims":
        name = "sim_iccid" if parts[4] == "usage" else "iccid"
        return f"/v2/sims/{{{name}}}/{parts[4]}"
    return path


def mock_request(request: httpx.Request) -> MockRequest:
    return MockRequest(
        SERVER,
        request.method.lower(),
        request.url.path,
        args=dict(request.url.params.multi_items()),
        headers=dict(request.headers),
        data=request.content or None,
        content_type=request.headers.get("content-type", ""),
    )


def check(exchange: Exchange) -> None:
    """The response as the document says (see above)."""
    request = mock_request(exchange.request)
    response = exchange.response
    mocked = MockResponse(
        response.content,
        status_code=response.status_code,
        headers=dict(response.headers),
        content_type=response.headers.get("content-type", ""),
    )
    try:
        openapi().validate_response(request, mocked)
        return
    except OpenAPIError as exc:
        documented_error: Exception = exc
    body = response.json()
    shapes = list(
        variants(template(exchange.request.url.path), exchange.request.method, response.status_code)
    )
    assert shapes, f"{exchange}: no shape for this status in the document ({documented_error})"
    assert any(OAS30Validator(shape).is_valid(body) for shape in shapes), (
        f"{exchange}: {body!r} has none of the document's shapes ({documented_error})"
    )


def variants(path: str, method: str, status: int) -> Iterator[dict[str, Any]]:
    """The operation's own `<status>` and `x-<status>:...` schemas (and the variants the
    document labels with that status, like `x-422:Request Access Token (401)`); when it
    has none, those every other operation gives that status."""
    operations = [
        (p, m, operation)
        for p, item in document()["paths"].items()
        for m, operation in item.items()
        if isinstance(operation, dict) and "responses" in operation
    ]
    own = [o for p, m, o in operations if p == path and m == method.lower()]
    for candidates in (own, [o for _, _, o in operations]):
        found = [
            media["schema"]
            for operation in candidates
            for key, answer in operation["responses"].items()
            if key == str(status) or key.startswith(f"x-{status}:") or f"({status})" in key
            for media in answer.get("content", {}).values()
        ]
        if found:
            yield from found
            return


def assert_all_valid(recorder: Recorder) -> None:
    """Every request sent, and every response received, as the document says."""
    assert recorder.requests
    for request in recorder.requests:
        openapi().validate_request(mock_request(request))
    for exchange in recorder.exchanges:
        check(exchange)


@asynccontextmanager
async def recorded_carrier(
    tmp_path: Path, **settings: Any
) -> AsyncIterator[tuple[SimulatedCarrier, Recorder]]:
    recorder = Recorder()
    async with simulated_carrier(tmp_path, event_hooks=recorder.hooks(), **settings) as carrier:
        yield carrier, recorder


def new_key() -> str:
    return f"{uuid.uuid4()}:topup"


def test_the_vendored_document_read_this_way_is_valid_openapi() -> None:
    OpenAPI.from_dict(document())  # with the spec validator


async def test_the_top_up_journey_is_as_the_document_says(tmp_path: Path) -> None:
    async with recorded_carrier(tmp_path) as (carrier, recorder):
        adapter, key, iccid = carrier.adapter, new_key(), random_iccid()
        assert await adapter.topup_packages(iccid)
        assert isinstance(await adapter.top_up(key, iccid, ONE_GB), Applied)
        assert isinstance(await adapter.status(key, iccid), Applied)
        assert await adapter.held_packages(iccid)
        assert await adapter.usage(iccid) is not None
    assert_all_valid(recorder)
    assert recorder.seen() == {
        ("POST", "/v2/token", 200),
        ("GET", "/v2/sims/{iccid}/topups", 200),
        ("POST", "/v2/orders/topups", 200),
        ("GET", "/v2/orders", 200),
        ("GET", "/v2/sims/{iccid}/packages", 200),
        ("GET", "/v2/sims/{sim_iccid}/usage", 200),
    }


async def test_a_refused_token_is_renewed_as_the_document_says(tmp_path: Path) -> None:
    async with recorded_carrier(tmp_path) as (carrier, recorder):
        iccid = random_iccid()
        await carrier.adapter.usage(iccid)
        async with carrier.app.state.sessions.begin() as session:
            await session.execute(delete(ledger.access_tokens))
        carrier.app.state.simulator.tokens.clear()
        assert isinstance(await carrier.adapter.top_up(new_key(), iccid, ONE_GB), Applied)
    assert_all_valid(recorder)
    statuses = [(e.request.url.path, e.response.status_code) for e in recorder.exchanges]
    assert statuses[-3:] == [
        ("/v2/orders/topups", 401),
        ("/v2/token", 200),
        ("/v2/orders/topups", 200),
    ]


async def test_wrong_credentials_get_the_documented_refusal(tmp_path: Path) -> None:
    async with recorded_carrier(tmp_path) as (carrier, recorder):
        wrong = PartnerApiCarrier(carrier.adapter._client, "topup-local", SecretStr("wrong"), 1.0)
        with pytest.raises(CarrierUnavailable):
            await wrong.usage(random_iccid())
    assert_all_valid(recorder)
    assert recorder.seen() == {("POST", "/v2/token", 401)}


async def test_a_rate_limited_call_is_answered_as_the_document_says(tmp_path: Path) -> None:
    async with recorded_carrier(tmp_path, carrier_rate_limit_per_s=2) as (carrier, recorder):
        iccid = random_iccid()
        await carrier.adapter.usage(iccid)
        with pytest.raises(CarrierUnavailable) as limited:
            await carrier.adapter.usage(iccid)
        with pytest.raises(CarrierUnavailable):
            await carrier.adapter.top_up(new_key(), iccid, ONE_GB)
    assert limited.value.retry_after_s == 1
    assert_all_valid(recorder)
    assert ("GET", "/v2/sims/{sim_iccid}/usage", 429) in recorder.seen()
    assert ("POST", "/v2/orders/topups", 429) in recorder.seen()


async def test_refusals_and_unknown_lines_are_answered_as_the_document_says(
    tmp_path: Path,
) -> None:
    async with recorded_carrier(tmp_path, carrier_suspended_iccids={SUSPENDED}) as (
        carrier,
        recorder,
    ):
        adapter = carrier.adapter
        reasons = [
            await adapter.top_up(new_key(), SUSPENDED, ONE_GB),
            await adapter.top_up(new_key(), "8900000000000000000", ONE_GB),
            await adapter.top_up(new_key(), random_iccid(), "no-such-topup"),
        ]
        assert [r.reason for r in reasons if isinstance(r, Failed)] == [
            "line_suspended",
            "line_unknown",
            "package_unknown",
        ]
        assert await adapter.usage("8900000000000000000") is None
        assert await adapter.held_packages("8900000000000000000") is None
        assert await adapter.topup_packages(SUSPENDED) is None
    assert_all_valid(recorder)


async def test_a_top_up_answered_after_the_timeout_is_settled_from_the_line_without_a_second(
    tmp_path: Path,
) -> None:
    """The carrier applies the top-up and commits, then holds its answer past our timeout:
    the top-up is UNKNOWN, the retrier asks the carrier about the key on the line, finds it
    and applies it, and the carrier's ledger has one order for the key."""
    config = simulator_settings(tmp_path, carrier_hang_s=1.5, carrier_timeout_applied_rate=1.0)
    app = build_app(config)
    recorder = Recorder()
    async with (
        served(app) as base_url,
        sqlite_sessions(tmp_path / "provisioning.db", db.metadata) as sessions,
        httpx.AsyncClient(base_url=base_url, timeout=0.5, event_hooks=recorder.hooks()) as client,
    ):
        adapter = PartnerApiCarrier(
            client, config.carrier_client_id, config.carrier_client_secret, 0.5
        )
        clock = Clock(datetime(2026, 12, 1, tzinfo=UTC))
        provisioner = Provisioner(adapter, retry=RetryPolicy(backoff_base_s=10), clock=clock)
        await adapter.usage(random_iccid())  # the token, while the carrier answers in time
        app.state.behaviour.timeout_rate = 1.0  # from now on: processed, answered late
        order_id, iccid = uuid.uuid4(), random_iccid()
        command = TopUpLine(order_id=order_id, iccid=iccid, package_id="eu-1gb-7d", data_mb=1024,
                            validity_days=7, idempotency_key=f"{order_id}:topup")  # fmt: skip
        await provisioning.top_up(sessions, provisioner, command)
        async with sessions() as session:
            unknown = await db.find_topup(session, command.idempotency_key)
        assert unknown is not None
        assert (unknown.status, unknown.attempts) == (TopUpStatus.UNKNOWN, 1)

        app.state.behaviour.timeout_rate = 0.0  # the carrier answers in time again
        clock.advance(10)
        assert await settle_due(sessions, provisioner) == 1
        async with sessions() as session:
            settled = await db.find_topup(session, command.idempotency_key)
        assert settled is not None
        assert (settled.status, settled.attempts) == (TopUpStatus.APPLIED, 1)
        async with app.state.sessions() as session:
            orders, _ = await ledger.find_orders(
                session,
                iccid_like=iccid,
                description_like=command.idempotency_key,
                limit=10,
                offset=0,
            )
        assert [o.description for o in orders] == [command.idempotency_key]
    sent = [r.url.path for r in recorder.requests]
    assert sent.count("/v2/orders/topups") == 1  # sent once; its answer never came in time
    assert not [e for e in recorder.exchanges if e.request.url.path == "/v2/orders/topups"]
    assert sent[-1] == "/v2/orders"  # settled by asking about the key on the line
    assert_all_valid(recorder)
