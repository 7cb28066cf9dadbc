"""Checks an order request against the catalog and the rules for lines and customers.

The answer is either an accepted order (package, quote) or a rejection with a
machine-readable reason and a message for people. Nothing is stored here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from email_validator import EmailNotValidError, validate_email
from pydantic import ValidationError

from services.orders.catalog import Catalog, Package
from services.orders.pricing import Quote, quote
from shared.card_numbers import holds_card_number, luhn_valid
from shared.events import PlaceOrder, RejectionReason
from shared.limits import quoted

MESSAGE_CHARS = 500  # OrderRejected.message at most (docs/contract.md)

E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")  # fullmatch: no trailing newline
ICCID = re.compile(r"^89[0-9]{17,18}$")


@dataclass(frozen=True)
class Accepted:
    command: PlaceOrder
    package: Package
    quote: Quote


@dataclass(frozen=True)
class Rejected:
    """`message` quotes at most a short prefix of what the publisher sent (shared/limits.py
    quoted) and is cut to MESSAGE_CHARS: an answer never grows with the request."""

    reason: RejectionReason
    message: str

    def __post_init__(self) -> None:
        if len(self.message) > MESSAGE_CHARS:
            object.__setattr__(self, "message", self.message[: MESSAGE_CHARS - 3] + "...")


def parse_request(body: Any) -> PlaceOrder | Rejected:
    """The request as a PlaceOrder, or why it is not one: a card number where the token
    goes (checked first, whatever else is wrong: it goes no further), or missing,
    mistyped or oversized fields."""
    token = body.get("payment_token") if isinstance(body, dict) else None
    if isinstance(token, str) and holds_card_number(token):
        return Rejected(
            "card_number_not_accepted",
            "payment_token holds a card number: send the payment provider's token instead; "
            "a card number is never taken",
        )
    if isinstance(token, str) and any(ord(char) < 0x20 for char in token):
        return Rejected("malformed_request", "payment_token: control characters are not allowed")
    try:
        return PlaceOrder.model_validate(body)
    except ValidationError as error:
        if any("schema_version" in e["loc"] for e in error.errors()):
            raise  # a version this code does not know: dead-lettered, not guessed at
        problems = "; ".join(
            f"{'.'.join(str(p)[:40] for p in e['loc']) or 'body'}: {e['msg'][:100]}"
            for e in error.errors()[:5]
        )
        return Rejected("malformed_request", f"the request is not a valid PlaceOrder: {problems}")


def validate(command: PlaceOrder, catalog: Catalog, now: datetime) -> Accepted | Rejected:
    package = catalog.packages.get(command.package_id)
    if package is None:
        known = ", ".join(sorted(catalog.packages))
        return Rejected(
            "unknown_package", f"no package {quoted(command.package_id)}; on sale: {known}"
        )
    if not (ICCID.fullmatch(command.iccid) and luhn_valid(command.iccid)):
        return Rejected(
            "invalid_iccid",
            "the ICCID must be 19 or 20 digits starting with 89 with a valid Luhn check digit",
        )
    if not E164.fullmatch(command.msisdn):
        return Rejected(
            "invalid_msisdn", "the phone number must be in E.164 form, e.g. +447700900123"
        )
    try:
        validate_email(command.email, check_deliverability=False)
    except EmailNotValidError as error:
        return Rejected("invalid_email", f"the email address is not valid: {str(error)[:120]}")
    if command.currency not in catalog.currencies or command.currency not in package.prices:
        offered = ", ".join(sorted(package.prices))
        return Rejected(
            "unsupported_currency",
            f"{command.package_id} is not sold in {quoted(command.currency)}; it is in {offered}",
        )
    fee = catalog.payment_methods.get(command.payment_method)  # type: ignore[call-overload]
    if fee is None:
        methods = ", ".join(sorted(catalog.payment_methods))
        return Rejected(
            "unsupported_payment_method",
            f"payment method {quoted(command.payment_method)} is not supported; "
            f"use one of {methods}",
        )
    promotion = None
    if command.promotion_code:
        promotion = catalog.promotions.get(command.promotion_code.upper())
        if promotion is None or not promotion.applies(package.package_id, command.currency, now):
            return Rejected(
                "invalid_promotion",
                f"promotion {quoted(command.promotion_code)} is unknown, has ended "
                f"or does not apply to {package.package_id} in {command.currency}",
            )
    return Accepted(command, package, quote(package, command.currency, fee, promotion))
