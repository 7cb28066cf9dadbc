"""The payment provider is Stripe, through its official client (`stripe`, async over HTTPX).

One charge is one PaymentIntent, created and confirmed in one request under the
Idempotency-Key `{order_id}:charge`, with the key and the order in its metadata; its
refund is one Refund under `{order_id}:refund`. The customer's token is the
PaymentMethod the storefront made with Stripe.js or a mobile SDK (`pm_...`; in test
mode Stripe's own, e.g. `pm_card_visa`), confirmed with the method's type
(`card`, `alipay`, `wechat_pay`, `paypal`), a return URL for the redirecting methods
and the WeChat Pay client.

Stripe's answers, as payments' (services/payments/provider.py):

| Stripe says                                            | we say                    |
| ------------------------------------------------------ | ------------------------- |
| `succeeded`                                            | captured                  |
| `requires_action`, `processing`, `requires_capture`    | pending (+ `next_action`) |
| `canceled`                                             | cancelled                 |
| 402 card error, `requires_payment_method` with an error| declined, its decline code|
| a timeout, a 5xx, 409 (the same key still in flight)   | `ProviderTimeout`: unknown|
| unreachable, 429 (rate limit), 401/403 (our key)       | `ProviderUnavailable`     |

Unknown outcomes are settled as Stripe documents: retrieve the PaymentIntent by the id
we stored; without one, send the same request with the same key, which returns the
first request's result (a 402 included) and never charges twice.

**The 24-hour window.** Stripe forgets an idempotency key after 24 hours: the same
request sent later would charge again. So a charge whose id we never learnt is first
looked for with the Search API (`metadata['idempotency_key']`, which every intent of
ours carries) and only sent again when Search finds nothing; Search lags by about a
minute, which is inside the window, where the replay returns the first intent anyway.
Past 24 hours a payment is long decided: orders cancels it after PAYMENT_TIMEOUT_S
(minutes), and a cancel of an intent that was never found cancels nothing. A refund
whose id we never learnt is looked for among its PaymentIntent's refunds by the key in
its metadata before it is sent again.

After a 429, no request leaves this process before its Retry-After (1 s when Stripe
gives none): the settler's rows wait at least that long.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, TypeVar

import httpx
import stripe
from pydantic import ValidationError

from services.payments.provider import (
    ProviderResult,
    ProviderTimeout,
    ProviderUnavailable,
)
from shared.bounded_answers import BoundedTransport
from shared.events import Money, NextAction, PaymentMethod

log = logging.getLogger(__name__)

T = TypeVar("T")

REDIRECTING: Final = frozenset({"alipay", "paypal"})
DEFAULT_RETRY_AFTER_S: Final = 1.0
MAX_RETRY_AFTER_S: Final = 60.0
REASON_CHARS: Final = 64
# Stripe's ids: a prefix, an underscore, letters and digits; ours to keep in 64 characters.
REFERENCE: Final = re.compile(r"[a-z]{1,8}_[A-Za-z0-9_]{1,55}")
MESSAGE_CHARS: Final = 200

# httpx errors that mean the request never reached Stripe.
_NOT_SENT: Final = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class ProviderError(Exception):
    """Stripe refused the request itself (a bug of ours, not an outcome): said in our words."""


class StripeProvider:
    """A `PaymentProvider` on `stripe.StripeClient`."""

    def __init__(
        self,
        api_key: str,
        *,
        api_base: str = stripe.DEFAULT_API_BASE,
        timeout_s: float = 10.0,
        return_url: str = "https://example.com/checkout/return",
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        http = stripe.HTTPXClient(timeout=timeout_s)
        # Stripe's client library with an HTTPX client of ours: every answer read to a
        # bound (shared/bounded_answers.py); tests give the simulator's app as `transport`.
        http._client_async = httpx.AsyncClient(
            timeout=timeout_s, transport=BoundedTransport(transport)
        )
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base},
            http_client=http,
            max_network_retries=0,  # the settler retries, under the same key
        )
        self._http = http
        self._timeout_s = timeout_s
        self._return_url = return_url
        self._clock = clock
        self._quiet_until = 0.0

    async def close(self) -> None:
        await self._http.close_async()  # type: ignore[no-untyped-call]

    async def charge(
        self, key: str, amount: Money, fee: Money, method: PaymentMethod, token: str
    ) -> ProviderResult:
        params: dict[str, Any] = {
            "amount": amount.amount_minor,
            "currency": amount.currency.lower(),
            "confirm": True,
            "payment_method": token,
            "payment_method_types": [method],
            "metadata": {"order_id": key.rsplit(":", 1)[0], "idempotency_key": key},
        }
        if method in REDIRECTING:
            params["return_url"] = self._return_url
        if method == "wechat_pay":
            params["payment_method_options"] = {"wechat_pay": {"client": "web"}}
        try:
            intent = await self._call(
                lambda: self._client.v1.payment_intents.create_async(
                    params,  # type: ignore[arg-type]
                    {"idempotency_key": key},
                )
            )
        except stripe.CardError as declined:
            return _declined(_error_of(declined))
        return charge_result(_dict_of(intent))

    async def status(self, key: str, reference: str | None) -> ProviderResult:
        intent = await self._find_intent(key, reference)
        return ProviderResult("not_found") if intent is None else charge_result(intent)

    async def cancel(self, key: str, reference: str | None) -> ProviderResult:
        intent = await self._find_intent(key, reference)
        if intent is None:
            return ProviderResult("not_found")
        if intent.get("status") not in {"requires_action", "processing", "requires_capture"}:
            return charge_result(intent)  # settled already: its outcome stands
        try:
            return charge_result(await self.cancel_intent(intent["id"], key))
        except stripe.InvalidRequestError as refused:
            # It moved on meanwhile (captured, say): what it is now is the answer.
            log.info("cancel of %s refused (%s); reading it again", key, refused.code)
            return await self.status(key, intent["id"])

    async def cancel_intent(self, intent_id: str, key: str) -> dict[str, Any]:
        """The cancel request itself, under its own key (Stripe refuses a key reused on
        another endpoint)."""
        cancelled = await self._call(
            lambda: self._client.v1.payment_intents.cancel_async(
                intent_id, options={"idempotency_key": f"{key}:cancel"}
            )
        )
        return _dict_of(cancelled)

    async def refund(self, refund_key: str, charge_reference: str, amount: Money) -> ProviderResult:
        params: dict[str, Any] = {
            "payment_intent": charge_reference,
            "amount": amount.amount_minor,
            "metadata": {"order_id": refund_key.rsplit(":", 1)[0], "idempotency_key": refund_key},
        }
        try:
            made = await self._call(
                lambda: self._client.v1.refunds.create_async(
                    params,  # type: ignore[arg-type]
                    {"idempotency_key": refund_key},
                )
            )
        except stripe.InvalidRequestError as refused:
            return _declined(_error_of(refused))
        return refund_result(_dict_of(made))

    async def refund_status(self, refund_key: str, charge_reference: str) -> ProviderResult:
        listed = await self._call(
            lambda: self._client.v1.refunds.list_async(
                {"payment_intent": charge_reference, "limit": 100}
            )
        )
        for made in _listed(_dict_of(listed)):
            metadata = made.get("metadata")
            if isinstance(metadata, Mapping) and metadata.get("idempotency_key") == refund_key:
                return refund_result(made)
        return ProviderResult("not_found")

    async def _find_intent(self, key: str, reference: str | None) -> dict[str, Any] | None:
        """The PaymentIntent by its id, or else by the key in its metadata (Search)."""
        if reference is not None:
            try:
                intent = await self._call(
                    lambda: self._client.v1.payment_intents.retrieve_async(reference)
                )
            except stripe.InvalidRequestError as missing:
                if missing.http_status == 404:
                    return None
                raise ProviderError(_said(missing)) from missing
            return _dict_of(intent)
        query = f"metadata['idempotency_key']:'{_quoted(key)}'"
        found = await self._call(
            lambda: self._client.v1.payment_intents.search_async({"query": query, "limit": 10})
        )
        intents = sorted(_listed(_dict_of(found)), key=lambda i: _created(i.get("created")))
        # The first one made under the key is ours; a second could only follow an
        # expired key, and is refunded by nobody: say so loudly.
        if len(intents) > 1:
            log.error("%d PaymentIntents carry the key %s", len(intents), key)
        return intents[0] if intents else None

    async def _call(self, request: Callable[[], Awaitable[T]]) -> T:
        """One request to Stripe, its failures said in payments' terms."""
        wait = self._quiet_until - self._clock()
        if wait > 0:
            raise ProviderUnavailable("rate limited by Stripe", retry_after_s=wait)
        try:
            # A deadline for the whole request, whatever the transport does with its own.
            async with asyncio.timeout(self._timeout_s):
                return await request()
        except TimeoutError as lost:
            raise ProviderTimeout("no answer from Stripe in time") from lost
        except stripe.RateLimitError as limited:
            retry_after = _retry_after(limited.headers)
            self._quiet_until = self._clock() + retry_after
            raise ProviderUnavailable("rate limited by Stripe", retry_after) from limited
        except stripe.APIConnectionError as lost:
            if isinstance(lost.__cause__, _NOT_SENT):
                raise ProviderUnavailable("Stripe could not be reached") from lost
            raise ProviderTimeout("no answer from Stripe in time") from lost
        except (stripe.AuthenticationError, stripe.PermissionError) as refused:
            log.error("Stripe refused our API key: %s", _said(refused))
            raise ProviderUnavailable("Stripe refused our API key") from refused
        except stripe.IdempotencyError as misused:
            raise ProviderError(_said(misused)) from misused
        except stripe.APIError as failed:
            # 5xx or 409 (the same key in flight): it may have acted, or may still.
            raise ProviderTimeout(f"Stripe answered {failed.http_status}") from failed
        except (AttributeError, KeyError, TypeError, ValueError, RecursionError) as unreadable:
            # An answer the client library could not read: whatever it said is unknown.
            raise ProviderTimeout("Stripe's answer could not be read") from unreadable


