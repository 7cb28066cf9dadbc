"""The carrier simulator's HTTP API: the subset of the partner API provisioning's adapter
uses, answering in the API's own envelopes (`{"data": ..., "meta": {"message": ...}}`)
and errors, as its OpenAPI document (docs/vendor/airalo/) has them:

    POST /v2/token                  client credentials -> bearer token (expires)
    GET  /v2/sims/{iccid}/topups    the top-up packages a line may buy
    POST /v2/orders/topups          buy one (multipart: package_id, iccid, description)
    GET  /v2/orders                 orders, filter[iccid] / filter[description] (LIKE)
    GET  /v2/sims/{iccid}/packages  the packages a line holds
    GET  /v2/sims/{sim_iccid}/usage the line's remaining and total data

It behaves like the outside world (settings.py): every answer takes time, some are 503
(nothing done), some are held CARRIER_HANG_S (longer than a client waits), before or
after acting, a rate beyond CARRIER_RATE_LIMIT_PER_S gets 429 with Retry-After, a line
in CARRIER_SUSPENDED_ICCIDS is refused, a malformed ICCID (not E.118) is unknown, and
tokens expire. `app.state.behaviour` may be changed while it runs (a test's outage).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import sqlalchemy.exc
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import ClientDisconnect

from services.carrier_simulator import ledger
from services.carrier_simulator.ledger import Order
from services.carrier_simulator.packages import PACKAGES, CarrierPackage, prices
from services.carrier_simulator.settings import CarrierSimulatorSettings
from services.carrier_simulator.usage_reports import run_usage_reports
from services.provisioning.iccid import is_valid_iccid
from shared import db
from shared.http_errors import ledger_unreachable

log = logging.getLogger("carrier_simulator")

INVALID: Final = "the parameter is invalid"
NOT_FOUND: Final = {"data": [], "meta": {"message": "messages.resource_not_found"}}
UNAVAILABLE: Final = {"data": [], "meta": {"message": "Service Unavailable"}}
GATEWAY_TIMEOUT: Final = {"data": [], "meta": {"message": "Gateway Timeout"}}
MAX_FIELD: Final = {"iccid": 32, "package_id": 64, "description": 255}
MAX_PAGE: Final = 100
NO_NUMBER: Final = "This eSIM doesn't come with a phone number."
GUIDE: Final = {"en": "https://carrier.invalid/installation-guide"}
PARTNER: Final = {
    "id": 1, "created_at": "2026-01-01 00:00:00", "name": "Top-up billing",
    "email": "partner@example.com", "mobile": None, "address": None, "state": None, "city": None,
    "postal_code": None, "country_id": None, "company": "Top-up billing",
}  # fmt: skip


@dataclass
class Behaviour:
    latency_ms: float = 0.0
    transient_failure_rate: float = 0.0
    timeout_rate: float = 0.0
    timeout_applied_rate: float = 0.5
    hang_s: float = 30.0
    rate_limit_per_s: float = 0.0
    suspended_iccids: frozenset[str] = field(default_factory=frozenset)
    request_deadline_s: float = 30.0  # a top-up not placed by then is given up (504)

    @classmethod
    def from_settings(cls, settings: CarrierSimulatorSettings) -> Behaviour:
        return cls(
            latency_ms=settings.carrier_latency_ms,
            transient_failure_rate=settings.carrier_transient_failure_rate,
            timeout_rate=settings.carrier_timeout_rate,
            timeout_applied_rate=settings.carrier_timeout_applied_rate,
            hang_s=settings.carrier_hang_s,
            rate_limit_per_s=settings.carrier_rate_limit_per_s,
            suspended_iccids=settings.carrier_suspended_iccids,
            request_deadline_s=settings.carrier_request_deadline_s,
        )


class Answer(Exception):
    """An answer that ends a request early: an error, in the API's own shape."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


