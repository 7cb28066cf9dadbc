"""One short human line per message, for an order's timeline: what it said, not its
JSON. Read from the raw body (a malformed message gets a line too); never a line's
ICCID, phone or email."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

# ISO 4217 currencies without minor units; every other one we sell has two.
ZERO_DECIMAL_CURRENCIES: Final = frozenset({"JPY", "KRW", "VND", "CLP", "ISK", "HUF"})


def money(value: Any) -> str:
    """`{"amount_minor": 1299, "currency": "EUR"}` -> `12.99 EUR`."""
    if not isinstance(value, dict):
        return "?"
    minor, currency = value.get("amount_minor"), str(value.get("currency", "?"))
    if not isinstance(minor, int):
        return f"? {currency}"
    if currency in ZERO_DECIMAL_CURRENCIES:
        return f"{minor} {currency}"
    return f"{minor // 100}.{minor % 100:02d} {currency}"


def data(mb: Any) -> str:
    """`5120` -> `5 GB`, `512` -> `512 MB`, None -> `unlimited`."""
    if mb is None:
        return "unlimited"
    if not isinstance(mb, int):
        return "? MB"
    return f"{mb // 1024} GB" if mb and mb % 1024 == 0 else f"{mb} MB"


def _day(value: Any) -> str:
    return str(value)[:10]


def _top_up(body: dict[str, Any]) -> str:
    added = body.get("data_mb")
    if isinstance(added, int):
        added += int(body.get("bonus_mb") or 0)
    return f"{body.get('package_id')}: +{data(added)} for {body.get('validity_days')} days"


def _promo(body: dict[str, Any]) -> str:
    return f" with {body['promotion_code']}" if body.get("promotion_code") else ""


def _alert(body: dict[str, Any]) -> str:
    """`alert data_used_90: 912 of 1000 MB used`, `alert expires_in_1d: 200 MB left until
    2026-12-01`, `alert validity_ended on 2026-12-01`."""
    name, kind = body.get("alert"), body.get("kind")
    if kind == "validity_ended":
        return f"alert {name} on {_day(body.get('valid_until'))}"
    if kind == "expiry_near":
        left = data(body.get("data_remaining_mb"))
        return f"alert {name}: {left} left until {_day(body.get('valid_until'))}"
    used, quota = body.get("data_used_mb"), body.get("data_quota_mb")
    of_quota = f" of {quota}" if quota is not None else ""
    line = f"alert {name}: {used}{of_quota} MB used"
    if body.get("overage_mb"):
        line += f", {body['overage_mb']} MB beyond the balance"
    return line


def _forfeited(body: dict[str, Any]) -> str:
    line = f"forfeited {data(body.get('forfeited_mb'))}"
    if body.get("fair_use_forfeited_mb"):
        line += f" and {data(body['fair_use_forfeited_mb'])} of fair use"
    return line


def _action(body: dict[str, Any]) -> str:
    """What the customer is asked to do; never the link itself (it is theirs)."""
    action = body.get("next_action")
    kind = action.get("type") if isinstance(action, dict) else None
    return {"redirect": "a page to open", "qr_code": "a QR code to scan"}.get(
        str(kind), "nothing asked"
    )


SUMMARIES: Final[dict[str, Callable[[dict[str, Any]], str]]] = {
    "PlaceOrder": lambda b: (
        f"{b.get('package_id')} in {b.get('currency')} by {b.get('payment_method')}{_promo(b)}"
    ),
    "OrderPlaced": lambda b: f"{b.get('package_id')} for {money(b.get('total'))}{_promo(b)}",
    "OrderRejected": lambda b: f"{b.get('reason')}: {b.get('message')}",
    "OrderCompleted": lambda b: f"+{data(b.get('data_mb'))} until {_day(b.get('valid_until'))}",
    "OrderPaymentFailed": lambda b: str(b.get("reason")),
    "OrderExpired": lambda b: "payment not confirmed in time",
    "OrderRefunded": lambda b: f"{money(b.get('amount'))}: {b.get('reason')}",
    "OrderAwaitingPayment": lambda b: f"awaiting the customer ({_action(b)})",
    "ChargePayment": lambda b: f"{money(b.get('amount'))} by {b.get('payment_method')}",
    "CancelPayment": lambda b: str(b.get("reason")),
    "RefundPayment": lambda b: f"{money(b.get('amount'))}: {b.get('reason')}",
    "PaymentPending": lambda b: f"awaiting the provider's confirmation ({_action(b)})",
    "PaymentCaptured": lambda b: money(b.get("amount")),
    "PaymentDeclined": lambda b: str(b.get("reason")),
    "PaymentCancelled": lambda b: str(b.get("reason")),
    "PaymentRefunded": lambda b: money(b.get("amount")),
    "TopUpLine": _top_up,
    "LineToppedUp": lambda b: f"+{data(b.get('data_mb'))} until {_day(b.get('valid_until'))}",
    "TopUpFailed": lambda b: f"{b.get('reason')} after {b.get('attempts')} attempts",
    "UsageReported": lambda b: f"used {data(b.get('used_mb'))}",
    "LineAlertRaised": _alert,
    "DataForfeited": _forfeited,
    "AutoRenewalPaused": lambda b: (
        f"auto-renewal paused: {b.get('reason')} after {b.get('attempts')} attempts"
    ),
}


def summary(kind: str, body: Any, headers: dict[str, str]) -> str:
    """`ChargePayment 12.99 EUR by card`; a dead letter says why it is one, a replay
    where it came from."""
    about = SUMMARIES.get(kind)
    line = kind
    if about is not None and isinstance(body, dict):
        line = f"{kind} {about(body)}"
    elif not isinstance(body, dict):
        line = f"{kind} (not a JSON object)"
    if "dlq.reason" in headers:
        source = f"{headers.get('dlq.source.topic')} by {headers.get('dlq.consumer')}"
        line = f"dead letter ({headers['dlq.reason']}, refused on {source}): {line}"
    if "dlq.replayed_from" in headers:
        line += f" (replayed from {headers['dlq.replayed_from']})"
    return line
