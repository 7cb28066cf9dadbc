"""`POST /webhooks/stripe`: Stripe's events about our payments, verified and acted on once.

Stripe signs instead of sending a bearer token, so the path is public to the HTTP guard
(the body bound still applies); the signature (Stripe-Signature, with the endpoint's
secret STRIPE_WEBHOOK_SECRET) is checked by the SDK's own `construct_event`. A bad
signature or a stale timestamp is a 400 that changes nothing. Each event id is recorded
once, in the transaction of its effect, so a replayed event changes nothing; event
types we do not act on are acknowledged and ignored.
"""

from __future__ import annotations

from typing import Any, Final

import stripe
from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel

from services.payments import payments
from services.payments.provider import ProviderResult
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
    try:
        event = stripe.Webhook.construct_event(
            payload,
            request.headers.get("stripe-signature"),
            secret,
            tolerance=settings.stripe_webhook_tolerance_s,
        )
    except stripe.SignatureVerificationError as refused:
        raise HTTPException(400, _why(refused)) from None
    except ValueError:
        raise HTTPException(400, "the body is not a JSON event") from None
    body: dict[str, Any] = event.to_dict()
    kind = str(body.get("type", ""))
    obj = (body.get("data") or {}).get("object") or {}
    if kind in CHARGE_EVENTS:
        result = charge_result(obj)
        reference, refund = obj.get("id"), False
    elif kind in REFUND_EVENTS and obj.get("refunded"):
        result = ProviderResult("refunded", _refund_id(obj))
        reference, refund = obj.get("payment_intent"), True
    else:
        return Received(received=True, acted=False)
    key = (obj.get("metadata") or {}).get("idempotency_key")
    acted = await payments.record_provider_event(
        request.app.state.sessions,
        settings.backoff,
        payments.ProviderEvent(str(body.get("id", ""))[:255], kind, key, reference, result, refund),
    )
    return Received(received=True, acted=acted)


def _why(refused: stripe.SignatureVerificationError) -> str:
    """In our words: which check failed, never the header or the secret."""
    said = str(refused).lower()
    if "tolerance" in said:
        return "Stripe-Signature: the timestamp is too old (or in the future)"
    if "no stripe-signature" in said or "unable to extract" in said:
        return "Stripe-Signature: missing or malformed"
    return "Stripe-Signature: no signature matches the body with our endpoint secret"


def _refund_id(charge: dict[str, Any]) -> str | None:
    """Our refund among the charge's (its metadata names our key), else the latest."""
    made = ((charge.get("refunds") or {}).get("data")) or []
    ours = [r for r in made if (r.get("metadata") or {}).get("idempotency_key")]
    chosen = (ours or made)[-1:]
    return chosen[0].get("id") if chosen else None
