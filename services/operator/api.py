"""The operator API (/api/*): every endpoint needs an operator's bearer token, and
every state-changing one is audited (services/operator/audit.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse

from services.operator import dead_letters
from services.operator.dead_letters import NotFound, ReplayRequest
from services.operator.search import search
from services.operator.services_health import services_health
from services.operator.settings import OperatorSettings
from shared.access import Operator
from shared.logs import mask

router = APIRouter(prefix="/api")


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
    stuck_after_s: float | None = Query(default=None, gt=0),
) -> dict[str, Any] | JSONResponse:
    """Orders' saga overview, asked with the caller's token; ICCIDs masked."""
    after = stuck_after_s or _settings(request).stuck_after_s
    answer = await request.app.state.orders.sagas(request.headers["authorization"], after)
    if answer.status_code != 200:
        return JSONResponse(answer.json(), status_code=answer.status_code)
    body: dict[str, Any] = answer.json()
    for stuck in body["stuck"]:
        stuck["iccid"] = mask(stuck["iccid"])
    return body


@router.get("/orders/search")
async def orders_search(
    request: Request, _who: Operator, q: str = Query(min_length=1, max_length=200)
) -> dict[str, Any]:
    settings = _settings(request)
    found = await search(
        request.app.state.orders,
        settings.kafka,
        q.strip(),
        timedelta(seconds=settings.timeline_margin_s),
        settings.timeline_max_scan,
    )
    if found is None:
        raise HTTPException(404, detail=f"no order, request or line matches {mask(q)!r}")
    return found


@router.get("/dead-letters")
async def list_dead_letters(
    request: Request, _who: Operator, limit: int = Query(default=200, ge=1, le=10_000)
) -> dict[str, Any]:
    """The newest dead letters first, each with who replayed it, if anyone did."""
    return {"dead_letters": await dead_letters.newest(request.app.state.audit, limit)}


@router.post("/dead-letters/replay")
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
