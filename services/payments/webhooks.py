"""`POST /webhooks/stripe`: Stripe's events about our payments, verified and acted on once.

Stripe signs instead of sending a bearer token, so the path is public to the HTTP guard
(the body bound still applies); the signature (Stripe-Signature, with the endpoint's
secret STRIPE_WEBHOOK_SECRET) is checked by the SDK's own `construct_event`. A bad
signature or a stale timestamp is a 400 that changes nothing. Each event id is recorded
once, in the transaction of its effect, so a replayed event changes nothing; event
types we do not act on are acknowledged and ignored.
"""

from __future__ import annotations

import re
import time
from typing import Any, Final

import stripe
from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel

from services.payments import payments
from services.payments.provider import ProviderResult, ProviderTimeout
from services.payments.settings import PaymentsSettings
from services.payments.stripe_provider import charge_result
from shared.http_errors import Problem

PATH: Final = "/webhooks/stripe"
PUBLIC_PATHS: Final = frozenset({PATH})
CHARGE_EVENTS: Final = frozenset(
    {
        "payment_intent.succeeded",
        "payment_intent.payment_failed",
        "payment_intent.canceled",
        "payment_intent.processing",
        "payment_intent.requires_action",
    }
)
REFUND_EVENTS: Final = frozenset({"charge.refunded"})
EVENT_ID: Final = re.compile(r"evt_[A-Za-z0-9_]{1,250}")
KEY_CHARS: Final = 255

router = APIRouter()


class Received(BaseModel):
    received: bool
    acted: bool  # False for a replayed event, an unknown type or a payment not ours


@router.post(
    PATH,
    response_model=Received,
    responses={
        400: {"model": Problem, "description": "Not signed by Stripe, or too old"},
        503: {"model": Problem, "description": "STRIPE_WEBHOOK_SECRET is not set"},
    },
)
async def stripe_webhook(request: Request) -> Received:
    settings: PaymentsSettings = request.app.state.settings
    secret = settings.stripe_webhook_secret.get_secret_value()
    if not secret:
        # Without the endpoint's secret nothing can be verified: nothing is taken.
        raise HTTPException(503, "webhooks are refused: STRIPE_WEBHOOK_SECRET is not set")
    payload = await request.body()
    header = request.headers.get("stripe-signature")
    try:
        event = stripe.Webhook.construct_event(
            payload, header, secret, tolerance=settings.stripe_webhook_tolerance_s
        )
    except stripe.SignatureVerificationError as refused:
        raise HTTPException(400, _why(refused)) from None
    except (ValueError, RecursionError, AttributeError, TypeError):
        # Not JSON, or JSON but not an object: the SDK cannot even read it as an event.
        raise HTTPException(400, "the body is not a JSON event") from None
    if _signed_at(header) > time.time() + settings.stripe_webhook_tolerance_s:
        raise HTTPException(400, "Stripe-Signature: the timestamp is in the future")
    try:
        about = _read(event)
    except (AttributeError, KeyError, TypeError, ValueError, ProviderTimeout):
        raise HTTPException(400, "a signed event, but not one of Stripe's shape") from None
    if about is None:
        return Received(received=True, acted=False)
    acted = await payments.record_provider_event(
        request.app.state.sessions, settings.backoff, about
    )
    return Received(received=True, acted=acted)


def _read(event: Any) -> payments.ProviderEvent | None:
    """The event as payments' answer about one payment; None for a type we do not act on.
    Anything not of Stripe's shape raises (a 400, never a 500)."""
    body = event.to_dict()
    event_id, kind = body["id"], body["type"]
    if not isinstance(event_id, str) or not EVENT_ID.fullmatch(event_id):
        raise ValueError("no event id of Stripe's shape")
    if not isinstance(kind, str):
        raise ValueError("no event type")
    obj = body["data"]["object"]
    if not isinstance(obj, dict):
        raise ValueError("no object")
    if kind in CHARGE_EVENTS:
        result, reference, refund = charge_result(obj), obj.get("id"), False
    elif kind in REFUND_EVENTS and obj.get("refunded") is True:
        result = ProviderResult("refunded", _refund_id(obj))
        reference, refund = obj.get("payment_intent"), True
    else:
        return None
    metadata = obj.get("metadata")
    key = metadata.get("idempotency_key") if isinstance(metadata, dict) else None
    return payments.ProviderEvent(
        event_id,
        kind,
        key if isinstance(key, str) and len(key) <= KEY_CHARS else None,
        reference if isinstance(reference, str) and len(reference) <= KEY_CHARS else None,
        result,
        refund,
    )


def _signed_at(header: str | None) -> int:
    """The signature's timestamp (`t=`), already checked by the SDK to be an integer."""
    for part in (header or "").split(","):
        name, _, value = part.partition("=")
        if name.strip() == "t" and value.strip().isdigit():
            return int(value.strip()[:20])
    return 0


def _why(refused: stripe.SignatureVerificationError) -> str:
    """In our words: which check failed, never the header or the secret."""
    said = str(refused).lower()
    if "tolerance" in said:
        return "Stripe-Signature: the timestamp is too old"
    if "no stripe-signature" in said or "unable to extract" in said:
        return "Stripe-Signature: missing or malformed"
    return "Stripe-Signature: no signature matches the body with our endpoint secret"


def _refund_id(charge: dict[str, Any]) -> str | None:
    """Our refund among the charge's (its metadata names our key), else the latest."""
    listed = charge.get("refunds")
    made = (
        [r for r in (listed.get("data") or []) if isinstance(r, dict)]
        if isinstance(listed, dict)
        else []
    )
    ours = [
        r
        for r in made
        if isinstance(r.get("metadata"), dict) and r["metadata"].get("idempotency_key")
    ]
    chosen = (ours or made)[-1:]
    found = chosen[0].get("id") if chosen else None
    return found if isinstance(found, str) and len(found) <= KEY_CHARS else None