@dataclass
class Simulator:
    settings: CarrierSimulatorSettings
    sessions: async_sessionmaker[AsyncSession]
    behaviour: Behaviour
    # Simulated failures need no cryptographic randomness; a seed replays a run.
    dice: random.Random = field(default_factory=random.Random)
    recent: deque[float] = field(default_factory=deque)  # request times, the last second
    tokens: dict[str, datetime] = field(default_factory=dict)  # a cache of the ledger's

    def roll(self, rate: float) -> bool:
        return rate > 0 and self.dice.random() < rate

    def over_rate_limit(self) -> bool:
        limit = self.behaviour.rate_limit_per_s
        if limit <= 0:
            return False
        now = time.monotonic()
        while self.recent and self.recent[0] <= now - 1.0:
            self.recent.popleft()
        if len(self.recent) >= limit:
            return True
        self.recent.append(now)
        return False

    async def latency(self) -> None:
        mean_s = self.behaviour.latency_ms / 1000
        if mean_s > 0:
            await asyncio.sleep(mean_s * self.dice.uniform(0.5, 1.5))

    async def hang(self) -> None:
        await asyncio.sleep(self.behaviour.hang_s)

    async def admit(self, request: Request) -> bool:
        """Rate limit, latency, bearer token, transient failure and a timeout before
        acting; True when the answer, once the request is processed, is to be held."""
        await self.admit_unauthenticated()
        await self.authenticate(request)
        if self.roll(self.behaviour.transient_failure_rate):
            raise Answer(503, UNAVAILABLE)
        times_out = self.roll(self.behaviour.timeout_rate)
        if times_out and not self.roll(self.behaviour.timeout_applied_rate):
            await self.hang()  # lost before it was processed: nothing done
            raise Answer(503, UNAVAILABLE)
        return times_out

    async def admit_unauthenticated(self) -> None:
        if self.over_rate_limit():
            limit = str(math.ceil(self.behaviour.rate_limit_per_s))
            headers = {"Retry-After": "1", "X-RateLimit-Limit": limit, "X-RateLimit-Remaining": "0"}
            raise Answer(429, {"message": "Too Many Attempts."}, headers)
        await self.latency()

    async def authenticate(self, request: Request) -> None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token or len(token) > 64:
            raise Answer(401, {"data": [], "meta": {"message": "Unauthenticated."}})
        expires_at = self.tokens.get(token)
        if expires_at is None:
            async with self.sessions() as session:
                expires_at = await ledger.token_expiry(session, token)
        if expires_at is None or expires_at <= datetime.now(UTC):
            self.tokens.pop(token, None)
            raise Answer(401, {"data": [], "meta": {"message": "Unauthenticated."}})
        self.tokens[token] = expires_at


router = APIRouter()


def simulator_of(request: Request) -> Simulator:
    simulator = request.app.state.simulator
    assert isinstance(simulator, Simulator)
    return simulator


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    simulator = simulator_of(request)
    name = simulator.settings.service_name
    try:
        async with simulator.sessions() as session:
            await ledger.token_expiry(session, "-")  # the ledger answers
    except (sqlalchemy.exc.DBAPIError, OSError) as error:
        return ledger_unreachable(name, error)
    return JSONResponse({"status": "ok", "service": name})


@router.post("/v2/token")
async def request_access_token(request: Request) -> JSONResponse:
    simulator = simulator_of(request)
    await simulator.admit_unauthenticated()
    form = await request.form()
    client_id, secret = str(form.get("client_id") or ""), str(form.get("client_secret") or "")
    if not client_id or not secret or form.get("grant_type") != "client_credentials":
        raise Answer(
            422,
            {
                "data": {"client_id": "The client id field is required."},
                "meta": {"message": INVALID},
            },
        )
    expected = simulator.settings
    known = secrets.compare_digest(client_id.encode(), expected.carrier_client_id.encode())
    right = secrets.compare_digest(
        secret.encode(), expected.carrier_client_secret.get_secret_value().encode()
    )
    if not (known and right):
        raise Answer(401, {"data": [], "meta": {"message": "Client authentication failed"}})
    token = secrets.token_urlsafe(32)
    ttl_s = expected.carrier_token_ttl_s
    async with simulator.sessions.begin() as session:
        await ledger.issue_token(session, token, datetime.now(UTC) + timedelta(seconds=ttl_s))
    granted = {"token_type": "Bearer", "expires_in": ttl_s, "access_token": token}
    return JSONResponse({"data": granted, "meta": {"message": "success"}})


