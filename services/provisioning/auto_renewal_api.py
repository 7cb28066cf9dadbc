"""A line's auto-renewal over HTTP: opt in (or update, or resume) with PUT, opt out with
DELETE, and GET the settings, masked, with the renewal orders placed for the line."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from pathlib import Path
from typing import Final

from email_validator import EmailNotValidError, validate_email
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.orders.catalog import load_catalog
from services.orders.validation import E164
from services.provisioning import renewals_db as rdb
from services.provisioning.known_lines import NOT_FOUND, Iccid, known_line
from services.provisioning.provisioning import Provisioner
from services.provisioning.renewals_db import (
    AutoRenewal,
    AutoRenewalStatus,
    RenewalOrder,
    RenewalSettings,
)
from shared.access import Reader, Renewer
from shared.audit import audited
from shared.card_numbers import holds_card_number
from shared.events import PaymentMethod
from shared.http_errors import unprocessable
from shared.logs import mask_token

router = APIRouter()

CURRENCY: Final = re.compile(r"^[A-Z]{3}$")


class AutoRenewalRequest(BaseModel):
    """What a line opts in with: the package and payment a renewal order is placed with,
    and the threshold (`alert`) whose crossing places it. Every field is checked whole
    (no trailing newline, no NUL); the package and the currency against the catalog."""

    model_config = ConfigDict(extra="forbid")

    alert: str = Field(
        max_length=64,
        pattern=r"^[a-z0-9_]+$",
        description="the threshold that renews: data_used_90, expires_in_1d, ...",
    )
    package_id: str = Field(max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
    currency: str = Field(
        json_schema_extra={"pattern": "^[A-Z]{3}$"}, description="ISO 4217: one the package is in"
    )
    payment_method: PaymentMethod
    payment_token: str = Field(
        min_length=1,
        max_length=200,
        pattern=r"^[A-Za-z0-9_]+$",
        description="the payment provider's token (never a card number, in any form)",
    )
    msisdn: str = Field(json_schema_extra={"pattern": E164.pattern}, description="E.164")
    email: str = Field(max_length=254)

    @field_validator("payment_token", mode="before")
    @classmethod
    def _token_not_card(cls, value: object) -> object:
        if isinstance(value, str) and holds_card_number(value):
            raise ValueError("send the payment provider's token, never a card number")
        return value

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        if not CURRENCY.fullmatch(value):
            raise ValueError("not an ISO 4217 code (three capitals, e.g. EUR)")
        return value

    @field_validator("msisdn")
    @classmethod
    def _msisdn(cls, value: str) -> str:
        if not E164.fullmatch(value):
            raise ValueError("the phone number must be in E.164 form, e.g. +447700900123")
        return value

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        try:
            validate_email(value, check_deliverability=False)
        except EmailNotValidError:
            raise ValueError("the email address is not valid") from None
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
    updated_by: str | None = None  # the caller who last set or stopped it
    renewal_orders: list[RenewalOrderView]


@router.put("/lines/{iccid}/auto-renewal", responses=NOT_FOUND)
async def opt_in(
    iccid: Iccid, body: AutoRenewalRequest, request: Request, who: Renewer
) -> AutoRenewalView:
    """Opt in, or change the settings; a paused auto-renewal is resumed. Audited with
    the caller, who is also kept as the one who set the line's auto-renewal."""
    provisioner: Provisioner = request.app.state.provisioner
    _check_offered(body, provisioner.alerts.names(), provisioner.catalog_path)
    settings = RenewalSettings(**body.model_dump())
    async with request.app.state.sessions.begin() as session:
        await known_line(session, iccid)
        await rdb.opt_in(session, iccid, settings, provisioner.clock(), who)
        detail = {"alert": body.alert, "package_id": body.package_id}
        await audited(session, who, "auto_renewal.set", iccid, detail)
    return await _view(request, iccid)


@router.delete("/lines/{iccid}/auto-renewal", responses=NOT_FOUND)
async def opt_out(iccid: Iccid, request: Request, who: Renewer) -> AutoRenewalView:
    """Opt out: no renewal order is placed from now on. One already placed goes on."""
    provisioner: Provisioner = request.app.state.provisioner
    async with request.app.state.sessions.begin() as session:
        await known_line(session, iccid)
        await rdb.opt_out(session, iccid, provisioner.clock(), who)
        await audited(session, who, "auto_renewal.stop", iccid, {})
    return await _view(request, iccid)


@router.get("/lines/{iccid}/auto-renewal", responses=NOT_FOUND)
async def get_auto_renewal(iccid: Iccid, request: Request, _who: Reader) -> AutoRenewalView:
    return await _view(request, iccid)


def _check_offered(body: AutoRenewalRequest, alerts: tuple[str, ...], catalog_path: Path) -> None:
    """The alert is one provisioning raises; the package is in the catalog and sold in
    the currency: a renewal order placed with them would not be rejected for them."""
    if body.alert not in alerts:
        raise unprocessable(("body", "alert"), "unknown alert; one of " + ", ".join(alerts))
    package = load_catalog(catalog_path).packages.get(body.package_id)
    if package is None:
        raise unprocessable(("body", "package_id"), "no such package in the catalog")
    if body.currency not in package.prices:
        raise unprocessable(
            ("body", "currency"),
            "the package is not sold in this currency, only in "
            + ", ".join(sorted(package.prices)),
        )


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
            paused_reason=None, paused_message=None, updated_at=None, updated_by=None,
            renewal_orders=history,
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
        updated_by=found.updated_by,
        renewal_orders=history,
    )


def mask_msisdn(msisdn: str) -> str:
    """The country code's first digits and the last 2: +44********23."""
    return msisdn[:3] + "*" * (len(msisdn) - 5) + msisdn[-2:]


def mask_email(email: str) -> str:
    local, _, domain = email.rpartition("@")
    return f"{local[:1]}***@{domain}"
