"""The event contract: one frozen pydantic model per message.

Events are named in the past tense, commands in the imperative. Every message
carries `event_id`, `occurred_at`, `schema_version`, the line's `iccid` and a
`type` literal naming the message, so one topic can carry several messages;
every message but the carrier's usage reports also carries the `order_id` it is
about. Changes are additive only: new fields are optional, nothing
is renamed or retyped: tests/contract/snapshots/ holds the JSON schemas and a
test refuses a change that is not additive. docs/asyncapi.yaml is generated
from this module (`make contract`); docs/contract.md says how it evolves.

Which topic carries which message is in `shared/topics.py`.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    field_validator,
    model_validator,
)

# Order ids are derived from the publisher's request id, so publishing the same
# request twice names the same order and a publisher can compute it up front.
ORDER_NAMESPACE = uuid.UUID("6f1c2a4e-9a53-4a8e-8a4c-3f0b7d1e2c55")

PaymentMethod = Literal["card", "paypal", "alipay", "wechat_pay"]

# Every text field is bounded (docs/contract.md, Sizes): generous for what the field is,
# so a wrong value is still refused with its own reason, never an unbounded one.
Code = Annotated[str, Field(max_length=64)]  # package ids, reasons, alert names...
Reference = Annotated[str, Field(max_length=255)]  # tokens and references of the outside
URL_CHARS = 2048
Url = Annotated[str, Field(max_length=URL_CHARS, pattern=r"^https?://")]
TEXT_CHARS = 1000


def _cut(value: Any) -> Any:
    """Ours compose messages from others' (a decline's, a rejection's): cut, not refused."""
    if isinstance(value, str) and len(value) > TEXT_CHARS:
        return value[: TEXT_CHARS - 3] + "..."
    return value


Text = Annotated[str, BeforeValidator(_cut), Field(max_length=TEXT_CHARS)]  # for people
IdempotencyKey = Annotated[str, Field(max_length=100)]
RequestId = Annotated[str, Field(min_length=1, max_length=200)]


def order_id_for(request_id: str) -> uuid.UUID:
    return uuid.uuid5(ORDER_NAMESPACE, request_id)


def _now() -> datetime:
    return datetime.now(UTC)


class Money(BaseModel):
    """An amount in integer minor units (cents) of an ISO 4217 currency. Never a float."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    amount_minor: int = Field(ge=0, strict=True)
    currency: str = Field(pattern=r"^[A-Z]{3}$")

    def __add__(self, other: Money) -> Money:
        if other.currency != self.currency:
            raise ValueError(f"cannot add {other.currency} to {self.currency}")
        return Money(amount_minor=self.amount_minor + other.amount_minor, currency=self.currency)


SUPPORTED_SCHEMA_VERSIONS: frozenset[int] = frozenset({1})


class Envelope(BaseModel):
    """What every message carries, whoever sends it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    # Each message narrows `type` to a Literal of its own name.
    type: str = Field(description="the message's name; selects its schema on a shared topic")
    event_id: uuid.UUID = Field(
        default_factory=uuid.uuid4,
        description="unique per message; consumers deduplicate redeliveries by it",
    )
    occurred_at: datetime = Field(default_factory=_now, description="when it happened (UTC)")
    schema_version: int = Field(default=1, description="the versions this code reads: 1")
    iccid: str = Field(
        max_length=32, description="the line's ICCID; also the Kafka key, so a line is ordered"
    )

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, version: int) -> int:
        # A newer version may mean something this code does not know: dead-letter it
        # (shared/dead_letters.py) rather than guess.
        if version not in SUPPORTED_SCHEMA_VERSIONS:
            raise ValueError(f"unknown schema_version {version}; this consumer reads 1")
        return version


class Message(Envelope):
    """The envelope of every message about an order, and of our services' messages."""

    order_id: uuid.UUID = Field(description="the order (saga) it is about: uuid5 of request_id")


# --- orders.commands.v1: what publishers send ---------------------------------------


def _optional(schema: dict[str, Any], field: str) -> None:
    """Say in a model's JSON schema that `field` may be left out (a validator fills it)."""
    schema["required"] = [name for name in schema.get("required", []) if name != field]


