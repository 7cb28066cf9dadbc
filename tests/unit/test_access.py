"""Who may call what: callers named by their tokens, each with scopes; what a request is
told when it has no valid token or lacks the scope; what needs no token at all."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client import REGISTRY

from services.operator.app import build_app
from services.operator.settings import OperatorSettings
from services.orders.app import build_app as build_orders_app
from shared.access import Callers, Scope

CALLERS = Callers.parse(
    "storefront:read=token-s, care:read+auto-renewal=token-c", "alice=token-a, bob=token-b"
)
ALICE = {"Authorization": "Bearer token-a"}


@pytest.fixture
async def operator_api() -> AsyncIterator[httpx.AsyncClient]:
    """The operator app without its lifespan: enough to see who gets in."""
    app = build_app(OperatorSettings(kafka_bootstrap_servers="127.0.0.1:9"), callers=CALLERS)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://operator") as client:
        yield client


def refused(reason: str) -> float:
    return REGISTRY.get_sample_value("topup_http_unauthorised_total", {"reason": reason}) or 0


def test_internal_systems_have_the_scopes_listed_and_operators_read_and_operate() -> None:
    care = CALLERS.find("token-c")
    assert care is not None
    assert care.name == "care"
    assert care.scopes == {Scope.READ, Scope.AUTO_RENEWAL}
    alice = CALLERS.find("token-a")
    assert alice is not None
    assert alice.scopes == {Scope.READ, Scope.OPERATE}
    assert Callers.parse("", "carol=x=y,").find("x=y") is not None


@pytest.mark.parametrize(
    ("api", "operators", "says"),
    [
        ("storefront=tok", "", r"not name:scope\+scope=token"),
        ("storefront:=tok", "", "scopes must be some of"),
        ("storefront:write=tok", "", "scopes must be some of"),
        ("", "alice", "not name=token"),
        ("", "=token", "not name=token"),
        ("alice:read=t1", "alice=t2", "name alice twice"),
    ],
)
def test_a_malformed_token_list_is_an_error_naming_the_entry_never_its_token(
    api: str, operators: str, says: str
) -> None:
    with pytest.raises(ValueError, match=says) as raised:
        Callers.parse(api, operators)
    assert "tok" not in str(raised.value).replace("token", "")


def test_a_token_names_its_caller_and_an_unknown_one_nobody() -> None:
    assert CALLERS.find("token-") is None
    assert CALLERS.find("") is None
    assert CALLERS.find("tökén") is None


def test_callers_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_TOKENS", "shop:read=s3cret")
    monkeypatch.setenv("OPERATOR_TOKENS", "dave=secret")
    callers = Callers.from_env()
    assert [c.name for c, _ in callers.known] == ["shop", "dave"]


async def test_a_valid_token_is_answered_as_its_caller(operator_api: httpx.AsyncClient) -> None:
    response = await operator_api.get("/api/whoami", headers=ALICE)
    assert response.status_code == 200
    assert response.json() == {"operator": "alice"}


@pytest.mark.parametrize(
    ("headers", "reason", "says"),
    [
        ({}, "missing", "missing bearer token"),
        ({"Authorization": "Basic dG9rZW4tYQ=="}, "malformed", "must be 'Bearer <token>'"),
        ({"Authorization": "Bearer "}, "malformed", "must be 'Bearer <token>'"),
        ({"Authorization": "Bearer " + "x" * 600}, "malformed", "must be 'Bearer <token>'"),
        ({"Authorization": "Bearer token-x"}, "unknown", "unknown token"),
    ],
)
async def test_a_request_without_a_valid_token_is_refused_saying_why(
    operator_api: httpx.AsyncClient, headers: dict[str, str], reason: str, says: str
) -> None:
    before = refused(reason)
    for path in ("/api/whoami", "/api/topics", "/api/dead-letters", "/api/audit", "/api/nowhere"):
        response = await operator_api.get(path, headers=headers)
        assert response.status_code == 401, path
        assert says in response.json()["detail"]
        assert response.headers["www-authenticate"] == "Bearer"
    replay = await operator_api.post("/api/dead-letters/replay", json={}, headers=headers)
    assert replay.status_code == 401
    assert refused(reason) == before + 6


async def test_two_authorization_headers_are_refused_whatever_they_hold(
    operator_api: httpx.AsyncClient,
) -> None:
    twice = [("Authorization", "Bearer token-s"), ("Authorization", "Bearer token-a")]
    response = await operator_api.get("/api/sagas", headers=twice)
    assert response.status_code == 401
    assert response.json() == {"detail": "send one Authorization header, not several"}


async def test_an_internal_system_is_refused_the_operator_api_with_a_403(
    operator_api: httpx.AsyncClient,
) -> None:
    storefront = {"Authorization": "Bearer token-s"}
    response = await operator_api.get("/api/whoami", headers=storefront)
    assert response.status_code == 403
    assert response.json() == {"detail": "storefront may not do this: it needs the scope 'operate'"}
    replay = await operator_api.post(
        "/api/dead-letters/replay", json={"ids": ["payments.events.v1.dlt:0:0"]}, headers=storefront
    )
    assert replay.status_code == 403


async def test_a_body_is_not_read_before_its_caller_is_known(
    operator_api: httpx.AsyncClient,
) -> None:
    read = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal read
        for _ in range(1000):
            read += 1
            yield b"x" * 65536

    anonymous = await operator_api.post("/api/dead-letters/replay", content=body())
    assert (anonymous.status_code, read) == (401, 0)
    too_large = await operator_api.post("/api/dead-letters/replay", content=body(), headers=ALICE)
    assert too_large.status_code == 413  # counted while read: no Content-Length given
    assert read <= 3
    declared = await operator_api.post(
        "/api/dead-letters/replay",
        content=b"{}",
        headers={**ALICE, "Content-Length": str(10 * 1024 * 1024)},
    )
    assert declared.status_code == 413


async def test_with_no_tokens_configured_nobody_gets_in() -> None:
    app = build_app(OperatorSettings(), callers=Callers(()))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://operator") as client:
        response = await client.get("/api/whoami", headers={"Authorization": "Bearer anything"})
    assert response.status_code == 401
    assert "no tokens are configured" in response.json()["detail"]


async def test_the_page_its_files_health_the_metrics_and_the_api_document_need_no_token(
    operator_api: httpx.AsyncClient,
) -> None:
    page = await operator_api.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert (await operator_api.get("/static/dashboard.js")).status_code == 200
    metrics = await operator_api.get("/metrics/")
    assert metrics.status_code == 200
    assert "topup_http_unauthorised_total" in metrics.text
    document = (await operator_api.get("/openapi.json")).json()
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert (await operator_api.get("/docs")).status_code == 401  # no page: the document is it


async def test_an_orders_service_that_does_not_answer_is_a_502_saying_so() -> None:
    settings = OperatorSettings(orders_url="http://127.0.0.1:9")  # nothing listens there
    app = build_app(settings, callers=CALLERS)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://operator") as client:
        response = await client.get("/api/sagas", headers=ALICE)
    assert response.status_code == 502
    assert "the orders service did not answer" in response.json()["detail"]


def test_orders_refuses_to_start_with_malformed_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPERATOR_TOKENS", "alice")
    with pytest.raises(ValueError, match="not name=token"):
        build_orders_app()
    monkeypatch.setenv("OPERATOR_TOKENS", "")
    monkeypatch.setenv("API_TOKENS", "shop:everything=x")
    with pytest.raises(ValueError, match="scopes must be some of"):
        build_orders_app()
