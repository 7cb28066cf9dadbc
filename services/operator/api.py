"""The operator API (/api/*): every endpoint needs an operator's bearer token, and
every state-changing one is audited (services/operator/audit.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import AfterValidator

from services.operator import dead_letters
from services.operator.dead_letters import NotFound, ReplayRequest
from services.operator.orders_client import OrdersCaller, OrdersClient
from services.operator.search import search
from services.operator.services_health import services_health
from services.operator.settings import OperatorSettings
from shared.access import Operator
from shared.http_errors import not_found, printable, quote
from shared.limits import MAX_STUCK_AFTER_S
from shared.logs import mask_fields


class MaskedJSONResponse(JSONResponse):
    """Every string of an answer masked (shared/logs.py): ICCIDs, phone numbers, emails,
    card numbers, tokens. Operators search by a full ICCID; no answer gives one back."""

    def render(self, content: Any) -> bytes:
        return super().render(mask_fields(content))


router = APIRouter(prefix="/api", default_response_class=MaskedJSONResponse)


def _settings(request: Request) -> OperatorSettings:
    settings: OperatorSettings = request.app.state.settings
    return settings


@router.get("/whoami")
async def whoami(who: Operator) -> dict[str, str]:
    return {"operator": who}


@router.get("/topics")
async def topics(request: Request, _who: Operator) -> dict[str, Any]:
    overview: dict[str, Any] = request.app.state.sampler.overview()
    return overview


@router.get("/services")
async def services(request: Request, _who: Operator) -> dict[str, Any]:
    """Each service's /health: ok, degraded (with its problems), unavailable or unreachable."""
    settings = _settings(request)
    urls = {
        "orders": settings.orders_url,
        "payments": settings.payments_url,
        "provisioning": settings.provisioning_url,
    }
    return await services_health(request.app.state.health_http, urls)


@router.get("/sagas", response_model=None)
async def sagas(
    request: Request,
    _who: Operator,
    stuck_after_s: float | None = Query(default=None, gt=0, le=MAX_STUCK_AFTER_S),
) -> dict[str, Any] | JSONResponse:
    """Orders' saga overview, asked with the caller's token; ICCIDs masked."""
    after = stuck_after_s or _settings(request).stuck_after_s
    answer = await _orders(request).sagas(after)
    if answer.status_code != 200:
        return MaskedJSONResponse(answer.json(), status_code=answer.status_code)
    body: dict[str, Any] = answer.json()
    return body


def _orders(request: Request) -> OrdersCaller:
    orders: OrdersClient = request.app.state.orders
    return orders.as_caller(request.headers["authorization"])


def _searchable(query: str) -> str:
    query = query.strip()
    if not query or printable(query) != query:
        raise ValueError("search for an order id, a request id or an ICCID (printable text)")
    return query


Search = Annotated[str, Query(min_length=1, max_length=200), AfterValidator(_searchable)]


@router.get("/orders/search", responses=not_found("No order, request or line matches"))
async def orders_search(request: Request, _who: Operator, q: Search) -> dict[str, Any]:
    settings = _settings(request)
    found = await search(
        _orders(request),
        settings.kafka,
        q,
        timedelta(seconds=settings.timeline_margin_s),
        settings.timeline_max_scan,
    )
    if found is None:
        raise HTTPException(404, detail=f"no order, request or line matches {quote(q)}")
    return found


@router.get("/dead-letters")
async def list_dead_letters(
    request: Request, _who: Operator, limit: int = Query(default=200, ge=1, le=10_000)
) -> dict[str, Any]:
    """The newest dead letters first, each with who replayed it, if anyone did."""
    return {"dead_letters": await dead_letters.newest(request.app.state.audit, limit)}


@router.post("/dead-letters/replay", responses=not_found("Some dead letter named is not there"))
async def replay_dead_letters(
    request: Request, who: Operator, body: ReplayRequest
) -> dict[str, Any]:
    try:
        ids = await dead_letters.replay(request.app.state.audit, who, body)
    except NotFound as error:
        raise HTTPException(404, detail=str(error)) from None
    return {"replayed": ids, "by": who}


@router.get("/audit")
async def audit(
    request: Request, _who: Operator, limit: int = Query(default=100, ge=1, le=10_000)
) -> dict[str, Any]:
    entries = await request.app.state.audit.latest(limit)
    return {"entries": [entry.__dict__ for entry in entries]}
