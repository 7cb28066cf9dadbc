"""Builds the operator service: the dashboard page, the operator API, health and metrics.

It has no database of its own: it reads Kafka (topics, dead letters, the audit log)
and asks the orders service about orders and sagas.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import httpx
from aiokafka.errors import KafkaError
from fastapi import Depends, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from services.operator import api
from services.operator.audit import AUDIT_TOPIC, AuditLog, ensure_audit_topic
from services.operator.orders_client import OrdersClient
from services.operator.settings import OperatorSettings
from services.operator.topics import TopicSampler
from shared import topics
from shared.access import Callers
from shared.http_errors import GUARDED, HEALTH_ANSWERS, UPSTREAM, known_query_only, shown
from shared.http_guard import PAGE_CSP, PUBLIC_PATHS, secure
from shared.metrics import mount_metrics
from shared.settings import ServiceSettings, specialise
from shared.topic_layout import TopicLayout, ensure_topics

STATIC: Final = Path(__file__).parent / "static"
STALE_AFTER_SAMPLES: Final = 5

log = logging.getLogger("operator")


def settings() -> OperatorSettings:
    return OperatorSettings()


def build_app(
    service_settings: ServiceSettings | None = None,
    *,
    callers: Callers | None = None,
    orders_transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """`callers` default to API_TOKENS and OPERATOR_TOKENS (a malformed value stops the
    start here)."""
    config = specialise(service_settings, OperatorSettings)
    kafka = config.kafka
    sampler = TopicSampler(
        kafka,
        (*topics.ALL_TOPICS, AUDIT_TOPIC),
        config.sample_interval_s,
        config.rate_window_s,
    )
    audit = AuditLog(kafka)
    orders = OrdersClient(config.orders_url, orders_transport)
    health_http = httpx.AsyncClient(transport=orders_transport)  # the services' /health

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # waits for the broker
        layout = TopicLayout.of(config)
        await ensure_topics(kafka, topics.ALL_TOPICS, layout)
        await ensure_audit_topic(kafka, layout)
        await audit.start()
        sampling = asyncio.create_task(sampler.run(), name="topic sampler")
        log.info("operator ready on http://%s:%s", config.http_host, config.port)
        try:
            yield
        finally:
            sampling.cancel()
            with suppress(asyncio.CancelledError):
                await sampling
            await audit.stop()
            await orders.close()
            await health_http.aclose()

    app = FastAPI(title="operator service", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.settings = config
    app.state.callers = callers if callers is not None else Callers.from_env()
    if not app.state.callers.known:
        log.warning("no OPERATOR_TOKENS: every /api request will be refused")
    secure(app, public_paths=PUBLIC_PATHS | {"/"}, public_prefixes=("/static/",), csp=PAGE_CSP)
    app.state.sampler = sampler
    app.state.audit = audit
    app.state.orders = orders
    app.state.health_http = health_http
    app.include_router(
        api.router,
        responses={**GUARDED, **UPSTREAM},
        dependencies=[Depends(known_query_only)],
    )
    app.add_exception_handler(httpx.HTTPError, _orders_unreachable)
    app.add_exception_handler(KafkaError, _broker_unreachable)
    app.add_api_route("/health", health, methods=["GET"], responses=HEALTH_ANSWERS)
    app.add_api_route("/", dashboard, methods=["GET"], include_in_schema=False)
    app.mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static")
    mount_metrics(app)
    return app


async def _orders_unreachable(_request: Request, error: Exception) -> JSONResponse:
    said = shown(f"the orders service did not answer: {type(error).__name__}: {error}")
    log.warning("%s", said)
    return JSONResponse({"detail": said}, 502)


async def _broker_unreachable(_request: Request, error: Exception) -> JSONResponse:
    said = shown(f"the Kafka broker did not answer: {error!r}")
    log.warning("%s", said)
    return JSONResponse({"detail": said}, 503)


async def dashboard() -> FileResponse:
    """The live dashboard (static; it asks /api/* with the token the operator gives it)."""
    return FileResponse(STATIC / "index.html")


async def health(request: Request) -> JSONResponse:
    """The broker (a recent topic sample) and orders reachable; 503 when either is not."""
    config: OperatorSettings = request.app.state.settings
    sampler: TopicSampler = request.app.state.sampler
    checks: dict[str, dict[str, Any]] = {
        "kafka": _sampling(sampler, config.sample_interval_s * STALE_AFTER_SAMPLES),
        "orders": await request.app.state.orders.healthy(),
    }
    healthy = all(check["ok"] for check in checks.values())
    body = {
        "service": config.service_name,
        "status": "ok" if healthy else "unavailable",
        "checks": checks,
    }
    return JSONResponse(body, status_code=200 if healthy else 503)


def _sampling(sampler: TopicSampler, stale_after_s: float) -> dict[str, Any]:
    if sampler.sampled_at is None:
        return {"ok": False, "error": "no topic sample yet"}
    age = (datetime.now(UTC) - sampler.sampled_at).total_seconds()
    if age > stale_after_s:
        return {"ok": False, "error": f"last topic sample {age:.0f}s ago"}
    return {"ok": True, "sampled_at": sampler.sampled_at.isoformat()}
