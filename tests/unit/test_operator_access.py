"""Operator tokens: who holds which, and what a request is told when it gets no answer:
without a valid token, or when the orders service does not answer."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client import REGISTRY

from services.operator.app import build_app
from services.operator.settings import OperatorSettings
from services.orders.app import build_app as build_orders_app
from shared.access import OperatorTokens

TOKENS = OperatorTokens.parse("alice=token-a, bob=token-b")


@pytest.fixture
async def operator_api() -> AsyncIterator[httpx.AsyncClient]:
    """The operator app without its lifespan: enough to see who gets in."""
    app = build_app(OperatorSettings(kafka_bootstrap_servers="127.0.0.1:9"), tokens=TOKENS)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://operator") as client:
        yield client


def refused(reason: str) -> float:
    return REGISTRY.get_sample_value("topup_operator_unauthorised_total", {"reason": reason}) or 0


def test_tokens_are_parsed_as_name_equals_token_pairs() -> None:
    assert TOKENS.by_operator == (("alice", "token-a"), ("bob", "token-b"))
    assert OperatorTokens.parse("").by_operator == ()
    assert OperatorTokens.parse("carol=x=y,").by_operator == (("carol", "x=y"),)


@pytest.mark.parametrize("text", ["alice", "=token", "alice=", "alice=a,alice=b"])
def test_a_malformed_token_list_is_an_error_not_a_silent_skip(text: str) -> None:
    with pytest.raises(ValueError, match="OPERATOR_TOKENS"):
        OperatorTokens.parse(text)


def test_a_token_names_its_operator_and_an_unknown_one_nobody() -> None:
    assert TOKENS.operator_of("token-b") == "bob"
    assert TOKENS.operator_of("token-") is None
    assert TOKENS.operator_of("") is None


def test_tokens_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPERATOR_TOKENS", "dave=secret")
    assert OperatorTokens.from_env().operator_of("secret") == "dave"


async def test_a_valid_token_is_answered_as_its_operator(operator_api: httpx.AsyncClient) -> None:
    response = await operator_api.get("/api/whoami", headers={"Authorization": "Bearer token-a"})
    assert response.status_code == 200
    assert response.json() == {"operator": "alice"}


@pytest.mark.parametrize(
    ("headers", "reason", "says"),
    [
        ({}, "missing", "missing bearer token"),
        ({"Authorization": "Basic dG9rZW4tYQ=="}, "malformed", "must be 'Bearer <token>'"),
        ({"Authorization": "Bearer "}, "malformed", "must be 'Bearer <token>'"),
        ({"Authorization": "Bearer token-c"}, "unknown", "unknown token"),
    ],
)
async def test_a_request_without_a_valid_token_is_refused_saying_why(
    operator_api: httpx.AsyncClient, headers: dict[str, str], reason: str, says: str
) -> None:
    before = refused(reason)
    for path in ("/api/whoami", "/api/topics", "/api/dead-letters", "/api/audit"):
        response = await operator_api.get(path, headers=headers)
        assert response.status_code == 401, path
        assert says in response.json()["detail"]
        assert response.headers["www-authenticate"] == "Bearer"
    replay = await operator_api.post("/api/dead-letters/replay", json={}, headers=headers)
    assert replay.status_code == 401
    assert refused(reason) == before + 5


async def test_with_no_tokens_configured_nobody_gets_in() -> None:
    app = build_app(OperatorSettings(), tokens=OperatorTokens(()))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://operator") as client:
        response = await client.get("/api/whoami", headers={"Authorization": "Bearer anything"})
    assert response.status_code == 401
    assert "no operator tokens are configured" in response.json()["detail"]


async def test_the_page_its_files_and_the_metrics_need_no_token(
    operator_api: httpx.AsyncClient,
) -> None:
    page = await operator_api.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert (await operator_api.get("/static/dashboard.js")).status_code == 200
    metrics = await operator_api.get("/metrics/")
    assert metrics.status_code == 200
    assert "topup_operator_unauthorised_total" in metrics.text


async def test_an_orders_service_that_does_not_answer_is_a_502_saying_so() -> None:
    settings = OperatorSettings(orders_url="http://127.0.0.1:9")  # nothing listens there
    app = build_app(settings, tokens=TOKENS)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://operator") as client:
        response = await client.get("/api/sagas", headers={"Authorization": "Bearer token-a"})
    assert response.status_code == 502
    assert "the orders service did not answer" in response.json()["detail"]


def test_orders_refuses_to_start_with_malformed_operator_tokens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPERATOR_TOKENS", "alice")
    with pytest.raises(ValueError, match="not name=token"):
        build_orders_app()
