"""Payments' configuration: the common service settings, the payment provider (Stripe)
and the settler's pace, each an environment variable of the same name."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from services.payments.backoff import Backoff
from shared.late_answers import LateAnswerSettings
from shared.settings import ServiceSettings


class PaymentsSettings(ServiceSettings, LateAnswerSettings):
    service_name: str = "payments"

    # The provider: Stripe, or a server of its API (the Stripe simulator, stripe-mock).
    # No default secrets: without a key nothing is charged (Stripe refuses, the payment
    # waits), without a webhook secret every webhook is refused (never taken unsigned).
    payment_provider: Literal["stripe"] = "stripe"
    stripe_api_key: SecretStr = SecretStr("")
    stripe_webhook_secret: SecretStr = SecretStr("")
    stripe_api_base: str = "https://api.stripe.com"
    stripe_timeout_s: float = Field(default=10.0, gt=0.0, description="a request's deadline")
    # Where Alipay and PayPal send the customer back to (the storefront's page).
    stripe_return_url: str = Field(
        default="https://example.com/checkout/return", pattern=r"^https?://", max_length=500
    )
    # How old a webhook's signature may be (Stripe's SDK default: 300 s).
    stripe_webhook_tolerance_s: int = Field(default=300, ge=1)

    # The settler: how often and how patiently unsettled payments are asked about.
    settle_interval_s: float = Field(default=0.5, gt=0.0)
    settle_backoff_base_s: float = Field(default=0.5, gt=0.0)
    settle_backoff_max_s: float = Field(default=30.0, gt=0.0)
    settle_batch_size: int = Field(default=50, ge=1)
    new_grace_s: float = Field(default=10.0, ge=0.0)

    @property
    def backoff(self) -> Backoff:
        return Backoff(
            base_s=self.settle_backoff_base_s,
            max_s=self.settle_backoff_max_s,
            new_grace_s=self.new_grace_s,
        )