@router.get("/v2/sims/{iccid}/topups")
async def top_up_packages(iccid: str, request: Request) -> JSONResponse:
    simulator = simulator_of(request)
    late = await simulator.admit(request)
    known_line(iccid)
    if iccid in simulator.behaviour.suspended_iccids:
        raise Answer(422, suspended(iccid))
    body = {"pricing": {"model": "net_pricing", "discount_percentage": 0},
            "data": [offer(package) for package in PACKAGES.values()]}  # fmt: skip
    return await answer(simulator, body, late)


@router.post("/v2/orders/topups")
async def submit_top_up_order(request: Request) -> JSONResponse:
    """Place a top-up order. One that cannot be placed within the request deadline of its
    arrival (slow, or waiting behind others) is given up and rolled back: a 504, nothing
    done. So a top-up the client gave up on lands late, or never, but never later."""
    arrived = time.monotonic()
    try:
        await request.body()  # received whole on arrival; the client may go while it waits
    except ClientDisconnect:  # gone before sending it whole: nothing to place
        return JSONResponse({}, status_code=499)
    simulator = simulator_of(request)
    late = await simulator.admit(request)
    form = await request.form()
    fields = {name: str(form.get(name) or "") for name in MAX_FIELD}
    if not fields["iccid"] or not fields["package_id"]:
        missing = {
            "iccid": "The iccid field is required.",
            "package_id": "The package id field is required.",
        }
        raise Answer(422, {"data": missing, "meta": {"message": INVALID}})
    if any(len(fields[name]) > limit for name, limit in MAX_FIELD.items()):
        too_long = {"iccid": "The iccid is invalid.", "package_id": "The package id is invalid."}
        raise Answer(422, {"data": too_long, "meta": {"message": INVALID}})
    iccid, package = fields["iccid"], PACKAGES.get(fields["package_id"])
    if not is_valid_iccid(iccid):
        unknown = {"iccid": "The selected iccid is invalid.", "package_id": "invalid topup package"}
        raise Answer(422, {"data": unknown, "meta": {"message": INVALID}})
    if iccid in simulator.behaviour.suspended_iccids:
        raise Answer(422, suspended(iccid))
    if package is None:
        raise Answer(
            422, {"data": {"package_id": "invalid topup package"}, "meta": {"message": INVALID}}
        )
    async with simulator.sessions.begin() as session:
        order = await ledger.place_order(
            session, iccid, package, fields["description"], datetime.now(UTC)
        )
        if time.monotonic() - arrived > simulator.behaviour.request_deadline_s:
            raise Answer(504, GATEWAY_TIMEOUT)  # rolls the order back
    log.info("top-up order %s: %s on a line", order.code, package.package_id)
    return await answer(
        simulator, {"data": placed(order, package), "meta": {"message": "success"}}, late
    )


@router.get("/v2/orders")
async def order_list(request: Request) -> JSONResponse:
    simulator = simulator_of(request)
    late = await simulator.admit(request)
    query = request.query_params
    limit, page = _whole(query.get("limit", "50")), _whole(query.get("page", "1"))
    if limit is None or page is None or not 1 <= limit <= MAX_PAGE or page < 1:
        wrong = {"limit": "The limit must be an integer.", "page": "The page must be an integer."}
        raise Answer(422, {"data": wrong, "meta": {"message": INVALID}})
    async with simulator.sessions() as session:
        orders, total = await ledger.find_orders(
            session,
            iccid_like=query.get("filter[iccid]", "")[:32],
            description_like=query.get("filter[description]", "")[:255],
            limit=limit,
            offset=(page - 1) * limit,
        )
    return await answer(simulator, listed(orders, total, page, limit, str(request.base_url)), late)