def _dict_of(answer: object) -> dict[str, Any]:
    """The client library's object as plain data; anything else is an unreadable answer."""
    to_dict = getattr(answer, "to_dict", None)
    data = to_dict() if callable(to_dict) else None
    if not isinstance(data, dict):
        raise ProviderTimeout("Stripe's answer could not be read")
    return data


def _listed(page: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The objects of a list or search answer; an answer without a list is unreadable."""
    data = page.get("data")
    if not isinstance(data, list):
        raise ProviderTimeout("Stripe's list could not be read")
    return [item for item in data if isinstance(item, dict)]


def _created(value: object) -> int:
    return value if isinstance(value, int) else 0


def charge_result(intent: Mapping[str, Any]) -> ProviderResult:
    """A PaymentIntent as payments' answer; one that cannot be read (no id of Stripe's
    shape, a status Stripe does not document for a confirmed intent) is no answer at all:
    the outcome stays unknown and is asked about again, never taken for a decline."""
    if not isinstance(intent, Mapping):
        raise ProviderTimeout("Stripe's answer could not be read")
    reference = intent.get("id")
    if not isinstance(reference, str) or not REFERENCE.fullmatch(reference):
        raise ProviderTimeout("Stripe's answer carries no PaymentIntent id we can keep")
    match intent.get("status"):
        case "succeeded":
            return ProviderResult("captured", reference)
        case "requires_action" | "processing" | "requires_capture":
            return ProviderResult("pending", reference, next_action=next_action_of(intent))
        case "canceled":
            return ProviderResult("cancelled", reference)
        case "requires_payment_method":
            error = intent.get("last_payment_error")
            if not isinstance(error, Mapping):
                error = {
                    "code": "payment_method_required",
                    "message": "The payment was not completed.",
                }
            return _declined(error, reference)
    raise ProviderTimeout("Stripe's answer has a status we do not know")


def refund_result(made: Mapping[str, Any]) -> ProviderResult:
    if not isinstance(made, Mapping):
        raise ProviderTimeout("Stripe's answer could not be read")
    reference = made.get("id")
    if not isinstance(reference, str) or not REFERENCE.fullmatch(reference):
        raise ProviderTimeout("Stripe's answer carries no Refund id we can keep")
    match made.get("status"):
        case "succeeded":
            return ProviderResult("refunded", reference)
        case "pending" | "requires_action":
            return ProviderResult("pending", reference)
    reason = made.get("failure_reason") or made.get("status") or "refund_failed"
    return ProviderResult("declined", reference, _reason(reason), "The refund failed.")


def next_action_of(intent: Mapping[str, Any]) -> NextAction | None:
    """Stripe's `next_action`, as much of it as the customer needs; None when too big."""
    action = intent.get("next_action")
    if not isinstance(action, Mapping):
        return None
    kind = action.get("type")
    details = action.get(kind) if isinstance(kind, str) else None
    if not isinstance(details, Mapping):
        return None
    try:
        match kind:
            case "alipay_handle_redirect" | "redirect_to_url":
                return NextAction(type="redirect", url=details.get("url"))
            case "wechat_pay_display_qr_code":
                return NextAction(
                    type="qr_code",
                    qr_code_data=details.get("data"),
                    url=details.get("hosted_instructions_url"),
                )
    except ValidationError:
        log.warning("next_action %s of %s not passed on: out of bounds", kind, intent.get("id"))
    return None


