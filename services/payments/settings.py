"""Payments' configuration: the common service settings, the provider simulator's
behaviour and the settler's pace, each an environment variable of the same name."""

from __future__ import annotations

from pydantic import Field

from services.payments.backoff import Backoff
from shared.settings import ServiceSettings


class PaymentsSettings(ServiceSettings):
    service_name: str = "payments"

    # The simulator: how the outside world behaves (see provider_simulator.py).
    provider_latency_ms: int = Field(default=100, ge=0, description="mean, jittered +-50%")
    provider_decline_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    provider_timeout_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    provider_confirm_after_s: float = Field(default=2.0, ge=0.0)
    provider_seed: int | None = Field(default=None, description="repeatable randomness")

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