async def orders_of_line(request: Request, iccid: str) -> tuple[Simulator, bool, list[Order]]:
    """Admitted (see `admit`), a known line, and its orders, newest first."""
    simulator = simulator_of(request)
    late = await simulator.admit(request)
    known_line(iccid)
    async with simulator.sessions() as session:
        return simulator, late, await ledger.line_orders(session, iccid)


@router.get("/v2/sims/{iccid}/packages")
async def package_history(iccid: str, request: Request) -> JSONResponse:
    simulator, late, orders = await orders_of_line(request, iccid)
    now = datetime.now(UTC)
    body = {"pricing": {"model": "net_pricing", "discount_percentage": 0},
            "data": [held(order, now) for order in orders]}  # fmt: skip
    return await answer(simulator, body, late)


@router.get("/v2/sims/{sim_iccid}/usage")
async def usage(sim_iccid: str, request: Request) -> JSONResponse:
    simulator, late, orders = await orders_of_line(request, sim_iccid)
    now = datetime.now(UTC)
    active = [order for order in orders if order.expires_at > now]
    used = {
        "remaining": sum(order.remaining_mb() for order in active),
        "total": sum(order.data_mb for order in active),
        "expired_at": _time(max(o.expires_at for o in orders)) if orders else "",
        "is_unlimited": any(order.unlimited for order in active),
        "status": line_status(orders, active, now),
        "remaining_voice": 0, "remaining_text": 0, "total_voice": 0, "total_text": 0,
    }  # fmt: skip
    return await answer(simulator, {"data": used, "meta": {"message": "success"}}, late)


async def answer(simulator: Simulator, body: dict[str, Any], late: bool) -> JSONResponse:
    """The answer, committed already; held past the client's patience when `late`."""
    if late:
        await simulator.hang()
    return JSONResponse(body)


def known_line(iccid: str) -> None:
    if not is_valid_iccid(iccid):
        raise Answer(404, NOT_FOUND)


def suspended(iccid: str) -> dict[str, Any]:
    return {
        "code": 73,
        "reason": f"The eSIM with iccid {iccid} is suspended. It can no longer be topped up.",
    }


def line_status(orders: list[Order], active: list[Order], now: datetime) -> str:
    if not orders:
        return "NOT_ACTIVE"
    if not active:
        return "EXPIRED"
    return "ACTIVE" if any(order.state(now) == "ACTIVE" for order in active) else "FINISHED"


def offer(package: CarrierPackage) -> dict[str, Any]:
    return {
        "id": package.package_id, "type": "topup", "price": package.price_usd,
        "amount": package.data_mb, "day": package.days, "is_unlimited": package.unlimited,
        "title": package.title, "data": _data_label(package), "short_info": NO_NUMBER,
        "voice": 0, "text": 0, "net_price": package.net_price_usd,
        "prices": {"net_price": prices(package.net_price_usd),
                   "recommended_retail_price": prices(package.price_usd)},
    }  # fmt: skip


def placed(order: Order, package: CarrierPackage) -> dict[str, Any]:
    return {
        "id": order.id, "code": order.code, "package_id": order.package_id, "currency": "USD",
        "quantity": 1, "type": "topup", "description": order.description, "esim_type": "Prepaid",
        "validity": order.validity_days, "package": f"Simulated Carrier-{package.title}",
        "data": _data_label(package), "price": float(package.price_usd),
        "pricing_model": "net_pricing",
        "text": None, "voice": None, "net_price": float(package.net_price_usd),
        "created_at": _time(order.created_at), "manual_installation": "", "qrcode_installation": "",
        "installation_guides": GUIDE,
    }  # fmt: skip