def _declined(error: Mapping[str, Any], reference: str | None = None) -> ProviderResult:
    reason = error.get("decline_code") or error.get("code") or "provider_declined"
    intent = error.get("payment_intent")
    known = intent.get("id") if isinstance(intent, Mapping) else None
    if reference is None and isinstance(known, str) and REFERENCE.fullmatch(known):
        reference = known
    return ProviderResult(
        "declined",
        reference,
        _reason(str(reason)),
        _message(error.get("message")),
    )


def _error_of(failure: stripe.StripeError) -> Mapping[str, Any]:
    body = failure.json_body if isinstance(failure.json_body, dict) else {}
    error = body.get("error")
    return error if isinstance(error, dict) else {"code": str(failure.code or "")[:64]}


def _reason(text: str) -> str:
    """A machine's reason: Stripe's codes are snake_case; anything else is made so."""
    return re.sub(r"[^a-z0-9_]", "_", text.lower())[:REASON_CHARS] or "provider_declined"


def _message(text: object) -> str:
    """For people, bounded; Stripe's own messages name no card number or secret."""
    if not isinstance(text, str) or not text.strip():
        return "The payment was declined."
    printable = "".join(c if c.isprintable() else " " for c in text).strip()
    return printable if len(printable) <= MESSAGE_CHARS else printable[: MESSAGE_CHARS - 3] + "..."


def _said(failure: stripe.StripeError) -> str:
    error = _error_of(failure)
    return f"Stripe answered {failure.http_status} {error.get('type')}/{error.get('code')}"


def _retry_after(headers: Mapping[str, str] | None) -> float:
    try:
        seconds = float((headers or {}).get("retry-after") or DEFAULT_RETRY_AFTER_S)
    except ValueError:
        seconds = DEFAULT_RETRY_AFTER_S
    if not math.isfinite(seconds):
        seconds = (
            DEFAULT_RETRY_AFTER_S
            if math.isnan(seconds)
            else math.copysign(MAX_RETRY_AFTER_S, seconds)
        )
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def _quoted(key: str) -> str:
    """A value inside Search's single quotes."""
    return key.replace("\\", "\\\\").replace("'", "\\'")
