"""Test data: random lines, valid order requests, usage reports and auto-renewal settings,
so no two tests share state."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.card_numbers import luhn_valid
from shared.events import UsageReported


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


def usage_report(
    iccid: str, used_mb: int, period: timedelta = timedelta(minutes=15)
) -> UsageReported:
    """What the carrier reports of a line: `used_mb` used in the period just ended."""
    end = datetime.now(UTC)
    return UsageReported(
        event_id=uuid.uuid4(),
        iccid=iccid,
        used_mb=used_mb,
        period_start=end - period,
        period_end=end,
    )


def auto_renewal_settings(**overrides: Any) -> dict[str, Any]:
    """A valid body for PUT /lines/{iccid}/auto-renewal: renew with a 1 GB package at 90%."""
    return {
        "alert": "data_used_90",
        "package_id": "eu-1gb-7d",
        "currency": "EUR",
        "payment_method": "card",
        "payment_token": "tok_visa_4242",
        "msisdn": "+447700900123",
        "email": "traveller@example.com",
        **overrides,
    }
