"""The payment provider as payments sees it: five calls, each under an idempotency key.

The same key always gets the first result, so any call may be repeated safely.
When a call's outcome is unknown (a timeout, a 5xx, the same key still in flight), it
raises `ProviderTimeout`: the provider may have acted, so the caller asks `status`
later, never charges again blindly. When the provider surely did nothing (it could not
be reached, or refused for its rate limit), it raises `ProviderUnavailable`: the same
call is simply made again later, not before `retry_after_s`.

The provider's own reference (Stripe's PaymentIntent id) is stored with the payment
once known and given back to `status`, `cancel` and `refund`; None while unknown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from shared.events import Money, NextAction, PaymentMethod

ProviderStatus = Literal["captured", "declined", "pending", "cancelled", "refunded", "not_found"]


class ProviderTimeout(Exception):
    """No answer in time: the call may or may not have taken effect."""


class ProviderUnavailable(Exception):
    """The call did not take effect (unreachable, rate limited): make it again later."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class ProviderResult:
    status: ProviderStatus
    provider_reference: str | None = None
    reason: str | None = None  # for machines, e.g. insufficient_funds
    message: str | None = None  # for people
    next_action: NextAction | None = None  # the customer's next step while pending


class PaymentProvider(Protocol):
    async def charge(
        self, key: str, amount: Money, fee: Money, method: PaymentMethod, token: str
    ) -> ProviderResult:
        """Take `amount` (fee included) once per key; `pending` when confirmed later."""
        ...

    async def status(self, key: str, reference: str | None) -> ProviderResult:
        """What became of the charge made under `key`; `not_found` if none was."""
        ...

    async def cancel(self, key: str, reference: str | None) -> ProviderResult:
        """Stop a pending charge; a charge captured already stays `captured`."""
        ...

    async def refund(self, refund_key: str, charge_reference: str, amount: Money) -> ProviderResult:
        """Return `amount` of the charge `charge_reference` to its payment method, once."""
        ...

    async def refund_status(self, refund_key: str, charge_reference: str) -> ProviderResult:
        """What became of the refund made under `refund_key`; `not_found` if none was."""
        ...