def listed(orders: list[Order], total: int, page: int, limit: int, base: str) -> dict[str, Any]:
    last = max(1, math.ceil(total / limit))
    path = f"{base.rstrip('/')}/v2/orders"
    return {
        "data": [_listed_order(order) for order in orders],
        "meta": {"message": "success", "current_page": page, "from": (page - 1) * limit + 1,
                 "last_page": last, "path": path, "per_page": str(limit),
                 "to": (page - 1) * limit + len(orders), "total": total},
        "links": {"first": f"{path}?page=1", "last": f"{path}?page={last}", "prev": None,
                  "next": f"{path}?page={min(page + 1, last)}"},
    }  # fmt: skip


def _listed_order(order: Order) -> dict[str, Any]:
    package = PACKAGES.get(order.package_id)
    price = package.price_usd if package else 0
    return {
        "id": order.id, "created_at": _time(order.created_at), "code": order.code,
        "description": order.description, "type": "topup", "package_id": order.package_id,
        "quantity": 1, "package": package.title if package else order.package_id,
        "esim_type": "Prepaid", "validity": str(order.validity_days), "price": f"{price:.2f}",
        "data": _data_label(package) if package else "", "currency": "USD",
        "manual_installation": "", "qrcode_installation": "", "installation_guides": GUIDE,
        "sims": [], "user": PARTNER, "status": {"name": "Completed", "slug": order.status},
    }  # fmt: skip


def held(order: Order, now: datetime) -> dict[str, Any]:
    package = PACKAGES.get(order.package_id)
    return {
        "id": order.id, "status": order.state(now), "remaining": order.remaining_mb(),
        "activated_at": order.created_at.isoformat(), "expired_at": order.expires_at.isoformat(),
        "finished_at": None,
        "package": {
            "id": order.package_id, "type": "topup", "price": package.price_usd if package else 0,
            "net_price": package.net_price_usd if package else 0, "amount": order.data_mb,
            "day": order.validity_days, "is_unlimited": order.unlimited,
            "title": package.title if package else order.package_id,
            "data": _data_label(package) if package else "", "short_info": None,
        },
    }  # fmt: skip


def _data_label(package: CarrierPackage) -> str:
    if package.unlimited:
        return "Unlimited"
    return (
        f"{package.data_mb // 1024} GB" if package.data_mb % 1024 == 0 else f"{package.data_mb} MB"
    )


def _time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _whole(value: str) -> int | None:
    return int(value) if value.isascii() and value.isdigit() and len(value) < 6 else None


async def _answer_early(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Answer)
    return JSONResponse(exc.body, status_code=exc.status, headers=exc.headers)


def build_app(settings: CarrierSimulatorSettings | None = None) -> FastAPI:
    config = settings or CarrierSimulatorSettings()
    engine = db.create_engine(config.resolved_database_url)
    sessions = db.sessions_for(engine)
    dice = random.Random(config.carrier_seed)  # noqa: S311 - simulated failures
    simulator = Simulator(config, sessions, Behaviour.from_settings(config), dice)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await start(_app)
        reports = asyncio.create_task(run_usage_reports(config, sessions), name="usage reports")
        log.info("carrier simulator ready on http://%s:%s", config.http_host, config.port)
        try:
            yield
        finally:
            reports.cancel()
            await asyncio.gather(reports, return_exceptions=True)
            await engine.dispose()

    app = FastAPI(title="carrier simulator", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.simulator = simulator
    app.state.behaviour = simulator.behaviour
    app.state.sessions = sessions
    app.state.engine = engine
    app.add_exception_handler(Answer, _answer_early)
    app.include_router(router)
    return app


async def start(app: FastAPI) -> None:
    """The ledger's tables (the outside world has no migrations of ours); the lifespan
    runs it, and a test that drives the app without one."""
    await db.create_schema(app.state.engine, ledger.metadata)
