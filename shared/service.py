"""What every service process is: a FastAPI app (health and read API) that owns
one Kafka broker and one database, started and stopped with the app."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from faststream.kafka import KafkaBroker, KafkaRouter
from sqlalchemy.ext.asyncio import AsyncEngine

from shared import db, outbox, tracing
from shared.access import Callers
from shared.audit import ensure_audit_topic
from shared.batches import start_batch_consumers
from shared.http_errors import GUARDED, HEALTH_ANSWERS, known_query_only
from shared.http_guard import PUBLIC_PATHS, secure
from shared.kafka import build_broker
from shared.logs import configure_logging, uvicorn_log_config
from shared.metrics import mount_metrics
from shared.migrations import migrate
from shared.progress import PROGRESS
from shared.settings import ServiceSettings
from shared.topic_layout import TopicLayout, ensure_topics
from shared.worker import BackgroundTask, Runtime

HEALTH_TIMEOUT_S = 3.0


def build_service_app(
    settings: ServiceSettings,
    *,
    migrations: Path,
    kafka_router: KafkaRouter,
    topics: tuple[str, ...],
    http_router: APIRouter | None = None,
    background: Sequence[BackgroundTask] = (),
    public_paths: frozenset[str] = frozenset(),
) -> FastAPI:
    """`public_paths`: beside /health and /metrics, paths whose callers prove who they are
    otherwise (a signed webhook), so the bearer check lets them through."""
    PROGRESS.stuck_after_s = settings.partition_stuck_after_s
    engine = db.create_engine(settings.resolved_database_url)
    sessions = db.sessions_for(engine)
    broker = build_broker(settings, sessions=sessions)
    broker.include_router(kafka_router)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await migrate(engine, migrations)
        layout = TopicLayout.of(settings)
        await ensure_topics(settings, topics, layout)
        await ensure_audit_topic(settings, layout)  # a service's API changes are audited there
        await broker.start()
        # The subscribers declared `in_batches` are fed by batch consumers of their own.
        batches = await start_batch_consumers(
            broker.subscribers, sessions, broker.context,
            max_records=settings.consumer_batch_max_records,
            one_at_a_time=settings.tracing_enabled,  # each message its own span
        )  # fmt: skip
        runtime = Runtime(settings, broker, sessions)
        tasks = [
            asyncio.create_task(task(runtime), name=task.__name__)
            for task in (outbox.relay, *background)
        ]
        logging.getLogger(settings.service_name).info(
            "%s ready on http://%s:%s", settings.service_name, settings.http_host, settings.port
        )
        try:
            yield
        finally:
            # The batches in hand finish first; then the background tasks (the calls
            # still out among them) and the one-at-a-time subscribers stop.
            await asyncio.gather(*(consumer.stop() for consumer in batches))
            for running in tasks:
                running.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await broker.stop()
            await engine.dispose()
            tracing.stop()  # exports the spans still buffered

    app = FastAPI(
        title=f"{settings.service_name} service",
        lifespan=lifespan,
        docs_url=None,  # the document is /openapi.json; no page that loads scripts from a CDN
        redoc_url=None,
    )
    # Read at start-up, so a malformed API_TOKENS or OPERATOR_TOKENS stops the service
    # with its reason instead of failing the first request (shared/access.py).
    app.state.callers = Callers.from_env()
    secure(app, public_paths=PUBLIC_PATHS | public_paths)
    app.state.settings = settings
    app.state.broker = broker
    app.state.engine = engine
    app.state.sessions = sessions
    app.include_router(health_router)
    mount_metrics(app)
    if http_router is not None:
        app.include_router(http_router, responses=GUARDED, dependencies=[Depends(known_query_only)])
    return app


health_router = APIRouter()


@health_router.get("/health", responses=HEALTH_ANSWERS)
async def health(request: Request) -> JSONResponse:
    """503 `unavailable` when the broker or the database cannot be reached; 200 `degraded`,
    with the problems in words, when this process reaches both but is not moving (a stuck
    partition, a failing outbox relay, parked outbox rows: shared/progress.py); else 200 `ok`.
    """
    broker: KafkaBroker = request.app.state.broker
    engine: AsyncEngine = request.app.state.engine
    checks: dict[str, dict[str, Any]] = {
        "kafka": await _check_kafka(broker),
        "database": await _check_database(engine),
    }
    problems = PROGRESS.problems()
    checks["progress"] = {"ok": not problems, "problems": problems}
    reachable = checks["kafka"]["ok"] and checks["database"]["ok"]
    status = "unavailable" if not reachable else "degraded" if problems else "ok"
    body = {
        "service": request.app.state.settings.service_name,
        "status": status,
        "checks": checks,
    }
    return JSONResponse(body, status_code=200 if reachable else 503)


async def _check_kafka(broker: KafkaBroker) -> dict[str, Any]:
    try:
        ok = await broker.ping(timeout=HEALTH_TIMEOUT_S)
    except Exception as exc:  # a health check reports failures, it never raises them
        return {"ok": False, "error": repr(exc)}
    return {"ok": ok} if ok else {"ok": False, "error": "broker did not answer"}


async def _check_database(engine: AsyncEngine) -> dict[str, Any]:
    try:
        await db.ping(engine)
    except Exception as exc:
        return {"ok": False, "backend": engine.dialect.name, "error": repr(exc)}
    return {"ok": True, "backend": engine.dialect.name}


def run(app: FastAPI, settings: ServiceSettings) -> None:
    """Serve until SIGINT/SIGTERM; uvicorn runs the lifespan shutdown either way."""
    configure_logging(settings.service_name, settings.log_level)
    uvicorn.run(
        app,
        host=settings.http_host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        log_config=uvicorn_log_config(),
        access_log=False,
    )
