"""A line's auto-renewal over HTTP: opt in (or update, or resume) with PUT, opt out with
DELETE, and GET the settings, masked, with the renewal orders placed for the line."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Final, get_args

from email_validator import EmailNotValidError, validate_email
from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field, field_validator

from services.orders.validation import E164
from services.provisioning import renewals_db as rdb
from services.provisioning.known_lines import known_line
from services.provisioning.provisioning import Provisioner
from services.provisioning.renewals_db import (
    AutoRenewal,
    AutoRenewalStatus,
    RenewalOrder,
    RenewalSettings,
)
from shared.card_numbers import looks_like_card_number
from shared.events import PaymentMethod

router = APIRouter()

CURRENCY: Final = re.compile(r"^[A-Z]{3}$")
PAYMENT_METHODS: Final = get_args(PaymentMethod)


class AutoRenewalRequest(BaseModel):
    """What a line opts in with: the package and payment a renewal order is placed with,
    and the threshold (`alert`) whose crossing places it."""

    alert: str = Field(description="the threshold that renews: data_used_90, expires_in_1d, ...")
    package_id: str = Field(min_length=1, max_length=64)
    currency: str
    payment_method: str
    payment_token: str = Field(min_length=1, max_length=200)
    msisdn: str
    email: str

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        if not CURRENCY.match(value):
            raise ValueError(f"{value!r} is not an ISO 4217 code (three capitals, e.g. EUR)")
        return value

    @field_validator("payment_method")
    @classmethod
    def _payment_method(cls, value: str) -> str:
        if value not in PAYMENT_METHODS:
            raise ValueError(
                f"payment method {value!r} is not supported; use one of "
                + ", ".join(PAYMENT_METHODS)
            )
        return value

    @field_validator("payment_token")
    @classmethod
    def _token_not_card(cls, value: str) -> str:
        if looks_like_card_number(value):
            raise ValueError("send the payment provider's token, never a card number")
        return value

    @field_validator("msisdn")
    @classmethod
    def _msisdn(cls, value: str) -> str:
        if not E164.match(value):
            raise ValueError("the phone number must be in E.164 form, e.g. +447700900123")
        return value

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        try:
            validate_email(value, check_deliverability=False)
        except EmailNotValidError as error:
            raise ValueError(f"the email address is not valid: {error}") from None
        return value


class RenewalOrderView(BaseModel):
    request_id: str
    order_id: uuid.UUID
    alert: str
    attempt: int
    status: str  # due | placed | completed | failed | cancelled
    due_at: datetime | None  # when a due retry is placed
    failure_reason: str | None
    failure_message: str | None
    created_at: datetime
    updated_at: datetime


class AutoRenewalView(BaseModel):
    iccid: str
    status: str  # active | paused | off (also for a line that never opted in)
    alert: str | None
    package_id: str | None
    currency: str | None
    payment_method: str | None
    payment_token: str | None  # masked: its last 4 characters only
    msisdn: str | None  # masked
    email: str | None  # masked
    paused_reason: str | None
    paused_message: str | None
    updated_at: datetime | None
    renewal_orders: list[RenewalOrderView]


@router.put("/lines/{iccid}/auto-renewal")
async def opt_in(iccid: str, body: AutoRenewalRequest, request: Request) -> AutoRenewalView:
    """Opt in, or change the settings; a paused auto-renewal is resumed."""
    provisioner: Provisioner = request.app.state.provisioner
    allowed = provisioner.alerts.names()
    if body.alert not in allowed:
        raise HTTPException(
            status_code=422,
            detail=[
                {
                    "loc": ["body", "alert"],
                    "msg": f"unknown alert {body.alert!r}; one of " + ", ".join(allowed),
                    "type": "value_error",
                }
            ],
        )
    settings = RenewalSettings(**body.model_dump())
    async with request.app.state.sessions.begin() as session:
        await known_line(session, iccid)
        await rdb.opt_in(session, iccid, settings, provisioner.clock())
    return await _view(request, iccid)


@router.delete("/lines/{iccid}/auto-renewal")
async def opt_out(iccid: str, request: Request) -> AutoRenewalView:
    """Opt out: no renewal order is placed from now on. One already placed goes on."""
    provisioner: Provisioner = request.app.state.provisioner
    async with request.app.state.sessions.begin() as session:
        await known_line(session, iccid)
        await rdb.opt_out(session, iccid, provisioner.clock())
    return await _view(request, iccid)


@router.get("/lines/{iccid}/auto-renewal")
async def get_auto_renewal(iccid: str, request: Request) -> AutoRenewalView:
    return await _view(request, iccid)


async def _view(request: Request, iccid: str) -> AutoRenewalView:
    async with request.app.state.sessions() as session:
        await known_line(session, iccid)
        found = await rdb.find_auto_renewal(session, iccid)
        orders = await rdb.renewal_orders_of(session, iccid)
    return view_of(iccid, found, orders)


def view_of(iccid: str, found: AutoRenewal | None, orders: list[RenewalOrder]) -> AutoRenewalView:
    """The settings as they may be shown: never the whole token, phone number or email."""
    history = [RenewalOrderView.model_validate(vars(order)) for order in orders]
    if found is None:
        return AutoRenewalView(
            iccid=iccid, status=AutoRenewalStatus.OFF, alert=None, package_id=None,
            currency=None, payment_method=None, payment_token=None, msisdn=None, email=None,
            paused_reason=None, paused_message=None, updated_at=None, renewal_orders=history,
        )  # fmt: skip
    settings = found.settings
    return AutoRenewalView(
        iccid=iccid,
        status=found.status,
        alert=settings.alert,
        package_id=settings.package_id,
        currency=settings.currency,
        payment_method=settings.payment_method,
        payment_token=mask_token(settings.payment_token),
        msisdn=mask_msisdn(settings.msisdn),
        email=mask_email(settings.email),
        paused_reason=found.paused_reason,
        paused_message=found.paused_message,
        updated_at=found.updated_at,
        renewal_orders=history,
    )


def mask_token(token: str) -> str:
    """Its last 4 characters (none of a token that short)."""
    return "****" + (token[-4:] if len(token) > 8 else "")


def mask_msisdn(msisdn: str) -> str:
    """The country code's first digits and the last 2: +44********23."""
    return msisdn[:3] + "*" * (len(msisdn) - 5) + msisdn[-2:]


def mask_email(email: str) -> str:
    local, _, domain = email.rpartition("@")
    return f"{local[:1]}***@{domain}"
