"""The event contract: one frozen pydantic model per message.

Events are named in the past tense, commands in the imperative. Every message
carries `event_id`, `occurred_at`, `schema_version`, `order_id` and the line's
`iccid`, plus a `type` literal so one topic can carry several messages.
Changes are additive only: new fields are optional, nothing is renamed or retyped.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# Order ids are derived from the publisher's request id, so publishing the same
# request twice names the same order and a publisher can compute it up front.
ORDER_NAMESPACE = uuid.UUID("6f1c2a4e-9a53-4a8e-8a4c-3f0b7d1e2c55")


def order_id_for(request_id: str) -> uuid.UUID:
    return uuid.uuid5(ORDER_NAMESPACE, request_id)


def _now() -> datetime:
    return datetime.now(UTC)


class Money(BaseModel):
    """An amount in integer minor units (cents) of an ISO 4217 currency."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    amount_minor: int = Field(ge=0, strict=True)
    currency: str = Field(pattern=r"^[A-Z]{3}$")


class Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    occurred_at: datetime = Field(default_factory=_now)
    schema_version: int = 1
    order_id: uuid.UUID
    iccid: str


# --- orders.commands.v1: what publishers send -----------------------------------


class PlaceOrder(Message):
    type: Literal["PlaceOrder"] = "PlaceOrder"
    request_id: str = Field(min_length=1, max_length=200)
    package_id: str


# --- orders.events.v1: what publishers read back ---------------------------------


class OrderPlaced(Message):
    type: Literal["OrderPlaced"] = "OrderPlaced"
    request_id: str
    package_id: str
    price: Money


class OrderCompleted(Message):
    type: Literal["OrderCompleted"] = "OrderCompleted"


# --- payments ---------------------------------------------------------------------


class ChargePayment(Message):
    type: Literal["ChargePayment"] = "ChargePayment"
    amount: Money
    idempotency_key: str


class PaymentCaptured(Message):
    type: Literal["PaymentCaptured"] = "PaymentCaptured"
    amount: Money


# --- provisioning -----------------------------------------------------------------


class TopUpLine(Message):
    type: Literal["TopUpLine"] = "TopUpLine"
    data_mb: int = Field(ge=0)
    validity_days: int = Field(ge=1, le=365)
    idempotency_key: str


class LineToppedUp(Message):
    type: Literal["LineToppedUp"] = "LineToppedUp"
    data_mb: int
    valid_until: datetime


ALL_MESSAGES: tuple[type[Message], ...] = (
    PlaceOrder,
    OrderPlaced,
    OrderCompleted,
    ChargePayment,
    PaymentCaptured,
    TopUpLine,
    LineToppedUp,
)
