"""What becomes of a payment, decided by its payment method (the token), and Stripe's
JSON shapes for what the ledger holds.

| payment method (the token)                      | outcome                                  |
| ------------------------------------------------ | ---------------------------------------- |
| `tok_decline...`, `pm_card_chargeDeclinedInsufficientFunds` | 402, insufficient_funds       |
| `tok_expired...`, `pm_card_chargeDeclinedExpiredCard`       | 402, expired_card             |
| `pm_card_chargeDeclined`                         | 402, generic_decline                     |
| 13-19 digits                                     | 402, card_number_not_accepted (masked)   |
| `tok_pending_forever...`                         | requires_action until cancelled          |
| `tok_timeout...`                                 | the first create's answer is lost        |
| `tok_refund_timeout...`                          | succeeded; its first refund's is lost    |
| anything else                                    | succeeded                                |

Alipay, WeChat Pay and PayPal answer requires_action with a next_action (a redirect, a
QR code) and succeed PROVIDER_CONFIRM_AFTER_S later (the customer confirmed), unless
declined first. A lost answer: the request acted and was committed, then its answer is
held PROVIDER_HANG_S, past the client's timeout.
Beyond those, PROVIDER_DECLINE_RATE declines at random (generic_decline).
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from shared.card_numbers import holds_card_number

ASYNCHRONOUS: Final = frozenset({"alipay", "wechat_pay", "paypal"})
# Pending intents that a later event confirms; a simulator's stand-in for the customer.
NEVER_CONFIRMED: Final = "tok_pending_forever"
TIMES_OUT_ON_CREATE: Final = "tok_timeout"
TIMES_OUT_ON_REFUND: Final = "tok_refund_timeout"

_DECLINES: Final = (
    (("tok_decline", "pm_card_chargeDeclinedInsufficientFunds",
      "pm_card_visa_chargeDeclinedInsufficientFunds"),
     "card_declined", "insufficient_funds", "Your card has insufficient funds."),
    (("tok_expired", "pm_card_chargeDeclinedExpiredCard"),
     "expired_card", "expired_card", "Your card has expired."),
    (("pm_card_chargeDeclined", "pm_card_visa_chargeDeclined"),
     "card_declined", "generic_decline", "Your card was declined."),
)  # fmt: skip


@dataclass(frozen=True)
class Outcome:
    status: str
    error: dict[str, Any] | None = None  # last_payment_error, for a decline
    next_action: dict[str, Any] | None = None
    confirm_after: timedelta | None = None  # None: never confirms by itself
    extra: dict[str, Any] = field(default_factory=dict)


def first_outcome(
    token: str,
    method: str,
    intent_id: str,
    *,
    rng: random.Random,
    decline_rate: float,
    confirm_after_s: float,
    return_url: str | None,
) -> Outcome:
    if holds_card_number(token):
        return _declined(
            "card_declined", "card_number_not_accepted", "Send a PaymentMethod, not a number."
        )
    for prefixes, code, decline_code, message in _DECLINES:
        if token.startswith(prefixes):
            return _declined(code, decline_code, message)
    if rng.random() < decline_rate:
        return _declined("card_declined", "generic_decline", "Your card was declined.")
    if token.startswith(NEVER_CONFIRMED):
        return Outcome("requires_action", next_action=next_action(method, intent_id, return_url))
    if method in ASYNCHRONOUS:
        return Outcome(
            "requires_action",
            next_action=next_action(method, intent_id, return_url),
            confirm_after=timedelta(seconds=confirm_after_s),
        )
    return Outcome("succeeded")


def next_action(method: str, intent_id: str, return_url: str | None) -> dict[str, Any]:
    """Stripe's next_action for the method: a redirect, or WeChat Pay's QR code."""
    page = f"https://hooks.stripe.com/simulator/{method}/{intent_id}"
    match method:
        case "alipay":
            return {
                "type": "alipay_handle_redirect",
                "alipay_handle_redirect": {
                    "url": page, "native_url": None, "native_data": None,
                    "return_url": return_url,
                },
            }  # fmt: skip
        case "wechat_pay":
            return {
                "type": "wechat_pay_display_qr_code",
                "wechat_pay_display_qr_code": {
                    "data": f"weixin://wxpay/bizpayurl?pr={intent_id[-12:]}",
                    "hosted_instructions_url": page,
                    "image_url_png": f"{page}.png", "image_url_svg": f"{page}.svg",
                    "image_data_url": None, "app_android": None, "app_ios": None,
                },
            }  # fmt: skip
    return {"type": "redirect_to_url", "redirect_to_url": {"url": page, "return_url": return_url}}


def _declined(code: str, decline_code: str, message: str) -> Outcome:
    error = {
        "type": "card_error",
        "code": code,
        "decline_code": decline_code,
        "message": message,
    }
    return Outcome("requires_payment_method", error=error)


def new_id(prefix: str) -> str:
    return f"{prefix}_sim{uuid.uuid4().hex[:21]}"


def timestamp(moment: datetime) -> int:
    return int(moment.timestamp())


def intent_json(row: Any) -> dict[str, Any]:
    """A PaymentIntent as Stripe shows it (the fields the adapter and the SDK read)."""
    succeeded = row.status == "succeeded"
    return {
        "id": row.id,
        "object": "payment_intent",
        "amount": row.amount,
        "amount_capturable": 0,
        "amount_received": row.amount if succeeded else 0,
        "capture_method": "automatic",
        "cancellation_reason": row.cancellation_reason,
        "client_secret": f"{row.id}_secret_simulated",
        "confirmation_method": "automatic",
        "created": timestamp(row.created),
        "currency": row.currency.lower(),
        "last_payment_error": row.last_payment_error,
        "latest_charge": _charge_id(row.id) if succeeded else None,
        "livemode": False,
        "metadata": row.metadata,
        "next_action": row.next_action if row.status == "requires_action" else None,
        "payment_method": row.payment_method,
        "payment_method_types": [row.payment_method_type],
        "status": row.status,
    }


def charge_json(intent: Any, refund_rows: list[Any]) -> dict[str, Any]:
    """The intent's Charge, for charge.refunded: with its refunds listed."""
    return {
        "id": _charge_id(intent.id),
        "object": "charge",
        "amount": intent.amount,
        "amount_refunded": intent.amount_refunded,
        "currency": intent.currency.lower(),
        "metadata": intent.metadata,
        "payment_intent": intent.id,
        "refunded": intent.amount_refunded >= intent.amount,
        "status": "succeeded",
        "refunds": {
            "object": "list",
            "data": [refund_json(r) for r in refund_rows],
            "has_more": False,
            "url": f"/v1/charges/{_charge_id(intent.id)}/refunds",
        },
    }


def refund_json(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "object": "refund",
        "amount": row.amount,
        "charge": _charge_id(row.payment_intent),
        "created": timestamp(row.created),
        "currency": row.currency.lower(),
        "failure_reason": None,
        "metadata": row.metadata,
        "payment_intent": row.payment_intent,
        "status": row.status,
    }


def error_json(kind: str, message: str, code: str | None = None, **more: Any) -> dict[str, Any]:
    return {"error": {"type": kind, "message": message, "code": code, **more}}


def dumps(body: dict[str, Any]) -> str:
    return json.dumps(body, separators=(",", ":"))


def _charge_id(intent_id: str) -> str:
    return "ch_" + intent_id.removeprefix("pi_")
