"""The Stripe simulator: the subset of Stripe's API that payments' adapter uses.

`POST /v1/payment_intents` (created and confirmed at once), `GET /v1/payment_intents/{id}`,
`GET /v1/payment_intents/search`, `GET /v1/payment_intents`,
`POST /v1/payment_intents/{id}/cancel`, `POST /v1/refunds`, `GET /v1/refunds` and
`GET /v1/refunds/{id}`: form-encoded as the SDK sends them, behind the secret key
(`Authorization: Bearer STRIPE_API_KEY`), answered in Stripe's JSON and error shapes.

Idempotency as Stripe has it: a POST's first answer is kept under its Idempotency-Key;
the same key with the same parameters gets it again (`Idempotent-Replayed: true`), with
other parameters a 400 `idempotency_error`, and while the first is still running a 409.

Honest about the outside world: jittered latency (PROVIDER_LATENCY_MS), random declines
(PROVIDER_DECLINE_RATE), answers lost after acting (PROVIDER_TIMEOUT_RATE: the request
is committed, then its answer is held PROVIDER_HANG_S), 429 with Retry-After beyond
PROVIDER_RATE_LIMIT_PER_S, all seeded by PROVIDER_SEED. Every change is committed with
its event before the answer leaves; events are signed (Stripe-Signature) and delivered
to STRIPE_WEBHOOK_URL until it answers 2xx, with a backoff, surviving restarts.
Outcomes by payment method: outcomes.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
import random
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import parse_qsl

import httpx
import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import ClientDisconnect

from services.stripe_simulator import forms
from services.stripe_simulator.ledger import (
    idempotent_requests,
    metadata,
    payment_intents,
    refunds,
    webhook_deliveries,
)
from services.stripe_simulator.outcomes import (
    TIMES_OUT_ON_CREATE,
    TIMES_OUT_ON_REFUND,
    charge_json,
    dumps,
    error_json,
    first_outcome,
    intent_json,
    new_id,
    refund_json,
    timestamp,
)
from services.stripe_simulator.settings import NAME, SimulatorSettings
from shared import db
from shared.card_numbers import storable
from shared.http_errors import ledger_unreachable

log = logging.getLogger(NAME)

API_VERSION: Final = "2025-simulated"
METHODS: Final = frozenset({"card", "alipay", "wechat_pay", "paypal"})
CANCELLABLE: Final = frozenset(
    {"requires_payment_method", "requires_confirmation", "requires_action", "processing"}
)
_SEARCH = re.compile(r"^\s*metadata\['idempotency_key'\]\s*:\s*'((?:[^'\\]|\\.)*)'\s*$")
MAX_KEY_CHARS: Final = 255

Answer = tuple[int, dict[str, Any]]
# Whether a request's answer is lost after it acted (its ledger write is committed).
Hang = Callable[[AsyncSession, dict[str, Any]], Awaitable[bool]]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class StripeError(Exception):
    def __init__(self, status: int, kind: str, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.message, self.code = status, kind, message, code

    def answer(self) -> Answer:
        return self.status, error_json(self.kind, self.message, self.code)


class Simulator:
    """The ledger and the weather; one per process."""

    def __init__(
        self, settings: SimulatorSettings, *, clock: Callable[[], datetime] = _utcnow
    ) -> None:
        self.settings = settings
        self.engine = db.create_engine(settings.resolved_database_url)
        self.sessions = db.sessions_for(engine=self.engine)
        self.clock = clock
        # Simulated weather, not security: a seedable generator keeps runs repeatable.
        self.rng = random.Random(settings.provider_seed)  # noqa: S311
        self.in_flight: set[str] = set()
        self._schema_ready = False
        self._schema_lock = asyncio.Lock()
        self._bucket = float(settings.provider_rate_limit_per_s)
        self._bucket_at = time.monotonic()

    async def ready(self) -> None:
        if not self._schema_ready:
            async with self._schema_lock:
                if not self._schema_ready:
                    await db.create_schema(self.engine, metadata)
                    self._schema_ready = True

    def rate_limited(self) -> float | None:
        """Seconds to wait when over PROVIDER_RATE_LIMIT_PER_S (a token bucket), else None."""
        rate = self.settings.provider_rate_limit_per_s
        if rate <= 0:
            return None
        now = time.monotonic()
        self._bucket = min(rate, self._bucket + (now - self._bucket_at) * rate)
        self._bucket_at = now
        if self._bucket >= 1:
            self._bucket -= 1
            return None
        return (1 - self._bucket) / rate

    async def travel(self) -> None:
        latency_s = self.settings.provider_latency_ms / 1000
        if latency_s > 0:
            await asyncio.sleep(self.rng.uniform(0.5, 1.5) * latency_s)

    def loses_answer(self) -> bool:
        return self.rng.random() < self.settings.provider_timeout_rate

    # --- PaymentIntents --------------------------------------------------------------

    async def create_intent(
        self, session: AsyncSession, key: str | None, params: dict[str, Any]
    ) -> Answer:
        amount, currency = _amount(params), _currency(params)
        token = _text(params, "payment_method")
        types = params.get("payment_method_types") or ["card"]
        if not isinstance(types, list) or len(types) != 1 or types[0] not in METHODS:
            raise _invalid("payment_method_types: one of card, alipay, wechat_pay, paypal")
        method = types[0]
        if str(params.get("confirm", "")).lower() != "true":
            raise _invalid("confirm: the simulator creates and confirms at once (confirm=true)")
        if method in {"alipay", "paypal"} and not params.get("return_url"):
            raise _invalid(f"return_url: required to confirm a {method} payment")
        meta = _metadata(params)
        now = self.clock()
        intent_id = new_id("pi")
        outcome = first_outcome(
            token, method, intent_id, rng=self.rng,
            decline_rate=self.settings.provider_decline_rate,
            confirm_after_s=self.settings.provider_confirm_after_s,
            return_url=params.get("return_url"),
        )  # fmt: skip
        await session.execute(
            insert(payment_intents).values(
                id=intent_id, idempotency_key=key, amount=amount, currency=currency,
                status=outcome.status, payment_method=storable(token),
                payment_method_type=method, metadata=meta,
                metadata_idempotency_key=meta.get("idempotency_key"),
                last_payment_error=outcome.error, next_action=outcome.next_action,
                confirm_at=now + outcome.confirm_after if outcome.confirm_after else None,
                create_calls=1, amount_refunded=0, created=now, updated_at=now,
            )
        )  # fmt: skip
        intent = await self._intent(session, intent_id)
        if outcome.error is not None:
            await self.stage_event(session, "payment_intent.payment_failed", intent_json(intent))
            body = dict(outcome.error, payment_intent=intent_json(intent))
            return 402, {"error": body}
        if outcome.status == "succeeded":
            await self.stage_event(session, "payment_intent.succeeded", intent_json(intent))
        else:
            await self.stage_event(session, "payment_intent.requires_action", intent_json(intent))
        return 200, intent_json(intent)

    async def retrieve_intent(self, session: AsyncSession, intent_id: str) -> Answer:
        await self.confirm_due(session)
        row = await self._intent(session, intent_id)
        if row is None:
            raise _missing("payment_intent", intent_id)
        return 200, intent_json(row)

    async def cancel_intent(
        self, session: AsyncSession, intent_id: str, params: dict[str, Any]
    ) -> Answer:
        await self.confirm_due(session)
        row = await self._intent(session, intent_id, lock=True)
        if row is None:
            raise _missing("payment_intent", intent_id)
        if row.status not in CANCELLABLE:
            message = (
                f"You cannot cancel this PaymentIntent because it has a status of {row.status}."
            )
            body = error_json(
                "invalid_request_error", message, "payment_intent_unexpected_state",
                payment_intent=intent_json(row),
            )  # fmt: skip
            return 400, body
        reason = params.get("cancellation_reason") or "requested_by_customer"
        await session.execute(
            update(payment_intents)
            .where(payment_intents.c.id == intent_id)
            .values(status="canceled", cancellation_reason=str(reason)[:64], confirm_at=None,
                    updated_at=self.clock())
        )  # fmt: skip
        cancelled = await self._intent(session, intent_id)
        await self.stage_event(session, "payment_intent.canceled", intent_json(cancelled))
        return 200, intent_json(cancelled)

    async def search_intents(self, session: AsyncSession, params: dict[str, Any]) -> Answer:
        found = _SEARCH.match(str(params.get("query", "")))
        if found is None:
            raise _invalid("query: the simulator searches by metadata['idempotency_key'] only")
        await self.confirm_due(session)
        key = re.sub(r"\\(.)", r"\1", found.group(1))
        rows = (
            await session.execute(
                select(payment_intents)
                .where(payment_intents.c.metadata_idempotency_key == key)
                .order_by(payment_intents.c.created, payment_intents.c.id)
                .limit(_limit(params))
            )
        ).all()
        body = {
            "object": "search_result", "url": "/v1/payment_intents/search",
            "has_more": False, "next_page": None, "data": [intent_json(r) for r in rows],
        }  # fmt: skip
        return 200, body

    async def list_intents(self, session: AsyncSession, params: dict[str, Any]) -> Answer:
        await self.confirm_due(session)
        return 200, await _page(
            session, payment_intents, params, "/v1/payment_intents", intent_json
        )

    # --- Refunds ---------------------------------------------------------------------

    async def create_refund(
        self, session: AsyncSession, key: str | None, params: dict[str, Any]
    ) -> Answer:
        await self.confirm_due(session)
        intent_id = _text(params, "payment_intent")
        intent = await self._intent(session, intent_id, lock=True)
        if intent is None:
            raise _missing("payment_intent", intent_id)
        left = intent.amount - intent.amount_refunded
        amount = _amount(params) if "amount" in params else left
        if intent.status != "succeeded":
            raise _invalid(
                f"This PaymentIntent ({intent_id}) does not have a successful charge to refund.",
                code="charge_not_refundable",
            )
        if left <= 0:
            raise _invalid("Charge has already been refunded.", code="charge_already_refunded")
        if amount > left:
            raise _invalid(f"Refund amount is greater than {left} left.", code="amount_too_large")
        now = self.clock()
        refund_id = new_id("re")
        await session.execute(
            insert(refunds).values(
                id=refund_id, idempotency_key=key, payment_intent=intent_id, amount=amount,
                currency=intent.currency, status="succeeded", metadata=_metadata(params),
                created=now,
            )
        )  # fmt: skip
        await session.execute(
            update(payment_intents)
            .where(payment_intents.c.id == intent_id)
            .values(amount_refunded=intent.amount_refunded + amount, updated_at=now)
        )
        made = (await session.execute(select(refunds).where(refunds.c.id == refund_id))).one()
        charge = charge_json(
            await self._intent(session, intent_id), await self._refunds_of(session, intent_id)
        )
        await self.stage_event(session, "charge.refunded", charge)
        return 200, refund_json(made)

    async def retrieve_refund(self, session: AsyncSession, refund_id: str) -> Answer:
        row = (await session.execute(select(refunds).where(refunds.c.id == refund_id))).first()
        if row is None:
            raise _missing("refund", refund_id)
        return 200, refund_json(row)

    async def list_refunds(self, session: AsyncSession, params: dict[str, Any]) -> Answer:
        where = []
        if params.get("payment_intent"):
            where.append(refunds.c.payment_intent == str(params["payment_intent"]))
        return 200, await _page(session, refunds, params, "/v1/refunds", refund_json, where)

    # --- the customer's side and the events ----------------------------------------

    async def confirm_due(self, session: AsyncSession) -> int:
        """Pending intents whose customer has confirmed by now succeed, with their event."""
        now = self.clock()
        due = (
            (
                await session.execute(
                    select(payment_intents.c.id).where(
                        payment_intents.c.status == "requires_action",
                        payment_intents.c.confirm_at <= now,
                    )
                )
            )
            .scalars()
            .all()
        )
        for intent_id in due:
            moved = await session.execute(
                update(payment_intents)
                .where(
                    payment_intents.c.id == intent_id, payment_intents.c.status == "requires_action"
                )
                .values(status="succeeded", confirm_at=None, updated_at=now)
            )
            if moved.rowcount:  # type: ignore[attr-defined]
                intent = await self._intent(session, intent_id)
                await self.stage_event(session, "payment_intent.succeeded", intent_json(intent))
        return len(due)

    async def stage_event(self, session: AsyncSession, kind: str, obj: dict[str, Any]) -> None:
        now = self.clock()
        event_id = new_id("evt")
        event = {
            "id": event_id, "object": "event", "api_version": API_VERSION,
            "created": timestamp(now), "data": {"object": obj}, "livemode": False,
            "pending_webhooks": 1, "request": {"id": None, "idempotency_key": None},
            "type": kind,
        }  # fmt: skip
        await session.execute(
            insert(webhook_deliveries).values(
                event_id=event_id, type=kind, payload=dumps(event), attempts=0,
                next_attempt_at=now, created=now,
            )
        )  # fmt: skip

    async def deliver_due(self, client: httpx.AsyncClient, limit: int = 20) -> int:
        """Send the events that are due; each is retried with a backoff until taken."""
        # Several URLs: the endpoints behind a load balancer; the first that takes it wins.
        urls = [url.strip() for url in self.settings.stripe_webhook_url.split(",") if url.strip()]
        if not urls:
            return 0
        async with self.sessions() as session:
            due = (
                await session.execute(
                    select(webhook_deliveries)
                    .where(webhook_deliveries.c.next_attempt_at <= self.clock())
                    .order_by(webhook_deliveries.c.created)
                    .limit(limit)
                )
            ).all()
        delivered = 0
        for event in due:
            taken = False
            for url in urls:
                if taken := await self._send(client, url, event.payload):
                    break
            now = self.clock()
            attempts = event.attempts + 1
            later = min(
                self.settings.webhook_retry_base_s * 2 ** min(attempts - 1, 20),
                self.settings.webhook_retry_max_s,
            )
            async with self.sessions.begin() as session:
                await session.execute(
                    update(webhook_deliveries)
                    .where(webhook_deliveries.c.event_id == event.event_id)
                    .values(
                        attempts=attempts,
                        delivered_at=now if taken else None,
                        next_attempt_at=None if taken else now + timedelta(seconds=later),
                    )
                )
            delivered += taken
        return delivered

    async def _send(self, client: httpx.AsyncClient, url: str, payload: str) -> bool:
        header = signature_header(payload, self.settings.stripe_webhook_secret.get_secret_value())
        try:
            answer = await client.post(
                url,
                content=payload.encode(),
                headers={"Content-Type": "application/json", "Stripe-Signature": header},
            )
        except httpx.HTTPError as failed:
            log.info("webhook not delivered (%s); trying again later", type(failed).__name__)
            return False
        if not answer.is_success:
            log.info("webhook endpoint answered %s; trying again later", answer.status_code)
        return answer.is_success

    async def _intent(self, session: AsyncSession, intent_id: str, *, lock: bool = False) -> Any:
        query = select(payment_intents).where(payment_intents.c.id == intent_id)
        return (await session.execute(query.with_for_update() if lock else query)).first()

    async def _refunds_of(self, session: AsyncSession, intent_id: str) -> list[Any]:
        query = select(refunds).where(refunds.c.payment_intent == intent_id)
        return list((await session.execute(query.order_by(refunds.c.created))).all())


def signature_header(payload: str, secret: str, at: int | None = None) -> str:
    """Stripe-Signature as Stripe makes it: t=<unix time>,v1=HMAC-SHA256(secret, "t.payload")."""
    at = int(time.time()) if at is None else at
    mac = hmac.new(secret.encode(), f"{at}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={at},v1={mac}"


def build_app(
    settings: SimulatorSettings | None = None, *, clock: Callable[[], datetime] = _utcnow
) -> FastAPI:
    settings = settings or SimulatorSettings()
    sim = Simulator(settings, clock=clock)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await sim.ready()
        worker = asyncio.create_task(_background(sim), name="stripe simulator background")
        log.info("%s ready on http://%s:%s", NAME, settings.http_host, settings.port)
        try:
            yield
        finally:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
            await sim.engine.dispose()

    app = FastAPI(title="Stripe simulator", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.simulator = sim

    @app.get("/health")
    async def health() -> JSONResponse:
        await sim.ready()
        try:
            await db.ping(sim.engine)
        except (sqlalchemy.exc.DBAPIError, OSError) as error:
            return ledger_unreachable(NAME, error)
        return JSONResponse({"status": "ok", "service": NAME})

    async def serve(
        request: Request, act: Callable[[AsyncSession, dict[str, Any]], Awaitable[Answer]],
        *, idempotent: bool = False, loses_answer: Hang | None = None,
    ) -> Response:  # fmt: skip
        if not _authorised(request, settings.stripe_api_key.get_secret_value()):
            return _json(401, error_json("invalid_request_error", "Invalid API Key provided."))
        wait = sim.rate_limited()
        if wait is not None:
            body = error_json("invalid_request_error", "Too many requests.", "rate_limit")
            return _json(429, body, {"Retry-After": str(max(1, math.ceil(wait)))})
        await sim.ready()
        await sim.travel()
        try:
            raw = await request.body()
        except ClientDisconnect:  # the caller gave up (or died) before sending it whole
            return Response(status_code=499)
        pairs = _pairs(request.url.query) + _pairs(raw.decode("latin-1"))
        try:
            params = forms.decode(pairs)
        except ValueError as bad:
            return _json(*_invalid(str(bad)).answer())
        key = request.headers.get("idempotency-key") if idempotent else None
        if key is not None and len(key) > MAX_KEY_CHARS:
            return _json(*_invalid(f"Idempotency-Key: at most {MAX_KEY_CHARS} characters").answer())
        if key is not None and key in sim.in_flight:
            message = "A request with this idempotency key is still being processed."
            return _json(409, error_json("idempotency_error", message, "idempotency_key_in_use"))
        fingerprint = forms.digest(request.method, request.url.path, pairs)
        replayed, hang = False, False
        if key is not None:
            sim.in_flight.add(key)
        try:
            async with sim.sessions.begin() as session:
                stored = None
                if key is not None:
                    stored = (
                        await session.execute(
                            select(idempotent_requests).where(
                                idempotent_requests.c.idempotency_key == key
                            )
                        )
                    ).first()
                if stored is not None:
                    if stored.request != fingerprint:
                        message = (
                            "Keys for idempotent requests can only be used with the same "
                            "parameters they were first used with."
                        )
                        return _json(400, error_json("idempotency_error", message))
                    replayed = True
                    status, body_text = stored.status_code, stored.body
                    await session.execute(
                        update(payment_intents)
                        .where(payment_intents.c.idempotency_key == key)
                        .values(create_calls=payment_intents.c.create_calls + 1)
                    )
                else:
                    try:
                        status, body = await act(session, params)
                    except StripeError as refused:
                        # Refused before acting: Stripe keeps no result for the key.
                        status, body = refused.answer()
                        return _json(status, body)
                    body_text = dumps(body)
                    hang = sim.loses_answer() or (
                        loses_answer is not None and await loses_answer(session, params)
                    )
                    if key is not None:
                        await session.execute(
                            insert(idempotent_requests).values(
                                idempotency_key=key, request=fingerprint, status_code=status,
                                body=body_text, created=sim.clock(),
                            )
                        )  # fmt: skip
        finally:
            if key is not None:
                sim.in_flight.discard(key)
        # Committed: from here on, losing the answer loses nothing but the answer.
        if hang:
            await asyncio.sleep(settings.provider_hang_s)
        headers = {"Idempotent-Replayed": "true"} if replayed else {}
        if key is not None:
            headers["Idempotency-Key"] = key
        return Response(
            body_text, status, headers=_stripe_headers(headers), media_type="application/json"
        )

    async def create_times_out(_session: AsyncSession, params: dict[str, Any]) -> bool:
        return str(params.get("payment_method", "")).startswith(TIMES_OUT_ON_CREATE)

    async def refund_times_out(session: AsyncSession, params: dict[str, Any]) -> bool:
        intent = await sim._intent(session, str(params.get("payment_intent", "")))
        return intent is not None and intent.payment_method.startswith(TIMES_OUT_ON_REFUND)

    @app.post("/v1/payment_intents")
    async def create_payment_intent(request: Request) -> Response:
        key = request.headers.get("idempotency-key")
        return await serve(
            request, lambda s, p: sim.create_intent(s, key, p), idempotent=True,
            loses_answer=create_times_out,
        )  # fmt: skip

    @app.get("/v1/payment_intents/search")
    async def search_payment_intents(request: Request) -> Response:
        return await serve(request, sim.search_intents)

    @app.get("/v1/payment_intents")
    async def list_payment_intents(request: Request) -> Response:
        return await serve(request, sim.list_intents)

    @app.get("/v1/payment_intents/{intent_id}")
    async def retrieve_payment_intent(request: Request, intent_id: str) -> Response:
        return await serve(request, lambda s, _p: sim.retrieve_intent(s, intent_id))

    @app.post("/v1/payment_intents/{intent_id}/cancel")
    async def cancel_payment_intent(request: Request, intent_id: str) -> Response:
        return await serve(
            request, lambda s, p: sim.cancel_intent(s, intent_id, p), idempotent=True
        )

    @app.post("/v1/refunds")
    async def create_refund(request: Request) -> Response:
        key = request.headers.get("idempotency-key")

        async def refund(session: AsyncSession, params: dict[str, Any]) -> Answer:
            return await sim.create_refund(session, key, params)

        return await serve(request, refund, idempotent=True, loses_answer=refund_times_out)

    @app.get("/v1/refunds")
    async def list_refunds(request: Request) -> Response:
        return await serve(request, sim.list_refunds)

    @app.get("/v1/refunds/{refund_id}")
    async def retrieve_refund(request: Request, refund_id: str) -> Response:
        return await serve(request, lambda s, _p: sim.retrieve_refund(s, refund_id))

    return app


async def _background(sim: Simulator) -> None:
    """Customers confirm their pending payments; events go out to the webhook endpoint."""
    async with httpx.AsyncClient(timeout=5.0) as client:
        while True:
            try:
                async with sim.sessions.begin() as session:
                    await sim.confirm_due(session)
                await sim.deliver_due(client)
            except Exception:
                log.exception("stripe simulator background step failed; trying again")
            await asyncio.sleep(sim.settings.tick_s)


async def _page(
    session: AsyncSession,
    table: Any,
    params: dict[str, Any],
    url: str,
    shown: Callable[[Any], dict[str, Any]],
    where: list[Any] | None = None,
) -> dict[str, Any]:
    """A list page as Stripe pages: newest first, `limit` (1-100), `starting_after` an id."""
    limit = _limit(params)
    conditions = list(where or [])
    if after := params.get("starting_after"):
        anchor = (await session.execute(select(table).where(table.c.id == str(after)))).first()
        if anchor is None:
            raise _missing("object", str(after))
        conditions.append(
            or_(
                table.c.created < anchor.created,
                and_(table.c.created == anchor.created, table.c.id < anchor.id),
            )
        )
    query = select(table).where(*conditions).order_by(table.c.created.desc(), table.c.id.desc())
    rows = (await session.execute(query.limit(limit + 1))).all()
    return {
        "object": "list",
        "url": url,
        "has_more": len(rows) > limit,
        "data": [shown(row) for row in rows[:limit]],
    }


def _authorised(request: Request, secret: str) -> bool:
    given = request.headers.get("authorization", "")
    scheme, _, token = given.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.encode(), secret.encode())


def _pairs(text: str) -> list[tuple[str, str]]:
    return parse_qsl(text, keep_blank_values=True) if text else []


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(body, status, headers=_stripe_headers(headers or {}))


def _stripe_headers(headers: dict[str, str]) -> dict[str, str]:
    return {"Request-Id": f"req_{uuid.uuid4().hex[:14]}", "Stripe-Version": API_VERSION, **headers}


def _invalid(message: str, code: str | None = None) -> StripeError:
    return StripeError(400, "invalid_request_error", message, code or "parameter_invalid")


def _missing(kind: str, given: str) -> StripeError:
    return StripeError(
        404, "invalid_request_error", f"No such {kind}: '{given[:40]}'", "resource_missing"
    )


def _text(params: dict[str, Any], name: str) -> str:
    value = params.get(name)
    if not isinstance(value, str) or not value or len(value) > MAX_KEY_CHARS:
        raise _invalid(f"{name}: required, at most {MAX_KEY_CHARS} characters")
    return value


def _amount(params: dict[str, Any]) -> int:
    value = str(params.get("amount", ""))
    if not value.isdigit() or not 1 <= int(value) <= 99_999_999:
        raise _invalid("amount: a positive integer in the currency's minor unit")
    return int(value)


def _currency(params: dict[str, Any]) -> str:
    value = str(params.get("currency", ""))
    if not re.fullmatch(r"[a-zA-Z]{3}", value):
        raise _invalid("currency: a three-letter ISO code")
    return value.upper()


def _metadata(params: dict[str, Any]) -> dict[str, str]:
    given = params.get("metadata") or {}
    if not isinstance(given, dict) or len(given) > 50:
        raise _invalid("metadata: at most 50 keys")
    return {str(k)[:40]: str(v)[:500] for k, v in given.items()}


def _limit(params: dict[str, Any]) -> int:
    value = str(params.get("limit", "10"))
    if not value.isdigit() or not 1 <= int(value) <= 100:
        raise _invalid("limit: between 1 and 100")
    return int(value)