class PlaceOrder(Message):
    """A request to top up one line with one package.

    `order_id` may be left out: it is derived from `request_id`. Business rules
    (a known package, a valid ICCID, email and phone, a supported currency and
    payment method) are checked by orders, which answers `OrderRejected` with a
    machine-readable reason, so these fields are plain strings here.
    """

    model_config = ConfigDict(
        frozen=True, extra="ignore", json_schema_extra=lambda schema: _optional(schema, "order_id")
    )

    type: Literal["PlaceOrder"] = "PlaceOrder"
    request_id: RequestId
    package_id: Code
    currency: str = Field(max_length=8)
    payment_method: str = Field(max_length=32)
    payment_token: str = Field(
        min_length=1, max_length=255, description="the provider's token, never a card"
    )
    msisdn: str = Field(max_length=32, description="the line's phone number, E.164")
    email: str = Field(max_length=254)
    promotion_code: Code | None = None

    @model_validator(mode="before")
    @classmethod
    def _derive_order_id(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("order_id") is None and "request_id" in data:
            return {**data, "order_id": order_id_for(str(data["request_id"]))}
        return data

    @model_validator(mode="after")
    def _order_id_matches_request(self) -> PlaceOrder:
        if self.order_id != order_id_for(self.request_id):
            raise ValueError("order_id must be order_id_for(request_id) or left out")
        return self


# --- orders.events.v1: what publishers read back ------------------------------------

RejectionReason = Literal[
    "malformed_request",
    "unknown_package",
    "invalid_iccid",
    "invalid_email",
    "invalid_msisdn",
    "unsupported_currency",
    "unsupported_payment_method",
    "invalid_promotion",
    "card_number_not_accepted",
    "request_id_reused",
]


class OrderPlaced(Message):
    """Accepted: the price is fixed and the payment is being taken."""

    type: Literal["OrderPlaced"] = "OrderPlaced"
    request_id: RequestId
    package_id: Code
    catalog_version: Code
    price: Money = Field(description="the package's list price")
    discount: Money
    fee: Money = Field(description="the payment method's fee")
    total: Money = Field(description="price - discount + fee: what is charged")
    promotion_code: Code | None = None
    bonus_mb: int = 0
    payment_method: PaymentMethod


class OrderRejected(Message):
    """Refused before anything was created; `reason` is for machines, `message` for people."""

    type: Literal["OrderRejected"] = "OrderRejected"
    request_id: RequestId
    reason: RejectionReason
    message: Text


class OrderCompleted(Message):
    """The line was topped up: the saga ended well."""

    type: Literal["OrderCompleted"] = "OrderCompleted"
    request_id: RequestId
    data_mb: int | None = Field(description="data added, bonus included; None when unlimited")
    valid_until: datetime


class OrderPaymentFailed(Message):
    """The payment was declined or cancelled; nothing was charged."""

    type: Literal["OrderPaymentFailed"] = "OrderPaymentFailed"
    request_id: RequestId
    reason: Code
    message: Text


class OrderExpired(Message):
    """The payment was not confirmed in time; nothing was charged (or it was refunded)."""

    type: Literal["OrderExpired"] = "OrderExpired"
    request_id: RequestId


class OrderAwaitingPayment(Message):
    """The payment awaits the customer: `next_action` says what they do (open a page,
    scan a QR code); the order goes on once the provider confirms, or expires."""

    type: Literal["OrderAwaitingPayment"] = "OrderAwaitingPayment"
    request_id: RequestId
    payment_method: PaymentMethod
    next_action: NextAction | None = Field(
        default=None, description="None when the provider asks nothing of the customer"
    )


class OrderRefunded(Message):
    """The top-up failed after the payment was captured: refunded in full, fee included."""

    type: Literal["OrderRefunded"] = "OrderRefunded"
    request_id: RequestId
    amount: Money
    reason: Code


# --- payments.commands.v1 -------------------------------------------------------------


class ChargePayment(Message):
    """Charge the order's total with the publisher's payment token; at most once per key."""

    type: Literal["ChargePayment"] = "ChargePayment"
    amount: Money = Field(description="the total to charge, fee included")
    fee: Money
    payment_method: PaymentMethod
    payment_token: Reference
    idempotency_key: IdempotencyKey = Field(description="f'{order_id}:charge'")


class CancelPayment(Message):
    """Stop waiting for a pending charge; if it was captured after all, it is reported."""

    type: Literal["CancelPayment"] = "CancelPayment"
    idempotency_key: IdempotencyKey = Field(description="the charge's key, f'{order_id}:charge'")
    reason: Code


class RefundPayment(Message):
    """Give back a captured charge in full; at most once per key."""

    type: Literal["RefundPayment"] = "RefundPayment"
    amount: Money = Field(description="what was charged, fee included")
    idempotency_key: IdempotencyKey = Field(description="f'{order_id}:refund'")
    reason: Code


# --- payments.events.v1 ---------------------------------------------------------------


class NextAction(BaseModel):
    """The customer's next step to complete an asynchronous payment (Stripe's
    `next_action`): open a page, or scan a QR code with the wallet's app."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    type: Literal["redirect", "qr_code"] = Field(
        description="redirect: send the customer to `url`; qr_code: show `qr_code_data` "
        "as a QR code (`url`, when given, is a page that shows it)"
    )
    url: Url | None = Field(default=None, description="the provider's page for the customer")
    qr_code_data: Annotated[str, Field(max_length=URL_CHARS)] | None = Field(
        default=None, description="what the QR code encodes (WeChat Pay)"
    )


class PaymentPending(Message):
    """The provider accepted the charge and will confirm it later (asynchronous methods)."""

    type: Literal["PaymentPending"] = "PaymentPending"
    provider_reference: Reference
    next_action: NextAction | None = Field(
        default=None, description="what the customer does to confirm it, when they must"
    )


class PaymentCaptured(Message):
    """The money was taken."""

    type: Literal["PaymentCaptured"] = "PaymentCaptured"
    amount: Money
    fee: Money
    provider_reference: Reference


class PaymentDeclined(Message):
    """The provider refused the charge; nothing was taken."""

    type: Literal["PaymentDeclined"] = "PaymentDeclined"
    reason: Code = Field(description="e.g. insufficient_funds, card_expired, provider_declined")
    message: Text


class PaymentCancelled(Message):
    """A pending charge was cancelled before it was captured; nothing was taken."""

    type: Literal["PaymentCancelled"] = "PaymentCancelled"
    reason: Code


class PaymentRefunded(Message):
    """A captured charge was refunded."""

    type: Literal["PaymentRefunded"] = "PaymentRefunded"
    amount: Money
    provider_reference: Reference


# --- provisioning.commands.v1 ---------------------------------------------------------


class TopUpLine(Message):
    """Add a package's data and validity to a line; at most once per key."""

    type: Literal["TopUpLine"] = "TopUpLine"
    package_id: Code
    data_mb: int | None = Field(ge=0, description="None for an unlimited package")
    fair_use_mb: int | None = Field(default=None, ge=0, description="cap of an unlimited one")
    bonus_mb: int = Field(default=0, ge=0)
    validity_days: int = Field(ge=1, le=365)
    idempotency_key: IdempotencyKey = Field(description="f'{order_id}:topup'")


# --- provisioning.events.v1 -----------------------------------------------------------


class LineToppedUp(Message):
    """The carrier applied the top-up; the line's new balance and validity."""

    type: Literal["LineToppedUp"] = "LineToppedUp"
    data_mb: int | None = Field(description="data added, bonus included; None when unlimited")
    valid_until: datetime
    data_remaining_mb: int | None = Field(description="the line's balance after; None unlimited")


class TopUpFailed(Message):
    """The carrier refused the top-up for good (or every retry failed): compensate."""

    type: Literal["TopUpFailed"] = "TopUpFailed"
    reason: Code = Field(description="e.g. line_suspended, line_unknown, retries_exhausted")
    message: Text
    attempts: int


# --- carrier.usage.v1: what the carrier reports (locally: services/carrier_simulator) ---


class UsageReported(Envelope):
    """Data a line used in a period, as the carrier measured it. Not about an order,
    so it has no `order_id`; its `event_id` is the carrier's report id, and a report
    delivered twice is counted once."""

    type: Literal["UsageReported"] = "UsageReported"
    event_id: uuid.UUID = Field(
        description="the carrier's report id, required: a report delivered twice is counted once"
    )
    iccid: str = Field(max_length=32, description="the line's ICCID; also the Kafka key")
    used_mb: int = Field(ge=0, strict=True, description="data used in the period, in MB")
    period_start: datetime
    period_end: datetime

    @model_validator(mode="after")
    def _period_in_order(self) -> UsageReported:
        if self.period_end < self.period_start:
            raise ValueError("period_end is before period_start")
        return self


# --- provisioning.line-events.v1: facts about lines, for internal systems to act on ---
# `order_id` is the order whose top-up started the line's current package cycle (for
# AutoRenewalPaused: the last renewal order), so one trace and one timeline hold it.

AlertKind = Literal["data_used", "data_exhausted", "expiry_near", "validity_ended"]


class LineAlertRaised(Message):
    """A line crossed a threshold: once per threshold per package cycle, for internal
    systems to notify the customer (e.g. 75% or 90% used, 3 days or 1 day left)."""

    type: Literal["LineAlertRaised"] = "LineAlertRaised"
    alert: Code = Field(description="the threshold's name: data_used_75, expires_in_1d, ...")
    kind: AlertKind
    cycle_started_at: datetime
    data_quota_mb: int | None = Field(description="data the cycle started with; None unlimited")
    data_used_mb: int = Field(description="data used in this cycle so far, overage included")
    data_remaining_mb: int | None = Field(description="None while the line is unlimited")
    overage_mb: int = Field(default=0, description="used beyond the balance in this cycle")
    valid_until: datetime


class DataForfeited(Message):
    """The line's validity ended: what was left of its data is forfeited (stacking rule)."""

    type: Literal["DataForfeited"] = "DataForfeited"
    forfeited_mb: int = Field(ge=0)
    fair_use_forfeited_mb: int | None = Field(default=None, description="of an unlimited one")
    valid_until: datetime


class AutoRenewalPaused(Message):
    """Auto-renewal of the line stopped trying: `reason` says why; the line opts in again
    to resume it."""

    type: Literal["AutoRenewalPaused"] = "AutoRenewalPaused"
    reason: Code = Field(description="e.g. payment_declined, order_rejected, retries_exhausted")
    message: Text
    attempts: int = Field(description="renewal orders placed for this crossing")
    alert: Code = Field(description="the threshold whose crossing asked for the renewal")


# --- one union per topic --------------------------------------------------------------

PaymentsCommand = Annotated[
    ChargePayment | CancelPayment | RefundPayment, Field(discriminator="type")
]
PaymentsEvent = Annotated[
    PaymentPending | PaymentCaptured | PaymentDeclined | PaymentCancelled | PaymentRefunded,
    Field(discriminator="type"),
]
OrdersEvent = Annotated[
    OrderPlaced
    | OrderRejected
    | OrderCompleted
    | OrderPaymentFailed
    | OrderExpired
    | OrderRefunded
    | OrderAwaitingPayment,
    Field(discriminator="type"),
]
ProvisioningEvent = Annotated[LineToppedUp | TopUpFailed, Field(discriminator="type")]
LineEvent = Annotated[
    LineAlertRaised | DataForfeited | AutoRenewalPaused, Field(discriminator="type")
]

ALL_MESSAGES: tuple[type[Envelope], ...] = (
    PlaceOrder,
    OrderPlaced,
    OrderRejected,
    OrderCompleted,
    OrderPaymentFailed,
    OrderExpired,
    OrderRefunded,
    OrderAwaitingPayment,
    ChargePayment,
    CancelPayment,
    RefundPayment,
    PaymentPending,
    PaymentCaptured,
    PaymentDeclined,
    PaymentCancelled,
    PaymentRefunded,
    TopUpLine,
    LineToppedUp,
    TopUpFailed,
    UsageReported,
    LineAlertRaised,
    DataForfeited,
    AutoRenewalPaused,
)

orders_events: TypeAdapter[Any] = TypeAdapter(OrdersEvent)
