"""The payment provider as payments sees it: four calls, each under an idempotency key.

The same key always gets the first result, so any call may be repeated safely.
When a call's outcome is unknown (a timeout), it raises `ProviderTimeout`: the
provider may have acted, so the caller asks `status(key)` later, never charges
again blindly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from shared.events import Money, PaymentMethod

ProviderStatus = Literal["captured", "declined", "pending", "cancelled", "refunded", "not_found"]


class ProviderTimeout(Exception):
    """No answer in time: the call may or may not have taken effect."""


@dataclass(frozen=True)
class ProviderResult:
    status: ProviderStatus
    provider_reference: str | None = None
    reason: str | None = None  # for machines, e.g. insufficient_funds
    message: str | None = None  # for people


class PaymentProvider(Protocol):
    async def charge(
        self, key: str, amount: Money, fee: Money, method: PaymentMethod, token: str
    ) -> ProviderResult:
        """Take `amount` (fee included) once per key; `pending` when confirmed later."""
        ...

    async def status(self, key: str) -> ProviderResult:
        """What became of the charge or refund made under `key`; `not_found` if none was."""
        ...

    async def cancel(self, key: str) -> ProviderResult:
        """Stop a pending charge; a charge captured already stays `captured`."""
        ...

    async def refund(self, refund_key: str, charge_key: str, amount: Money) -> ProviderResult:
        """Return `amount` of the charge under `charge_key` to its payment method, once."""
        ...
