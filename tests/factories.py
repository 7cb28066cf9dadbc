"""Test data: random lines and valid order requests, so no two tests share state."""

from __future__ import annotations

import random
import uuid
from typing import Any

from services.orders.validation import luhn_valid


def random_iccid() -> str:
    """A fresh, valid 19-digit ICCID (starts 89, Luhn check digit)."""
    body = "89" + "".join(random.choices("0123456789", k=16))
    return next(body + d for d in "0123456789" if luhn_valid(body + d))


def order_request(**overrides: Any) -> dict[str, Any]:
    """A valid PlaceOrder body as a publisher would send it (order_id left out)."""
    return {
        "type": "PlaceOrder",
        "request_id": f"req-{uuid.uuid4()}",
        "iccid": random_iccid(),
        "package_id": "eu-5gb-30d",
        "currency": "EUR",
        "payment_method": "card",
        "payment_token": "tok_visa_4242",
        "msisdn": "+447700900123",
        "email": "traveller@example.com",
        **overrides,
    }
